"""The `animatic` renderer: a fast CPU preview of a segment.

It shows what the diffusion model would be asked to do, so the whole pipeline can be run,
reviewed and tested without a GPU: the avatar still, karaoke captions, the active phase's
action, a timeline of the whole video with a playhead, and a mouth meter driven by the
audio energy.

Speed comes from doing the expensive work once per segment (the fitted avatar, the
timeline bar, every caption/label variant) and only copying small pre-composed patches
per frame. Everything is deterministic: the same request gives identical frames.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from generator.render_types import CaptionWord, ProgressFn, PromptPhase, RenderRequest

WORDS_PER_LINE = 7
LINE_GAP_SECONDS = 0.8  # a pause this long starts a new caption line
LINGER_SECONDS = 0.6  # keep a line on screen this long after its last word
LEAD_SECONDS = 0.3  # show the next line this early before its first word
SENTENCE_END = (".", "!", "?", "…", ":", ";")
MOUTH_LEVELS = 16
SILENCE_DB, LOUD_DB = -55.0, -15.0  # dBFS mapped to a closed / fully open mouth

PHASE_COLOURS = (
    (66, 133, 244),
    (219, 68, 55),
    (244, 180, 0),
    (15, 157, 88),
    (171, 71, 188),
    (0, 172, 193),
    (255, 112, 67),
    (124, 179, 66),
)
TEXT_PAST = (255, 255, 255)
TEXT_FUTURE = (170, 170, 170)
TEXT_NOW = (20, 20, 20)
HIGHLIGHT = (255, 214, 0)


@dataclass(frozen=True)
class _Layout:
    """Pixel rectangles of every overlay, derived from the frame size only."""

    width: int
    height: int
    bar_y0: int  # timeline bar: rows bar_y0..height
    band_y0: int  # caption band: rows band_y0..bar_y0
    caption_px: int
    label_px: int
    label_box: tuple[int, int, int, int]  # phase label area (x0, y0, x1, y1)
    mouth_box: tuple[int, int, int, int]


def _layout(width: int, height: int) -> _Layout:
    bar_h = max(12, round(height * 0.06))
    caption_px = max(10, round(height * 0.05))
    band_h = round(caption_px * 1.9)
    bar_y0 = height - bar_h
    band_y0 = max(0, bar_y0 - band_h)
    margin = max(4, round(height * 0.02))
    label_px = max(9, round(height * 0.032))
    label_h = round(label_px * 2.9)
    mouth = max(16, round(height * 0.12))
    mouth_box = (width - margin - mouth, margin, width - margin, margin + mouth)
    label_box = (margin, margin, max(margin + 1, mouth_box[0] - margin), margin + label_h)
    return _Layout(width, height, bar_y0, band_y0, caption_px, label_px, label_box, mouth_box)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled scalable font: no dependency on system fonts."""
    return ImageFont.load_default(size=size)


def fit_cover(image: Image.Image, width: int, height: int) -> np.ndarray:
    """Scale to cover the frame keeping the aspect ratio, then centre-crop (uint8 RGB)."""
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (24, 24, 28, 255))
        image = Image.alpha_composite(bg, rgba)
    image = image.convert("RGB")
    w, h = image.size
    scale = max(width / w, height / h)
    sw, sh = max(width, round(w * scale)), max(height, round(h * scale))
    resized = image.resize((sw, sh), Image.Resampling.LANCZOS)
    x0, y0 = (sw - width) // 2, (sh - height) // 2
    return np.asarray(resized.crop((x0, y0, x0 + width, y0 + height)), dtype=np.uint8).copy()


