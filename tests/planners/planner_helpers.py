"""Builders for transcripts and requests used by the planner tests."""

from planners import Cue, PlanConstraints, PlanRequest, Transcript, Word


def make_words(
    text: str, word_s: float = 0.35, gap_s: float = 0.05, start: float = 0.0
) -> list[Word]:
    """Evenly timed words: each `word_s` long, `gap_s` apart (times rounded to ms)."""
    words, t = [], start
    for w in text.split():
        words.append(Word(word=w, start=round(t, 3), end=round(t + word_s, 3)))
        t += word_s + gap_s
    return words


def make_request(
    text: str,
    cues: list[tuple[str, int]] = (),
    word_s: float = 0.35,
    gap_s: float = 0.05,
    **kw,
) -> PlanRequest:
    """A PlanRequest over `text` with cues given as (text, word_index)."""
    words = make_words(text, word_s, gap_s)
    duration = words[-1].end + 0.2 if words else 0.0
    return PlanRequest(
        transcript=Transcript(words=words, duration=duration),
        cues=[Cue(text=t, word_index=i) for t, i in cues],
        **kw,
    )


def windows_ok(plan, constraints: PlanConstraints) -> bool:
    """No window of segment_seconds overlaps more than max_phases_per_segment phases."""
    k, s = constraints.max_phases_per_segment, constraints.segment_seconds
    p = plan.phases
    return all(p[i + k].start - p[i].end >= s - 1e-3 for i in range(len(p) - k))
