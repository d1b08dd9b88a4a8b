"""Subtitle files (SRT and WebVTT) from word timings.

Words are grouped into short readable lines that break at sentence ends, at pauses and
before a line gets too long or stays up too long; cues never overlap, so every player
shows one line at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from planners.schema import Word
from storage import atomic_write_text

SENTENCE_END = (".", "!", "?", "…")
CLAUSE_END = (",", ";", ":", "—", "–")
CLOSING = "\"')]}”’»"


@dataclass(frozen=True)
class Cue:
    """One subtitle line on screen from `start` to `end` (seconds)."""

    start: float
    end: float
    text: str


def _ends_with(word: str, marks: tuple[str, ...]) -> bool:
    return word.rstrip(CLOSING).endswith(marks)


LINE_COST = 1000.0  # fewer lines first, then balanced lengths
CLAUSE_BONUS = 400.0  # prefer breaking after a comma / colon
ORPHAN_COST = 400.0  # avoid a single short word alone on a line


def _phrases(words: Sequence[Word], max_gap: float) -> list[list[Word]]:
    """Hard breaks: sentence ends and pauses longer than `max_gap`."""
    phrases: list[list[Word]] = []
    current: list[Word] = []
    for w in words:
        token = w.word.strip()
        if not token:
            continue
        if token != w.word:
            w = w.model_copy(update={"word": token})
        if current and (
            _ends_with(current[-1].word, SENTENCE_END) or w.start - current[-1].end > max_gap
        ):
            phrases.append(current)
            current = []
        current.append(w)
    if current:
        phrases.append(current)
    return phrases


def _split(phrase: list[Word], max_chars: int, max_duration: float) -> list[list[Word]]:
    """Soft breaks: fewest lines within the limits, balanced, at clause marks (DP)."""
    n = len(phrase)
    best = [0.0] + [float("inf")] * n  # best[j]: cost of laying out phrase[:j]
    back = [0] * (n + 1)
    for j in range(1, n + 1):
        chars = -1
        for i in range(j - 1, -1, -1):  # line = phrase[i:j]
            chars += len(phrase[i].word) + 1
            single = i == j - 1
            too_long = chars > max_chars or phrase[j - 1].end - phrase[i].start > max_duration
            if too_long and not single:
                break
            cost = best[i] + LINE_COST + (max_chars - min(chars, max_chars)) ** 2
            if j < n and _ends_with(phrase[j - 1].word, CLAUSE_END):
                cost -= CLAUSE_BONUS
            if single and n > 1 and len(phrase[i].word) < 8:
                cost += ORPHAN_COST
            if cost < best[j]:
                best[j], back[j] = cost, i
    lines: list[list[Word]] = []
    j = n
    while j > 0:
        lines.append(phrase[back[j] : j])
        j = back[j]
    return lines[::-1]


def caption_cues(
    words: Sequence[Word],
    max_chars: int = 42,
    max_duration: float = 5.0,
    max_gap: float = 0.8,
    min_duration: float = 0.8,
) -> list[Cue]:
    """Group words into cues; a short cue is held up to `min_duration` if the next allows."""
    groups = [
        line
        for phrase in _phrases(words, max_gap)
        for line in _split(phrase, max_chars, max_duration)
    ]
    cues: list[Cue] = []
    for i, g in enumerate(groups):
        start = max(g[0].start, cues[-1].end if cues else 0.0)
        next_start = groups[i + 1][0].start if i + 1 < len(groups) else float("inf")
        end = max(min(max(g[-1].end, start + min_duration), next_start), start)
        cues.append(Cue(round(start, 3), round(end, 3), " ".join(x.word for x in g)))
    return cues


def _timestamp(seconds: float, sep: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt_text(cues: Sequence[Cue]) -> str:
    """SubRip: numbered blocks, `HH:MM:SS,mmm --> HH:MM:SS,mmm`."""
    blocks = [
        f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{c.text}\n"
        for i, c in enumerate(cues, 1)
    ]
    return "\n".join(blocks)


def vtt_text(cues: Sequence[Cue]) -> str:
    """WebVTT: `WEBVTT` header, `HH:MM:SS.mmm --> HH:MM:SS.mmm` cues."""
    blocks = [f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n{c.text}\n" for c in cues]
    return "\n".join(["WEBVTT\n", *blocks])


def write_srt(words: Sequence[Word], path: Path) -> Path:
    """Write SubRip captions for `words` (atomic)."""
    return atomic_write_text(Path(path), srt_text(caption_cues(words)))


def write_vtt(words: Sequence[Word], path: Path) -> Path:
    """Write WebVTT captions for `words` (atomic)."""
    return atomic_write_text(Path(path), vtt_text(caption_cues(words)))
