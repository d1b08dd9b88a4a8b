"""Plan versions: append-only, numbered per job, stale edits refused, diffs readable."""

import threading

import pytest

from storage import Job, session_scope, sqlite_url
from storage.plan_versions import (
    StaleVersion,
    add_plan_version,
    diff_plans,
    get_plan_version,
    list_plan_versions,
)

PLAN = {
    "planner": "rules",
    "base": {"identity": "A presenter", "scene": "a studio", "mood": "calm"},
    "phases": [
        {"action": "nods gently", "first_word": 2, "last_word": 5},
        {"action": "shrugs with both shoulders", "first_word": 9, "last_word": 12},
    ],
}


@pytest.fixture
def db(tmp_path) -> str:
    url = sqlite_url(tmp_path / "v.db")
    with session_scope(url) as s:
        s.add(Job(id="job1"))
    return url


def _edit(plan: dict, i: int, **changes) -> dict:
    phases = [dict(p) for p in plan["phases"]]
    phases[i].update(changes)
    return {**plan, "phases": phases}


def test_versions_are_numbered_and_never_overwritten(db):
    v1, created = add_plan_version(db, "job1", PLAN, parent=None, author="ann", source="planner")
    assert (v1.number, v1.parent, created) == (1, None, True)
    edited = _edit(PLAN, 1, action="counts on the fingers of one hand", first_word=14, last_word=16)
    v2, created = add_plan_version(db, "job1", edited, parent=1, author="bob")
    assert (v2.number, v2.parent, v2.author, created) == (2, 1, "bob", True)
    assert v2.diff == [
        "phases[1]: action 'shrugs with both shoulders' -> 'counts on the fingers of one hand'; "
        "words 9..12 -> 14..16"
    ]
    # The old version is still there, unchanged.
    assert get_plan_version(db, "job1", 1).plan == PLAN
    assert [v.number for v in list_plan_versions(db, "job1")] == [1, 2]
    # Saving the same plan again stores nothing new.
    same, created = add_plan_version(db, "job1", edited, parent=2, author="bob")
    assert (same.number, created) == (2, False)


def test_an_edit_from_a_stale_version_is_refused_with_a_message(db):
    add_plan_version(db, "job1", PLAN, parent=None, source="planner")
    tab_a = _edit(PLAN, 0, action="raises the right hand")
    tab_b = _edit(PLAN, 0, action="places a hand on the chest")
    add_plan_version(db, "job1", tab_b, parent=1, author="bob")
    with pytest.raises(StaleVersion) as err:
        add_plan_version(db, "job1", tab_a, parent=1, author="ann")
    msg = str(err.value)
    assert "plan version 2 was saved by bob" in msg and "this edit was not saved" in msg
    assert [v.plan for v in list_plan_versions(db, "job1")] == [PLAN, tab_b]


def test_racing_saves_from_one_parent_keep_exactly_one(db):
    add_plan_version(db, "job1", PLAN, parent=None, source="planner")
    results: list[str] = []

    def save(name: str) -> None:
        try:
            add_plan_version(db, "job1", _edit(PLAN, 0, action=f"nods {name}"), parent=1)
            results.append("saved")
        except StaleVersion:
            results.append("stale")

    threads = [threading.Thread(target=save, args=(n,)) for n in ("once", "twice", "thrice")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["saved", "stale", "stale"]
    assert [v.number for v in list_plan_versions(db, "job1")] == [1, 2]


def test_cli_runs_append_without_a_parent_check(db):
    add_plan_version(db, "job1", PLAN, parent=None, source="planner")
    add_plan_version(db, "job1", _edit(PLAN, 0, last_word=6), parent=1)
    v, created = add_plan_version(
        db, "job1", _edit(PLAN, 0, last_word=7), parent=None, source="cli", check_parent=False
    )
    assert (v.number, v.parent, created) == (3, 2, True)


def test_diff_names_added_removed_and_base_changes():
    new = {
        **PLAN,
        "base": {**PLAN["base"], "mood": "warm"},
        "phases": [PLAN["phases"][1], {"action": "waves", "first_word": 20, "last_word": 21}],
    }
    assert diff_plans(PLAN, new) == [
        "base.mood: 'calm' -> 'warm'",
        "removed phases[0] (words 2..5, 'nods gently')",
        "added phases[1] (words 20..21, 'waves')",
    ]
    assert diff_plans(None, PLAN) == ["first version: 2 phases"]
