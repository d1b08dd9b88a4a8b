"""Latent continuity (issue 20): which latents a segment hands on, the overlap that follows, the
file they are kept in, and the option's one contract (mode per renderer, render key, refusal)."""

import numpy as np
import pytest

from flows.runtime.errors import InputError
from flows.video.options import JobOptions
from flows.video.render import (
    TAIL_LATENTS,
    load_tail_latents,
    save_tail_latents,
    tail_latent_frames,
    tail_latents_handoff,
)
from flows.video.renderers import get_renderer_spec, job_continuity
from flows.video.segments import (
    SegmentSpec,
    four_k_plus_one,
    latent_handoff,
    max_content_frames,
    plan_segments,
)
from planners.schema import BaseBlock, Plan, Word


def _latent_span(j: int) -> tuple[int, int]:
    """Pixel frames [start, stop) of latent j in the Wan VAE's 1 + 4k layout."""
    return (0, 1) if j == 0 else (4 * j - 3, 4 * j + 1)


def test_the_handoff_arithmetic_by_hand():
    # 125 shown frames (1 + 4 * 31): the last latent (31) ends exactly on the last shown frame.
    h = latent_handoff(125, 1)
    assert (h.first, h.count, h.extra, h.overlap, h.pixel_span) == (31, 1, 0, 1, (121, 125))
    # 128 shown frames: latent 32 would hold frame 128 (never shown): hand on latent 31 and
    # regenerate the 3 shown frames after it (overlap 1 + 3).
    h = latent_handoff(128, 1)
    assert (h.first, h.count, h.extra, h.overlap, h.pixel_span) == (31, 1, 3, 4, (121, 125))
    # 9 frames of context (3 latents) from 126 shown frames.
    h = latent_handoff(126, 9)
    assert (h.first, h.count, h.extra, h.overlap, h.pixel_span) == (29, 3, 1, 10, (113, 125))
    # A segment shorter than the context hands on what it has (latent 0 is frame 0 alone).
    h = latent_handoff(6, 33)
    assert (h.first, h.count, h.extra, h.overlap, h.pixel_span) == (0, 2, 1, 6, (0, 5))
    assert latent_handoff(125, 0).count == 0 and latent_handoff(125, 0).overlap == 0


