from flows.produce import _render_key
from flows.segments import plan_segments
from planners.schema import BaseBlock, Phase, Plan, Transcript, Word


def _setup():
    words = [Word(word=f"w{i}", start=i * 0.4, end=i * 0.4 + 0.3) for i in range(30)]
    tr = Transcript(words=words, duration=12.0)
    far = Phase(action="nods gently", first_word=25, last_word=28, start=10.0, end=11.5)
    plan = Plan(planner="t", base=BaseBlock(), phases=[far])
    specs = plan_segments(words, 12.0, plan, fps=25)
    job = {
        "width": 640,
        "height": 352,
        "seed": 1,
        "cuts": [s.end for s in specs[:-1]],
        "duration": 12.0,
        "title": "t",
    }
    return tr, plan, specs, job


def test_animatic_key_follows_the_timeline_but_actavatar_key_does_not():
    tr, plan, specs, job = _setup()
    moved = plan.model_copy(
        update={"phases": [plan.phases[0].model_copy(update={"action": "shrugs"})]}
    )
    first = specs[0]
    assert first.phases == ()  # the changed phase is far from the first segment
    keys = {}
    for renderer in ("animatic", "actavatar"):
        j = {**job, "renderer": renderer}
        keys[renderer] = (
            _render_key(renderer, first, j, tr, plan, "a", "b", None),
            _render_key(renderer, first, j, tr, moved, "a", "b", None),
        )
    assert keys["animatic"][0] != keys["animatic"][1]
    assert keys["actavatar"][0] == keys["actavatar"][1]
    j = {**job, "renderer": "actavatar"}
    base = _render_key("actavatar", first, j, tr, plan, "a", "b", None)
    assert _render_key("actavatar", first, j, tr, plan, "other-audio", "b", None) != base
    assert _render_key("actavatar", first, j, tr, plan, "a", "other-avatar", None) != base
    # The previous segment's tail only matters when the segment overlaps it.
    assert _render_key("actavatar", first, j, tr, plan, "a", "b", "prev") == base
