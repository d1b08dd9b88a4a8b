"""Word snapping: phase windows are word-index ranges, times always come from the words.

Deriving times from words (instead of trusting times a planner writes) is what makes every
phase boundary a word boundary, so later segmentation never cuts inside a word.
"""

from collections.abc import Sequence

from planners.schema import Phase, Word

PhaseSource = str


def phase_from_words(
    words: Sequence[Word], first: int, last: int, action: str, source: PhaseSource = "lexicon"
) -> Phase:
    """A phase over words first..last (inclusive) with start/end taken from those words."""
    if not 0 <= first <= last < len(words):
        raise IndexError(f"word range {first}..{last} outside 0..{len(words) - 1}")
    return Phase(
        action=action,
        first_word=first,
        last_word=last,
        start=words[first].start,
        end=words[last].end,
        source=source,  # type: ignore[arg-type]
    )


def span_seconds(words: Sequence[Word], first: int, last: int) -> float:
    """Duration of the word range first..last (inclusive)."""
    return words[last].end - words[first].start


def snap_window(words: Sequence[Word], start_s: float, end_s: float) -> tuple[int, int] | None:
    """Word-index range (inclusive) covering the time window [start_s, end_s].

    Words that overlap the window are taken; a window falling entirely in a pause snaps to
    the nearest word. None only when there are no words.
    """
    if not words:
        return None
    if end_s < start_s:
        start_s, end_s = end_s, start_s
    inside = [
        i
        for i, w in enumerate(words)
        if w.end > start_s and w.start < end_s or (start_s == end_s and w.start <= start_s <= w.end)
    ]
    if inside:
        return inside[0], inside[-1]
    mid = (start_s + end_s) / 2
    nearest = min(
        range(len(words)),
        key=lambda i: (max(words[i].start - mid, mid - words[i].end, 0.0), i),
    )
    return nearest, nearest


def word_boundaries(words: Sequence[Word]) -> list[float]:
    """Every time where a cut does not split a word: word starts and ends, sorted, unique."""
    return sorted({t for w in words for t in (w.start, w.end)})


def nearest_boundary(words: Sequence[Word], t: float) -> float:
    """The word boundary closest to time t (t itself when there are no words)."""
    bounds = word_boundaries(words)
    if not bounds:
        return t
    return min(bounds, key=lambda b: (abs(b - t), b))