@pytest.mark.parametrize("continuity", [1, 5, 9, 33])
def test_the_handed_latents_are_the_last_shown_ones_and_sit_at_their_own_times(continuity):
    for shown in range(1, 200):
        h = latent_handoff(shown, continuity)
        last = h.first + h.count - 1
        assert h.count == min((continuity - 1) // 4 + 1, (shown - 1) // 4 + 1)
        # every handed latent holds only shown frames; the next latent would hold an unshown one
        assert _latent_span(h.first)[0] == h.pixel_span[0]
        assert _latent_span(last)[1] == h.pixel_span[1] <= shown
        assert _latent_span(last + 1)[1] > shown
        # what the next segment conditions on ends at most 3 frames before the last shown one,
        # and those frames are regenerated inside the next segment's overlap (then dropped)
        assert shown - h.pixel_span[1] == h.extra < 4
        assert h.overlap == 1 + 4 * (h.count - 1) + h.extra
        # timing: the next render's frame 0 is the previous render's frame 4 * first, so its
        # latent i (i >= 1) spans the same video frames as the previous render's latent first + i
        start = shown - h.overlap
        assert start == 4 * h.first
        for i in range(1, h.count):
            nxt = _latent_span(i)
            assert (start + nxt[0], start + nxt[1]) == _latent_span(h.first + i)


def _words(n: int, word: float = 0.3, gap: float = 0.1) -> list[Word]:
    out, t = [], 0.2
    for i in range(n):
        out.append(Word(word=f"w{i}", start=round(t, 3), end=round(t + word, 3)))
        t += word + gap
    return out


def _plan() -> Plan:
    return Plan(planner="test", base=BaseBlock(), phases=[])


@pytest.mark.parametrize(("fps", "continuity"), [(25, 1), (24, 5), (30, 9)])
def test_latent_segments_overlap_by_the_handoff_and_stay_within_the_limit(fps, continuity):
    words = _words(200)  # 80 s of speech
    duration = words[-1].end + 0.3
    specs = plan_segments(
        words, duration, _plan(), fps=fps, max_seconds=5.0, overlap=continuity, latent=True
    )
    assert len(specs) >= 16 and specs[0].overlap == 0
    assert sum(s.num_frames for s in specs) == round(duration * fps)
    limit = int(5.0 * fps)
    for a, b in zip(specs, specs[1:], strict=False):
        h = latent_handoff(a.overlap + a.num_frames, continuity)
        assert b.overlap == h.overlap and a.first_frame + a.num_frames == b.first_frame
        # b's render starts on a's render frame 4 * first: the handed latents' own time
        assert (b.first_frame - b.overlap) - (a.first_frame - a.overlap) == 4 * h.first
    for s in specs:
        assert s.render_frames == four_k_plus_one(s.overlap + s.num_frames) <= limit
    # the pixels layout is unchanged: every overlap is the continuity
    pixels = plan_segments(words, duration, _plan(), fps=fps, overlap=continuity)
    assert {s.overlap for s in pixels[1:]} == {continuity}
    assert max_content_frames(5.0, fps, continuity) >= max(s.num_frames for s in pixels)


def _spec(overlap: int, num_frames: int) -> SegmentSpec:
    return SegmentSpec(
        index=3,
        start=0.0,
        end=1.0,
        first_frame=0,
        num_frames=num_frames,
        overlap=overlap,
        render_frames=four_k_plus_one(overlap + num_frames),
        fps=25,
        first_word=None,
        last_word=None,
        base="",
    )


def test_the_tail_latents_file_holds_the_last_shown_latents(tmp_path):
    spec = _spec(4, 39)  # 43 shown of 45 rendered frames (12 latents): latent 10 is the last
    latents = np.stack([np.full((3, 2, 2), j, np.float32) for j in range(12)], axis=1)
    path = save_tail_latents(latents, spec, 9, tmp_path / "seg")
    assert path.name == TAIL_LATENTS and sorted(p.name for p in path.parent.iterdir()) == [
        TAIL_LATENTS
    ]  # written atomically: no temporary file left beside it
    got = load_tail_latents(path)
    assert got.dtype == np.float32 and got.shape == (3, 3, 2, 2)
    assert [int(got[0, i, 0, 0]) for i in range(3)] == [8, 9, 10]
    meta = tail_latents_handoff(path)
    assert meta["first_latent"] == 8 and meta["latent_frames"] == 3
    assert meta["pixel_frames"] == [29, 41] and meta["shown_frames"] == 43
    assert meta["next_overlap"] == 9 + 2
    # the same latents make the same bytes (the file's sha256 is in the next render key)
    again = save_tail_latents(latents, spec, 9, tmp_path / "again")
    assert again.read_bytes() == path.read_bytes()
    np.testing.assert_array_equal(tail_latent_frames(latents, spec, 9), got)
    with pytest.raises(RuntimeError, match="expected"):
        tail_latent_frames(latents[:, :5], spec, 9)


def test_the_mode_is_the_renderers_default_and_an_unsupported_one_is_one_line():
    assert job_continuity("actavatar", 1, None).mode == "latent"
    assert job_continuity("actavatar", 1, None).latent
    assert not job_continuity("actavatar", 0, None).latent  # no context: nothing handed on
    assert job_continuity("actavatar", 5, "pixels").mode == "pixels"
    assert job_continuity("animatic", 1, None).mode == "pixels"
    assert get_renderer_spec("animatic").continuity_modes == ("pixels",)
    with pytest.raises(InputError) as err:
        job_continuity("animatic", 1, "latent")
    assert "\n" not in str(err.value) and "animatic" in str(err.value)
    assert "field 'continuity_mode'" in str(err.value)
    with pytest.raises(InputError, match="continuity_mode"):
        JobOptions.parse(continuity_mode="latents")
    # the job's input key changes with the mode and the colour anchor
    base = JobOptions.parse(renderer="actavatar").key_values()
    assert JobOptions.parse(renderer="actavatar", continuity_mode="pixels").key_values() != base
    assert JobOptions.parse(renderer="actavatar", color_anchor=True).key_values() != base


def test_the_cli_refuses_latents_for_the_animatic_in_one_line_before_any_work(tmp_path):
    from support import write_script
    from typer.testing import CliRunner

    from orchestrator.cli import app

    script = write_script(tmp_path, "Hello there.", resolution="256x144")
    home = tmp_path / "home"
    result = CliRunner().invoke(
        app,
        ["run", str(script), "--continuity-mode", "latent"],
        env={"AVATAR_FLOW_HOME": str(home)},
    )
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert "field 'continuity_mode'" in lines[0] and "animatic" in lines[0]
    assert not (home / "cache" / "speech").exists()  # refused before speech synthesis