def fit_preview(image: Image.Image, width: int, height: int) -> np.ndarray:
    """The whole avatar, letterboxed over a blurred, darkened cover of itself.

    Cropping a portrait or square avatar to a wide frame cuts off the head; a preview should
    show the person whole (the diffusion renderer does its own crop).
    """
    cover = Image.fromarray(fit_cover(image, width, height))
    w, h = image.size
    scale = min(width / w, height / h)
    fw, fh = max(1, round(w * scale)), max(1, round(h * scale))
    if (fw, fh) == (width, height):
        return np.asarray(cover, dtype=np.uint8).copy()
    backdrop = cover.filter(ImageFilter.GaussianBlur(radius=max(width, height) / 40))
    backdrop = Image.fromarray((np.asarray(backdrop, dtype=np.float32) * 0.55).astype(np.uint8))
    front = Image.fromarray(fit_cover(image, fw, fh))
    backdrop.paste(front, ((width - fw) // 2, (height - fh) // 2))
    return np.asarray(backdrop, dtype=np.uint8).copy()


def _darken(region: np.ndarray, alpha: float) -> None:
    """Blend a region towards black in place (a translucent panel behind text)."""
    region[...] = (region.astype(np.float32) * (1.0 - alpha)).astype(np.uint8)


def caption_lines(captions: list[CaptionWord], max_words: int = WORDS_PER_LINE) -> list[list[int]]:
    """Group caption words (indices) into karaoke lines.

    Sentences and pauses end a line; a longer sentence is cut into the fewest lines of at
    most `max_words`, balanced (9 words -> 5 + 4, not 7 + 2).
    """
    phrases: list[list[int]] = []
    current: list[int] = []
    for i, w in enumerate(captions):
        if current:
            prev = captions[current[-1]]
            if (
                prev.word.rstrip("\"')”’").endswith(SENTENCE_END)
                or w.start - prev.end > LINE_GAP_SECONDS
            ):
                phrases.append(current)
                current = []
        current.append(i)
    if current:
        phrases.append(current)
    lines: list[list[int]] = []
    for phrase in phrases:
        parts = -(-len(phrase) // max_words)
        base, extra = divmod(len(phrase), parts)
        k = 0
        for j in range(parts):
            size = base + (1 if j < extra else 0)
            lines.append(phrase[k : k + size])
            k += size
    return lines


def caption_state(
    captions: list[CaptionWord], lines: list[list[int]], starts: list[float], t: float
) -> tuple[int, int, bool] | None:
    """(line, last started word within the line or -1, word being spoken) at time t, or None."""
    if not lines:
        return None
    k = bisect.bisect_right(starts, t) - 1  # last word that has started
    if k < 0:
        first = captions[lines[0][0]]
        return (0, -1, False) if first.start - t <= LEAD_SECONDS else None
    line = next(j for j, ln in enumerate(lines) if ln[0] <= k <= ln[-1])
    ln = lines[line]
    if k == ln[-1] and line + 1 < len(lines):
        nxt = captions[lines[line + 1][0]]
        if nxt.start - t <= LEAD_SECONDS and t >= captions[k].end:
            return (line + 1, -1, False)
    if t >= captions[ln[-1]].end + LINGER_SECONDS and k == ln[-1]:
        return None
    return (line, k - ln[0], t < captions[k].end)


def audio_levels(audio: np.ndarray, sample_rate: int, fps: int, num_frames: int) -> np.ndarray:
    """Per-frame loudness in [0, 1]: RMS over a two-frame window around each frame, in dB."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    if x.size == 0 or num_frames <= 0:
        return np.zeros(max(num_frames, 0), dtype=np.float32)
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    centre = np.arange(num_frames) * (sample_rate / fps)
    half = sample_rate / fps
    lo = np.clip(np.round(centre - half).astype(np.int64), 0, x.size)
    hi = np.clip(np.round(centre + half).astype(np.int64), 0, x.size)
    n = np.maximum(hi - lo, 1)
    rms = np.sqrt(np.maximum(csum[hi] - csum[lo], 0.0) / n)
    db = 20.0 * np.log10(rms + 1e-9)
    return np.clip((db - SILENCE_DB) / (LOUD_DB - SILENCE_DB), 0.0, 1.0).astype(np.float32)


def active_phase(phases: tuple[PromptPhase, ...] | list[PromptPhase], t: float) -> int | None:
    """Index of the phase whose window contains t (the latest-starting one if several)."""
    best = None
    for j, p in enumerate(phases):
        if p.start <= t < p.end and (best is None or p.start >= phases[best].start):
            best = j
    return best


class _Scene:
    """Everything precomputed for one segment: the background and cached overlay patches."""

    def __init__(self, request: RenderRequest) -> None:
        self.req = request
        self.lay = _layout(request.width, request.height)
        self.captions = sorted(request.captions, key=lambda w: (w.start, w.end))
        self.lines = caption_lines(self.captions)
        self.starts = [w.start for w in self.captions]
        self.total = self._total_duration()
        self.bar_played, self.bar_future = self._timeline_bar()
        self.background = self._background()
        self._caption_cache: dict[tuple[int, int, bool] | None, np.ndarray] = {}
        self._label_cache: dict[int, np.ndarray] = {}
        self._mouth_cache: dict[int, np.ndarray] = {}

    # -- static parts, built once -------------------------------------------------------
    def _total_duration(self) -> float:
        r = self.req
        ends = [r.segment_start + r.num_frames / max(r.fps, 1), r.total_duration]
        ends += [p.end for p in r.timeline_phases] + list(r.timeline_cuts)
        return max(max(ends), 1e-6)

    def _x(self, t: float) -> int:
        return int(round(min(max(t / self.total, 0.0), 1.0) * (self.lay.width - 1)))

    def _timeline_bar(self) -> tuple[np.ndarray, np.ndarray]:
        """The bar (phases, cuts, title) in two tints: already played and still to come."""
        lay, r = self.lay, self.req
        h = lay.height - lay.bar_y0
        img = Image.new("RGB", (lay.width, h), (32, 32, 38))
        draw = ImageDraw.Draw(img)
        font = _font(max(8, round(h * 0.5)))
        for j, p in enumerate(sorted(r.timeline_phases, key=lambda p: (p.start, p.end))):
            x0, x1 = self._x(p.start), max(self._x(p.end), self._x(p.start) + 1)
            colour = PHASE_COLOURS[j % len(PHASE_COLOURS)]
            draw.rectangle((x0, 2, x1, h - 3), fill=colour)
            _clipped_text(draw, (x0 + 3, h // 2), p.text, font, x1 - x0 - 6, (255, 255, 255))
        for c in r.timeline_cuts:
            x = self._x(c)
            draw.line((x, 0, x, h), fill=(240, 240, 240), width=max(1, h // 12))
        future = np.asarray(img, dtype=np.uint8).copy()
        played = (future.astype(np.float32) * 0.55).astype(np.uint8)
        played[:, :, :] = np.maximum(played, np.array([0, 0, 60], dtype=np.uint8))
        return played, future

    def _background(self) -> np.ndarray:
        lay, r = self.lay, self.req
        source = r.reference_image if r.reference_image is not None else r.image
        bg = fit_preview(source, lay.width, lay.height)
        _darken(bg[lay.band_y0 : lay.bar_y0], 0.55)
        bg[lay.bar_y0 :] = self.bar_future
        x0, y0, x1, y1 = lay.mouth_box
        _darken(bg[y0:y1, x0:x1], 0.5)
        return bg

    # -- cached overlays ---------------------------------------------------------------
    def caption_patch(self, state: tuple[int, int, bool] | None) -> np.ndarray:
        """The caption band with one line drawn, the spoken word highlighted."""
        if state in self._caption_cache:
            return self._caption_cache[state]
        lay = self.lay
        band = self.background[lay.band_y0 : lay.bar_y0]
        if state is None:
            patch = band
        else:
            line, spoken, speaking = state
            words = [self.captions[i].word for i in self.lines[line]]
            img = Image.fromarray(band)
            draw = ImageDraw.Draw(img)
            size = lay.caption_px
            font = _font(size)
            space = font.getlength(" ")
            total = sum(font.getlength(w) for w in words) + space * (len(words) - 1)
            limit = lay.width * 0.94
            if total > limit:  # shrink a long line to fit
                size = max(8, int(size * limit / total))
                font = _font(size)
                space = font.getlength(" ")
                total = sum(font.getlength(w) for w in words) + space * (len(words) - 1)
            x = (lay.width - total) / 2
            y = (lay.bar_y0 - lay.band_y0) / 2
            for k, w in enumerate(words):
                wl = font.getlength(w)
                if k == spoken and speaking:
                    pad = size * 0.18
                    box = (x - pad, y - size * 0.62, x + wl + pad, y + size * 0.62)
                    draw.rounded_rectangle(box, radius=size * 0.2, fill=HIGHLIGHT)
                    fill = TEXT_NOW
                else:
                    fill = TEXT_PAST if k <= spoken else TEXT_FUTURE
                draw.text((x, y), w, font=font, fill=fill, anchor="lm")
                x += wl + space
            patch = np.asarray(img, dtype=np.uint8).copy()
        self._caption_cache[state] = patch
        return patch

    def label_patch(self, phase: int) -> np.ndarray:
        """The active phase's action in a translucent box (top left)."""
        if phase in self._label_cache:
            return self._label_cache[phase]
        lay = self.lay
        x0, y0, x1, y1 = lay.label_box
        region = self.background[y0:y1, x0:x1].copy()
        text = self.req.prompt.phases[phase].text
        small = _font(max(7, round(lay.label_px * 0.75)))
        font = _font(lay.label_px)
        bar_w = max(3, lay.label_px // 3)
        pad = bar_w + lay.label_px // 2
        box_w = min(x1 - x0, int(pad + max(font.getlength(text), small.getlength("ACTION")) + pad))
        _darken(region[:, :box_w], 0.6)  # the panel only as wide as its text
        img = Image.fromarray(region)
        draw = ImageDraw.Draw(img)
        colour = PHASE_COLOURS[self._timeline_colour(phase) % len(PHASE_COLOURS)]
        draw.rectangle((0, 0, bar_w, y1 - y0), fill=colour)
        draw.text((pad, lay.label_px * 0.2), "ACTION", font=small, fill=colour)
        _clipped_text(draw, (pad, lay.label_px * 1.9), text, font, box_w - pad - 4, (255,) * 3)
        patch = np.asarray(img, dtype=np.uint8).copy()
        self._label_cache[phase] = patch
        return patch

    def _timeline_colour(self, phase: int) -> int:
        """Use the colour the same phase has on the timeline bar, when it can be matched."""
        p = self.req.prompt.phases[phase]
        ordered = sorted(self.req.timeline_phases, key=lambda q: (q.start, q.end))
        t = self.req.segment_start + (p.start + p.end) / 2
        for j, q in enumerate(ordered):
            if q.text == p.text and q.start - 1e-3 <= t <= q.end + 1e-3:
                return j
        return phase

    def mouth_patch(self, level: int) -> np.ndarray:
        """A mouth meter: an ellipse whose height follows the audio level (quantised)."""
        if level in self._mouth_cache:
            return self._mouth_cache[level]
        x0, y0, x1, y1 = self.lay.mouth_box
        patch = self.background[y0:y1, x0:x1].copy()
        h, w = patch.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cy, cx = (h - 1) / 2, (w - 1) / 2
        rx = w * 0.36
        ry = max(1.0, h * 0.40 * level / (MOUTH_LEVELS - 1))
        inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
        lips = ((xx - cx) / (rx + 2)) ** 2 + ((yy - cy) / (ry + 2)) ** 2 <= 1.0
        patch[lips] = (214, 92, 92)
        patch[inside] = (60, 10, 20) if level > 0 else (214, 92, 92)
        self._mouth_cache[level] = patch
        return patch


def _clipped_text(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    max_width: float,
    fill: tuple[int, int, int],
) -> None:
    """Draw one line, cut with an ellipsis to fit `max_width` (nothing if no room)."""
    if max_width < font.getlength("M..."):
        return
    if font.getlength(text) > max_width:
        while text and font.getlength(text + "...") > max_width:
            text = text[:-1]
        text = text.rstrip() + "..."
    draw.text(xy, text, font=font, fill=fill, anchor="lm")


class AnimaticRenderer:
    """CPU preview renderer (no model, no continuity): see the module docstring."""

    name = "animatic"
    context_frames = 0
    model_note = None  # no model: nothing to say about which one rendered
    last_stats: dict = {}  # no model evaluations to count

    def render(self, request: RenderRequest, progress: ProgressFn | None = None) -> np.ndarray:
        """Frames (num_frames, height, width, 3) uint8 for one segment."""
        n, fps = request.num_frames, max(int(request.fps), 1)
        if request.width <= 0 or request.height <= 0 or n < 0:
            raise ValueError(f"bad frame geometry {request.width}x{request.height}x{n}")
        scene = _Scene(request)
        lay = scene.lay
        levels = np.round(
            audio_levels(request.audio, request.sample_rate, fps, n) * (MOUTH_LEVELS - 1)
        ).astype(np.int64)
        out = np.empty((n, lay.height, lay.width, 3), dtype=np.uint8)
        out[:] = scene.background
        mx0, my0, mx1, my1 = lay.mouth_box
        lx0, ly0, lx1, ly1 = lay.label_box
        head_w = max(2, lay.width // 400)
        step = max(1, n // 20)
        for i in range(n):
            t = i / fps
            frame = out[i]
            frame[lay.band_y0 : lay.bar_y0] = scene.caption_patch(
                caption_state(scene.captions, scene.lines, scene.starts, t)
            )
            phase = active_phase(request.prompt.phases, t)
            if phase is not None:
                frame[ly0:ly1, lx0:lx1] = scene.label_patch(phase)
            frame[my0:my1, mx0:mx1] = scene.mouth_patch(int(levels[i]))
            x = scene._x(request.segment_start + t)
            frame[lay.bar_y0 :, :x] = scene.bar_played[:, :x]
            frame[lay.bar_y0 :, max(0, x - head_w // 2) : x + head_w - head_w // 2] = 255
            if progress is not None and ((i + 1) % step == 0 or i + 1 == n):
                progress(i + 1, n)
        return out
