"""A picture of the plan: words, action phases and segment cuts on one time axis.

Written next to the video so a reviewer can see at a glance which gesture lands on which
words and where the segments were cut. matplotlib is imported inside the function: it
is slow to import and most CLI commands never draw.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

from planners.schema import Phase, Word
from storage import atomic_path

DPI = 100
HEIGHT_IN = 4.0
MIN_WIDTH_IN, MAX_WIDTH_IN = 8.0, 48.0
INCHES_PER_SECOND = 0.6
WORD_LABELS_PER_INCH = 5.0  # denser than this and only every k-th word is labelled
PHASE_COLOURS = ("#4285f4", "#db4437", "#f4b400", "#0f9d58", "#ab47bc", "#00acc1", "#ff7043")


def timeline_size(duration: float) -> tuple[int, int]:
    """Pixel size of the picture: width grows with the duration, within a cap."""
    width_in = min(MAX_WIDTH_IN, max(MIN_WIDTH_IN, 2.0 + INCHES_PER_SECOND * duration))
    return round(width_in * DPI), round(HEIGHT_IN * DPI)


def _wrap(text: str, width_in: float, fontsize: float, max_lines: int = 3) -> str:
    """Wrap action text to the width of its bar (roughly: average glyph = 0.55 em)."""
    chars = max(6, int(width_in * 72 / (fontsize * 0.55)))
    lines = textwrap.wrap(text, chars) or [text]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(1, chars - 3)].rstrip() + "..."
    return "\n".join(lines)


def draw_timeline(
    words: Sequence[Word],
    phases: Sequence[Phase],
    cuts: Sequence[float],
    duration: float,
    path: Path,
    title: str = "",
) -> Path:
    """Draw the timeline PNG at `path` (atomic) and return the path."""
    # Figure + the Agg canvas directly, not pyplot: no GUI, no global figure registry.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ends = [duration, *(w.end for w in words), *(p.end for p in phases), *cuts]
    span = max(max(ends, default=0.0), 0.1)
    w_px, h_px = timeline_size(span)
    fig = Figure(figsize=(w_px / DPI, h_px / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    left, right = 0.8 / (w_px / DPI), 0.3 / (w_px / DPI)  # margins in inches, any width
    ax = fig.add_axes((left, 0.14, 1 - left - right, 0.74))
    ax.set_xlim(0, span)
    ax.set_ylim(0, 3)
    ax.set_yticks([0.75, 2.25], ["words", "actions"])
    ax.set_xlabel("seconds")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    inch_per_s = (w_px / DPI) * (1 - left - right) / span

    # Words: a thin bar each (one collection for all: an artist per word made a ten-minute
    # talk's picture take seconds), labels staggered over three rows (every k-th when dense).
    capacity = max(1.0, span * inch_per_s * WORD_LABELS_PER_INCH)
    every = max(1, math.ceil(len(words) / capacity))
    if words:
        ax.broken_barh(
            [(w.start, max(w.end - w.start, 0.01)) for w in words],
            (0.1, 0.25),
            color="#555555",
            edgecolor="white",
            linewidth=0.6,
        )
    for i, w in enumerate(words):
        if i % every == 0:
            y = 0.5 + 0.33 * ((i // every) % 3)
            ax.text(w.start, y, w.word, fontsize=7, rotation=30, ha="left", va="bottom",
                    rotation_mode="anchor", clip_on=True)  # fmt: skip

    # Phases: coloured bars with their (wrapped) action text.
    for j, p in enumerate(sorted(phases, key=lambda p: (p.start, p.end))):
        colour = PHASE_COLOURS[j % len(PHASE_COLOURS)]
        lane = j % 2
        y0 = 1.6 + lane * 0.7
        ax.broken_barh([(p.start, max(p.duration, 0.01))], (y0, 0.6), color=colour, alpha=0.85)
        label = _wrap(p.action, max(p.duration, 0.3) * inch_per_s, 7)
        ax.text(p.start + 0.03, y0 + 0.3, label, fontsize=7, va="center", ha="left",
                color="black", clip_on=True, linespacing=1.0)  # fmt: skip

    # Segment cuts: dashed lines across everything.
    for c in cuts:
        ax.axvline(c, color="#222222", linestyle="--", linewidth=1.0)
        ax.text(c, 3.0, f"{c:.2f}s", fontsize=7, ha="center", va="bottom", clip_on=False)

    heading = title or "timeline"
    fig.suptitle(
        f"{heading}  ({span:.1f} s, {len(words)} words, {len(phases)} phases, "
        f"{len(cuts) + 1} segments)",
        fontsize=9,
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path
