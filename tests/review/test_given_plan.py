"""A given plan (`run --plan`, the review app): read, times from words, the planner's rules."""

import json

import pytest

from flows.runtime.errors import InputError
from flows.video.given_plan import check_given_plan, plan_from_data, read_plan_file
from planners.schema import Cue, PlanRequest, Transcript, Word
from planners.validation import validate_plan

WORDS = [
    Word(word=f"w{i}", start=round(i * 0.4, 3), end=round(i * 0.4 + 0.3, 3)) for i in range(30)
]
REQUEST = PlanRequest(
    transcript=Transcript(words=WORDS, duration=12.0),
    cues=[Cue(text="waves hello with the right hand", word_index=2)],
)
BASE = {
    "identity": "A presenter",
    "scene": "a studio",
    "mood": "calm",
    "style": "soft",
    "motion": "still",
}


def _plan(*phases) -> dict:
    return {"base": BASE, "phases": [dict(p) for p in phases]}


CUE_PHASE = {"action": "waves hello with the right hand", "first_word": 2, "last_word": 5}


def test_times_follow_from_the_words_when_left_out():
    plan, errors = plan_from_data(
        _plan(CUE_PHASE, {"action": "nods gently", "first_word": 20, "last_word": 23}), REQUEST
    )
    assert errors == []
    assert [(p.start, p.end) for p in plan.phases] == [(0.8, 2.3), (8.0, 9.5)]


def test_given_times_off_the_word_boundaries_are_the_validators_error():
    bad = {"action": "nods gently", "first_word": 20, "last_word": 23, "start": 8.1, "end": 9.5}
    plan, errors = plan_from_data(_plan(CUE_PHASE, bad), REQUEST)
    assert errors == validate_plan(plan, REQUEST)
    assert errors == [
        "phases[1] (words 20..23, 'nods gently'): start/end 8.100-9.500 s are not on word "
        "boundaries; words 20..23 span 8.000-9.500 s"
    ]


def test_an_invalid_plan_is_one_line_naming_the_phase_and_the_rule():
    short = {"action": "nods gently", "first_word": 20, "last_word": 20}
    late = {"action": "shrugs with both shoulders", "first_word": 19, "last_word": 22}
    with pytest.raises(InputError) as err:
        check_given_plan(_plan(CUE_PHASE, short, late), REQUEST, file="edited.json")
    assert str(err.value) == (
        "edited.json: phases[2] (words 19..22, 'shrugs with both shoulders') overlaps or "
        "precedes phases[1] (words 20..20, 'nods gently'): phases must be in time order with "
        "disjoint word ranges"
    )
    mouth = {"action": "moves the lips", "first_word": 26, "last_word": 28}
    data = _plan(CUE_PHASE, short, mouth)
    plan, errors = plan_from_data(data, REQUEST)
    assert len(errors) == 2 and errors == validate_plan(plan, REQUEST)
    with pytest.raises(InputError) as err:
        check_given_plan(data, REQUEST, file="edited.json")
    assert str(err.value) == f"edited.json: {errors[0]} (and 1 more problem)"
    assert "\n" not in str(err.value) and str(err.value).startswith("edited.json: phases[")


def test_an_unhonoured_cue_is_refused_like_a_planned_plan():
    with pytest.raises(InputError, match=r"cue \[\[waves hello with the right hand\]\] at word 2"):
        check_given_plan(_plan({**CUE_PHASE, "action": "nods gently"}), REQUEST, file="p.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "p.json: field 'plan': plan file not found"),
        ("{not json", "p.json:1: field 'plan': not valid JSON (Expecting property name"),
        ("[1, 2]", "p.json: field 'plan': the plan must be a JSON object with 'base' and 'phases'"),
        (
            json.dumps(_plan({"action": "", "first_word": 2, "last_word": 5})),
            "p.json: phases[0].action: String should have at least 1 character",
        ),
        (
            json.dumps(_plan({"action": "nods", "first_word": "two", "last_word": 5})),
            "p.json: phases[0].first_word: Input should be a valid integer",
        ),
    ],
)
def test_a_malformed_plan_file_stops_before_anything_runs(tmp_path, monkeypatch, content, message):
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / "p.json").write_text(content)
    with pytest.raises(InputError) as err:
        read_plan_file("p.json")
    assert str(err.value).startswith(message)


def test_a_manifest_plan_column_is_relative_to_the_manifest_and_always_runs(tmp_path):
    from support import EXAMPLES

    from flows.video.batch import already_done, prepare_rows
    from flows.video.options import JobOptions

    (row,) = prepare_rows(
        [{"script": "a.md", "plan": "plans/v0002.json"}], source="m.csv", base_dir=tmp_path
    )
    assert row.options["plan"] == str(tmp_path / "plans" / "v0002.json")
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps(_plan(CUE_PHASE)))
    # Never skipped as "already done": a given plan is a new version of the job.
    assert already_done(EXAMPLES / "hello.md", JobOptions(plan=str(plan))) is None
    with pytest.raises(InputError, match="plan file not found"):
        already_done(EXAMPLES / "hello.md", JobOptions(plan=str(tmp_path / "missing.json")))
