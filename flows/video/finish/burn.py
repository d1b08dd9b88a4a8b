"""Pictures drawn over the video: a logo, a lower third, burned-in captions.

Every overlay is a small RGBA patch at a fixed place with an opacity that depends on time, so
compositing a frame touches only the patches' boxes. Text is drawn with DejaVu Sans from the
matplotlib wheel the project installs: the same glyphs on every machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from flows.video.captions import caption_cues
from planners.schema import Word

CAPTION_HIGHLIGHT = (255, 214, 10)  # the spoken word, when highlighting
CAPTION_TEXT = (255, 255, 255)
CAPTION_BOX = (0, 0, 0, 170)


def font_path(bold: bool = False) -> str:
    """DejaVu Sans from matplotlib's data folder (shipped in the wheel)."""
    import matplotlib

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name)


@lru_cache(maxsize=32)
def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_path(bold), size)


@dataclass(frozen=True)
class Patch:
    """An RGBA picture placed at (x, y) on the frame (top-left corner, pixels)."""

    x: int
    y: int
    rgb: np.ndarray  # (h, w, 3) float32, 0-255
    alpha: np.ndarray  # (h, w, 1) float32, 0-1

    @classmethod
    def from_image(cls, image: Image.Image, x: int, y: int, opacity: float = 1.0) -> Patch:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        return cls(x, y, rgba[..., :3], rgba[..., 3:] / 255.0 * opacity)


# An overlay is: at time t (seconds into the body), which patch to draw and how opaque (0: none).
Overlay = Callable[[float], tuple[Patch | None, float]]


def static(patch: Patch) -> Overlay:
    return lambda t: (patch, 1.0)


def timed(patch: Patch, start: float, end: float, fade: float = 0.3) -> Overlay:
    """Shown from `start` to `end`, fading in and out over `fade` seconds."""

    def at(t: float) -> tuple[Patch | None, float]:
        if t < start or t > end:
            return None, 0.0
        return patch, float(min(1.0, (t - start) / fade, (end - t) / fade))

    return at


def composite(frame: np.ndarray, patch: Patch, opacity: float = 1.0) -> None:
    """Blend `patch` into `frame` (uint8 RGB, modified in place), clipped to the frame."""
    h, w = frame.shape[:2]
    ph, pw = patch.rgb.shape[:2]
    x0, y0 = max(patch.x, 0), max(patch.y, 0)
    x1, y1 = min(patch.x + pw, w), min(patch.y + ph, h)
    if x1 <= x0 or y1 <= y0 or opacity <= 0:
        return
    sx, sy = x0 - patch.x, y0 - patch.y
    rgb = patch.rgb[sy : sy + y1 - y0, sx : sx + x1 - x0]
    a = patch.alpha[sy : sy + y1 - y0, sx : sx + x1 - x0] * opacity
    region = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = np.clip(region * (1 - a) + rgb * a + 0.5, 0, 255).astype(np.uint8)


def draw_overlays(
    frames: Iterable[np.ndarray], overlays: Sequence[Overlay], fps: int
) -> Iterator[np.ndarray]:
    """The frames with every overlay drawn at its time (frame i is at i / fps seconds)."""
    for i, frame in enumerate(frames):
        if overlays:
            frame = np.array(frame, copy=True)
            for overlay in overlays:
                patch, opacity = overlay(i / fps)
                if patch is not None:
                    composite(frame, patch, opacity)
        yield frame


# ------------------------------------------------------------------------------------ captions
def _wrap(words: list[str], fnt: ImageFont.FreeTypeFont, max_width: int) -> list[list[int]]:
    """Word indices per line so that no line is wider than `max_width`."""
    lines: list[list[int]] = [[]]
    for i, _w in enumerate(words):
        trial = " ".join(words[j] for j in [*lines[-1], i])
        if lines[-1] and fnt.getlength(trial) > max_width:
            lines.append([i])
        else:
            lines[-1].append(i)
    return lines


def caption_patch(
    words: list[str], active: int | None, width: int, height: int, highlight: bool
) -> Patch:
    """One caption on a dark box, centred near the bottom; the active word in yellow."""
    size = max(14, round(min(width, height) / 15))  # ~ 1/15 of the short side: phone-readable
    fnt = font(size, bold=True)
    pad = size // 2
    lines = _wrap(words, fnt, int(width * 0.86) - 2 * pad)
    line_h = int(size * 1.3)
    text_w = max(int(fnt.getlength(" ".join(words[j] for j in ln))) for ln in lines)
    box_w, box_h = text_w + 2 * pad, line_h * len(lines) + pad
    img = Image.new("RGBA", (box_w, box_h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle((0, 0, box_w - 1, box_h - 1), radius=pad // 2, fill=CAPTION_BOX)
    space = fnt.getlength(" ")
    for n, ln in enumerate(lines):
        line_w = fnt.getlength(" ".join(words[j] for j in ln))
        x = (box_w - line_w) / 2
        y = pad // 2 + n * line_h
        for j in ln:
            color = CAPTION_HIGHLIGHT if highlight and j == active else CAPTION_TEXT
            draw.text((x, y), words[j], font=fnt, fill=color)
            x += fnt.getlength(words[j]) + space
    return Patch.from_image(img, (width - box_w) // 2, int(height * 0.94) - box_h)


def captions_overlay(
    words: Sequence[Word], width: int, height: int, *, highlight: bool = True
) -> Overlay:
    """Burned-in captions from the word timings: the SRT's lines, the spoken word highlighted."""
    cues = caption_cues(words)
    timed_words = [(w.start, w.end) for w in words]
    starts = [w.start for w in words]
    cue_words = [c.text.split() for c in cues]
    # index of each cue's first word in `words` (the cues are the words, in order)
    firsts, k = [], 0
    for cw in cue_words:
        firsts.append(k)
        k += len(cw)
    cache: dict[tuple[int, int | None], Patch] = {}

    def at(t: float) -> tuple[Patch | None, float]:
        for ci, c in enumerate(cues):
            if c.start <= t < c.end:
                active = None
                if highlight:
                    idx = int(np.searchsorted(starts, t, side="right")) - 1
                    in_cue = firsts[ci] <= idx < firsts[ci] + len(cue_words[ci])
                    if in_cue and t <= timed_words[idx][1] + 0.15:
                        active = idx - firsts[ci]
                key = (ci, active)
                if key not in cache:
                    cache[key] = caption_patch(cue_words[ci], active, width, height, highlight)
                return cache[key], 1.0
        return None, 0.0

    return at
