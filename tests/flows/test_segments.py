import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.video.segments import choose_cuts, four_k_plus_one, max_content_frames, plan_segments
from planners.schema import BaseBlock, Phase, Plan, Word


def words_from(durations_and_gaps: list[tuple[float, float]]) -> list[Word]:
    t, out = 0.1, []
    for i, (d, g) in enumerate(durations_and_gaps):
        out.append(Word(word=f"w{i}", start=round(t, 3), end=round(t + d, 3)))
        t += d + g
    return out


def plan_with(phases: list[Phase]) -> Plan:
    return Plan(planner="test", base=BaseBlock(), phases=phases)


def test_four_k_plus_one_and_limits():
    assert [four_k_plus_one(n) for n in (1, 2, 5, 6, 124, 125, 126)] == [1, 5, 5, 9, 125, 125, 129]
    assert max_content_frames(5.0, 25, 0) == 125
    assert max_content_frames(5.0, 25, 1) == 124
    assert max_content_frames(5.0, 24, 0) == 117  # 120 -> largest 4k+1 is 117


def test_cut_lands_in_the_longest_pause_near_the_limit():
    # Words every 0.3 s with short 0.05 s gaps, one 0.6 s pause ending at ~4.3 s.
    spec = [(0.25, 0.05)] * 12 + [(0.25, 0.6)] + [(0.25, 0.05)] * 20
    words = words_from(spec)
    duration = words[-1].end + 0.2
    cuts = choose_cuts(words, duration, 25, 125)
    first = cuts[0] / 25
    pause_start, pause_end = words[12].end, words[13].start
    assert pause_start <= first <= pause_end
    assert cuts[-1] == round(duration * 25)


def test_segments_carry_retimed_phases_and_overlap():
    words = words_from([(0.3, 0.1)] * 40)  # 16 s of speech
    duration = words[-1].end + 0.3
    ph = Phase(
        action="waves",
        first_word=11,
        last_word=16,
        start=words[11].start,
        end=words[16].end,
        source="cue",
    )
    specs = plan_segments(words, duration, plan_with([ph]), fps=25, max_seconds=5.0, overlap=1)
    assert specs[0].overlap == 0 and all(s.overlap == 1 for s in specs[1:])
    assert sum(s.num_frames for s in specs) == round(duration * 25)
    for s in specs:
        assert s.render_frames % 4 == 1 and s.render_frames >= s.num_frames + s.overlap
        assert s.render_frames <= 125
    # The phase is split across the segments it overlaps; each piece is on the render clock.
    pieces = [(s, p) for s in specs for p in s.phases]
    assert pieces, "the phase must appear in at least one segment"
    covered = sum(p.end - p.start for _, p in pieces)
    assert covered == pytest.approx(ph.end - ph.start, abs=0.01)
    for s, p in pieces:
        assert p.start == pytest.approx(max(ph.start, s.start) - s.render_start, abs=1e-3)
        assert 0 <= p.start < p.end <= s.render_seconds + 1e-3


def test_a_single_word_longer_than_a_segment_is_refused():
    words = [Word(word="looooong", start=0.0, end=7.0)]
    with pytest.raises(ValueError, match="longer than a segment"):
        choose_cuts(words, 7.5, 25, 125)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        # gaps of exactly 0 often: aligners time fluent speech back to back
        st.tuples(st.floats(0.05, 0.9), st.one_of(st.just(0.0), st.floats(0.0, 1.2))),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([24, 25, 30]),
    st.sampled_from([0, 1, 9]),
)
def test_segments_never_exceed_limit_nor_cut_inside_a_word(spec, fps, overlap):
    words = words_from(spec)
    duration = words[-1].end + 0.25
    specs = plan_segments(words, duration, plan_with([]), fps=fps, max_seconds=5.0, overlap=overlap)
    assert specs[0].start == 0 and specs[0].first_frame == 0
    assert specs[-1].first_frame + specs[-1].num_frames == max(1, round(duration * fps))
    for a, b in zip(specs, specs[1:]):
        assert a.first_frame + a.num_frames == b.first_frame
    for s in specs:
        assert s.render_frames <= 5.0 * fps + 1e-9
        assert s.num_frames >= 1
    half = 0.5 / fps + 1e-9  # back-to-back words with no frame between: nearest frame
    for s in specs[:-1]:
        cut = s.end
        for w in words:
            assert not (w.start + half < cut < w.end - half), f"cut {cut} inside {w}"
    _each_word_in_one_segment(words, specs)


def _each_word_in_one_segment(words, specs):
    owners = [0] * len(words)
    for s in specs:
        if s.first_word is not None:
            for i in range(s.first_word, s.last_word + 1):
                owners[i] += 1
    assert owners == [1] * len(words)


def test_fluent_speech_with_no_frame_between_words_is_cut_at_a_word_boundary():
    """faster-whisper times words back to back; when no boundary of a whole segment's worth of
    words falls on the frame grid (0.317 s words at 25 fps), the cut goes to the frame nearest a
    boundary instead of failing the job as if one word were longer than a segment."""
    words = [
        Word(word=f"w{i}", start=round(i * 0.317, 3), end=round((i + 1) * 0.317, 3))
        for i in range(100)
    ]  # fmt: skip  (31.7 s from 0 s, no pause at all)
    duration = words[-1].end + 0.2
    specs = plan_segments(words, duration, plan_with([]), fps=25, max_seconds=5.0)
    assert 7 <= len(specs) <= 9 and all(1 <= s.num_frames <= 125 for s in specs)
    for s in specs[:-1]:
        nearest = min(abs(s.end - t) for w in words for t in (w.start, w.end))
        assert nearest <= 0.5 / 25 + 1e-9
    _each_word_in_one_segment(words, specs)
    # A real pause in reach is still preferred to a word boundary.
    paused = words_from([(0.317, 0.0)] * 12 + [(0.317, 0.3)] + [(0.317, 0.0)] * 30)
    first = plan_segments(paused, 15.0, plan_with([]), fps=25)[0]
    assert paused[12].end <= first.end <= paused[13].start


def test_long_leading_and_trailing_silence_are_cut_points():
    words = [Word(word="late", start=6.0, end=6.4), Word(word="start", start=6.5, end=6.9)]
    specs = plan_segments(words, 13.0, plan_with([]), fps=25, max_seconds=5.0)
    assert sum(s.num_frames for s in specs) == 325
    for s in specs[:-1]:
        assert not (6.0 < s.end < 6.4) and not (6.5 < s.end < 6.9)
