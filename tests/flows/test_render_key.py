"""The segment cache key and the continuity tail: what a segment's pixels depend on, and which
frames the next segment continues from."""

import numpy as np
from support import render_job

from flows.video.render import tail_frames
from flows.video.segments import plan_segments
from flows.video.steps import render_key
from planners.schema import BaseBlock, Phase, Plan, Transcript, Word


def _setup():
    words = [Word(word=f"w{i}", start=i * 0.4, end=i * 0.4 + 0.3) for i in range(30)]
    tr = Transcript(words=words, duration=12.0)
    far = Phase(action="nods gently", first_word=25, last_word=28, start=10.0, end=11.5)
    plan = Plan(planner="t", base=BaseBlock(), phases=[far])
    specs = plan_segments(words, 12.0, plan, fps=25)
    return tr, plan, specs


def test_a_phase_changes_only_the_keys_of_the_segments_it_touches():
    """The animatic draws only the segment's own phases on its timeline bar, so an edited phase
    re-renders the segments it overlaps and no other (the review loop, issue 14)."""
    tr, plan, specs = _setup()
    moved = plan.model_copy(
        update={"phases": [plan.phases[0].model_copy(update={"action": "shrugs"})]}
    )
    first, last = specs[0], specs[-1]
    assert first.phases == () and last.phases  # the changed phase is in the last segment only
    for renderer in ("animatic", "actavatar"):
        a = render_job(tr, plan, specs, renderer=renderer)
        b = render_job(tr, moved, specs, renderer=renderer)
        assert render_key(renderer, first, a, "a", "b", None) == render_key(
            renderer, first, b, "a", "b", None
        )
    after = plan_segments(tr.words, 12.0, moved, fps=25)[-1]
    a = render_job(tr, plan, specs, renderer="animatic")
    b = render_job(tr, moved, specs, renderer="animatic")
    assert render_key("animatic", last, a, "a", "b", None) != render_key(
        "animatic", after, b, "a", "b", None
    )
    # The animatic's bar shows that segment's phases only (absolute times, whole-video bar).
    req = build_request_for(last, a)
    assert [(p.text, p.start, p.end) for p in req.timeline_phases] == [("nods gently", 10.0, 11.5)]
    assert build_request_for(first, a).timeline_phases == []
    j = render_job(tr, plan, specs, renderer="actavatar")
    base = render_key("actavatar", first, j, "a", "b", None)
    assert render_key("actavatar", first, j, "other-audio", "b", None) != base
    assert render_key("actavatar", first, j, "a", "other-avatar", None) != base
    # The previous segment's tail only matters when the segment overlaps it.
    assert render_key("actavatar", first, j, "a", "b", "prev") == base


def build_request_for(spec, job):
    from PIL import Image

    from flows.video.render import build_request

    return build_request(
        spec,
        words=job.transcript.words,
        plan=job.plan,
        audio16k=np.zeros(16000 * 12, dtype=np.float32),
        avatar=Image.new("RGB", (64, 64)),
        width=64,
        height=64,
        seed=0,
        total_duration=job.duration,
        cuts=list(job.cuts),
        title="t",
        context=[],
    )


def test_tail_is_the_last_shown_frames_not_the_rounding_padding():
    """A render has 4k+1 frames; the ones past overlap + num_frames never appear in the video,
    so the next segment must continue from the last frame that does (issue 10, defect 1)."""
    words = [Word(word=f"w{i}", start=i * 0.4, end=i * 0.4 + 0.3) for i in range(30)]
    plan = Plan(planner="t", base=BaseBlock(), phases=[])
    specs = plan_segments(words, 12.0, plan, fps=25, overlap=5)
    padded = [s for s in specs if s.render_frames > s.overlap + s.num_frames]
    assert padded, "the fixture needs a segment whose render is rounded up to 4k+1"
    for spec in padded:
        # Frame i is filled with the value i, so the test can read which frames were kept.
        frames = np.arange(spec.render_frames, dtype=np.uint8)[:, None, None, None] * np.ones(
            (1, 2, 2, 3), dtype=np.uint8
        )
        shown_last = spec.overlap + spec.num_frames - 1
        for count in (1, 5):
            tail = tail_frames(frames, spec, count)
            assert [int(f[0, 0, 0]) for f in tail] == list(
                range(shown_last - count + 1, shown_last + 1)
            )
        assert len(tail_frames(frames, spec, 0)) == 0


def test_the_continuity_mode_and_the_colour_anchor_are_in_the_render_key():
    """Latent or pixels continuity changes every segment of a continuing renderer (which frames
    follow, what the cache keeps), the colour anchor every segment's pixels; the animatic's keys
    stay as they were (it does not continue, and the anchor is off by default)."""
    tr, plan, specs = _setup()
    first = specs[0]
    keys = {
        (renderer, mode, anchor): render_key(
            renderer,
            first,
            render_job(
                tr, plan, specs, renderer=renderer, continuity_mode=mode, color_anchor=anchor
            ),
            "a",
            "b",
            None,
        )
        for renderer in ("animatic", "actavatar")
        for mode in ("latent", "pixels")
        for anchor in (False, True)
    }
    act = [v for (r, _, _), v in keys.items() if r == "actavatar"]
    assert len(set(act)) == 4
    assert keys[("animatic", "latent", False)] == keys[("animatic", "pixels", False)]
    assert keys[("animatic", "pixels", False)] != keys[("animatic", "pixels", True)]
    # the animatic's key without the new options is the key it had before them
    plain = render_job(tr, plan, specs, renderer="animatic")
    assert (
        render_key("animatic", first, plain, "a", "b", None) == keys[("animatic", "pixels", False)]
    )


def test_the_colour_anchor_matches_the_new_frames_to_the_avatar():
    from PIL import Image

    from flows.video.render import anchor_colors

    avatar = Image.new("RGB", (64, 48), (200, 120, 40))
    rng = np.random.default_rng(0)
    frames = (rng.random((6, 24, 32, 3)) * 80).astype(np.uint8)  # dark, bluish noise
    out = anchor_colors(frames, avatar, start=2)
    np.testing.assert_array_equal(out[:2], frames[:2])  # the overlap is left as it was
    mean = out[2:].reshape(-1, 3).mean(0)
    np.testing.assert_allclose(mean, [200, 120, 40], atol=1.0)  # the avatar's colour
    assert out.dtype == np.uint8 and out.shape == frames.shape
