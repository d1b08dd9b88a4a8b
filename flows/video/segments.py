"""Cut the timeline into segments of at most `max_seconds`, in pauses, never inside a word
(at most half a frame, where words follow each other with no frame between them).

Frame bookkeeping: segment k shows video frames [first_frame, first_frame + num_frames) of
the whole video. A renderer that continues from the previous segment's tail repeats
`overlap` frames at its start (dropped by the stitch), and renders `render_frames`
= the smallest 4k+1 >= overlap + num_frames (the VAE's temporal stride is 4).

Latent hand-off (`latent_handoff`): a segment may continue from the previous segment's own
latents instead of its decoded tail. The Wan VAE's layout is 1 + 4k: latent frame 0 is pixel
frame 0 alone, latent j >= 1 is pixel frames 4j-3..4j. The previous segment shows
`s = overlap + num_frames` of its frames (the rest is 4k+1 padding nobody sees), so the last
latent made only of shown frames is `last = (s - 1) // 4` (its last pixel, 4 * last, is shown;
latent last + 1 would also hold unseen padding). The next segment writes `count` latents
`last - count + 1 .. last` as its clean leading latent frames: they stand for its first
`1 + 4(count - 1)` frames, so its render starts at the previous render's frame
`4 * (last - count + 1)`. When `s` is not 1 + 4k, the `(s - 1) % 4` frames shown after pixel
4 * last are generated again by the next segment and dropped by the stitch: its overlap is
`1 + 4(count - 1) + (s - 1) % 4`. Every frame then sits at the video time it was rendered for.
"""

import bisect
from dataclasses import asdict, dataclass, field

from planners.schema import Phase, Plan, Word

# How close to the limit we look for the longest pause (seconds).
PAUSE_SEARCH_WINDOW = 1.5


def four_k_plus_one(n: int) -> int:
    """Smallest 4k+1 >= n."""
    return n if n % 4 == 1 else n + (1 - n) % 4


def max_content_frames(max_seconds: float, fps: int, overlap: int) -> int:
    """Most new frames a segment may show so that its render stays within `max_seconds`."""
    limit = int(max_seconds * fps + 1e-9)
    limit = limit if limit % 4 == 1 else limit - (limit - 1) % 4  # largest 4k+1 <= limit
    return limit - overlap


VAE_STRIDE = 4  # the Wan VAE's temporal stride (1 + 4k frames)
LATENT_EXTRA = VAE_STRIDE - 1  # most frames a latent hand-off adds to the overlap


@dataclass(frozen=True)
class LatentHandoff:
    """Which latents of a segment the next one starts from, and the overlap that follows."""

    first: int  # first latent frame handed on (render's own latent index)
    count: int  # latent frames handed on
    extra: int  # shown frames after the last handed latent (regenerated and dropped next)

    @property
    def clean_frames(self) -> int:
        """Pixel frames the handed latents stand for in the next segment (1 + 4k)."""
        return 1 + VAE_STRIDE * (self.count - 1) if self.count else 0

    @property
    def overlap(self) -> int:
        """The next segment's overlap: the clean frames plus the regenerated ones."""
        return self.clean_frames + self.extra if self.count else 0

    @property
    def pixel_span(self) -> tuple[int, int]:
        """[start, stop) of the previous render's pixel frames the handed latents encode."""
        if not self.count:
            return (0, 0)
        start = 0 if self.first == 0 else VAE_STRIDE * self.first - (VAE_STRIDE - 1)
        return (start, VAE_STRIDE * (self.first + self.count - 1) + 1)


def latent_handoff(shown: int, continuity: int) -> LatentHandoff:
    """The latents a segment that shows `shown` frames hands on for `continuity` (1 + 4k)
    frames of context (the module docstring has the arithmetic). Fewer latents when the
    segment shows fewer frames than the context asks for; none for continuity 0."""
    if continuity <= 0 or shown <= 0:
        return LatentHandoff(0, 0, 0)
    last = (shown - 1) // VAE_STRIDE
    count = min((continuity - 1) // VAE_STRIDE + 1, last + 1)
    return LatentHandoff(first=last - count + 1, count=count, extra=(shown - 1) % VAE_STRIDE)


@dataclass(frozen=True)
class SegmentPhase:
    """A phase on the segment's own clock (seconds from the render's first frame)."""

    action: str
    start: float
    end: float


@dataclass(frozen=True)
class SegmentSpec:
    index: int
    start: float  # seconds on the video clock (frame-aligned)
    end: float
    first_frame: int
    num_frames: int  # new frames this segment contributes to the video
    overlap: int  # leading frames repeated from the previous segment
    render_frames: int  # 4k+1 frames the renderer produces
    fps: int
    first_word: int | None
    last_word: int | None
    base: str
    phases: tuple[SegmentPhase, ...] = field(default_factory=tuple)

    @property
    def render_start(self) -> float:
        """Where the rendered clip (including its overlap) starts on the video clock."""
        return (self.first_frame - self.overlap) / self.fps

    @property
    def render_seconds(self) -> float:
        return self.render_frames / self.fps

    def to_dict(self) -> dict:
        d = asdict(self)
        d["phases"] = [asdict(p) for p in self.phases]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SegmentSpec":
        """The inverse of `to_dict` (task parameters and torchrun payloads are JSON)."""
        return cls(**{**d, "phases": tuple(SegmentPhase(**p) for p in d["phases"])})


def choose_cuts(words: list[Word], duration: float, fps: int, max_frames: int) -> list[int]:
    """Frame indices where segments end (the last is the video's frame count).

    Each cut sits in a gap between words (the longest pause within PAUSE_SEARCH_WINDOW
    of the limit, else the latest gap), at the frame nearest the middle of the pause. Fluent
    speech may have no frame inside any gap for a whole segment (an aligner that times words
    back to back, off the frame grid): then the cut goes to the frame nearest a word boundary,
    at most half a frame into a word. Only a single word longer than a segment is refused.
    """
    total = max(1, round(duration * fps))
    # Silences: before the first word, between words, after the last word (in time order).
    bounds = [0.0] + [t for w in words for t in (w.start, w.end)] + [duration]
    silences = [(bounds[i], bounds[i + 1]) for i in range(0, len(bounds) - 1, 2)]
    cuts: list[int] = []
    start, first = 0, 0  # `first`: the first silence that can still hold a cut
    while total - start > max_frames:
        limit = start + max_frames
        while first < len(silences) and silences[first][1] * fps < start:
            first += 1  # ends before this segment: never a candidate again
        gaps = []  # (pause seconds, cut frame): a frame inside the pause
        boundaries = []  # the same for pauses with no frame inside: the nearest frame
        for g0, g1 in silences[first:]:
            if g0 * fps > limit + 0.5:
                break  # this and every later silence lie past the limit
            lo, hi = int(-(-g0 * fps // 1)), int(g1 * fps // 1)  # frames inside [g0, g1]
            mid = round((g0 + g1) / 2 * fps)
            if lo > hi and start < mid <= limit:
                boundaries.append((g1 - g0, mid))
            lo, hi = max(lo, start + 1), min(hi, limit)
            if lo <= hi:
                gaps.append((g1 - g0, min(max(mid, lo), hi)))
        gaps = gaps or boundaries  # a word boundary only where no pause is in reach at all
        if not gaps:
            raise ValueError(
                f"no pause between words within {max_frames / fps:.2f} s after "
                f"{start / fps:.2f} s: a single word is longer than a segment"
            )
        near = [g for g in gaps if g[1] >= limit - PAUSE_SEARCH_WINDOW * fps]
        if near:
            cut = max(near, key=lambda g: (round(g[0], 3), g[1]))[1]
        else:
            cut = max(g[1] for g in gaps)
        cuts.append(cut)
        start = cut
    cuts.append(total)
    return cuts


def _words_in(
    starts: list[float], ends: list[float], t0: float, t1: float, tol: float
) -> tuple[int | None, int | None]:
    """The first and last word inside [t0, t1] (within `tol`), by bisection: the words are in
    time order, so each segment costs log(words), not a pass over the whole talk."""
    i = bisect.bisect_left(starts, t0 - tol)
    j = bisect.bisect_right(ends, t1 + tol) - 1
    return (i, j) if i <= j else (None, None)


def retime_phases(
    phases: list[Phase],
    render_start: float,
    seg_start: float,
    seg_end: float,
) -> tuple[SegmentPhase, ...]:
    """Phases overlapping [seg_start, seg_end), clipped and put on the render's own clock."""
    out = []
    for p in phases:
        s, e = max(p.start, seg_start), min(p.end, seg_end)
        if e - s <= 1e-6:
            continue
        ls, le = s - render_start, e - render_start
        out.append(SegmentPhase(p.action, round(ls, 4), round(le, 4)))
    return tuple(out)


def plan_segments(
    words: list[Word],
    duration: float,
    plan: Plan,
    *,
    fps: int,
    max_seconds: float = 5.0,
    overlap: int = 0,
    latent: bool = False,
) -> list[SegmentSpec]:
    """Segments covering the whole audio, each carrying its base block and re-timed phases.

    `latent`: each segment continues from the previous one's latents (`latent_handoff`), so its
    overlap is what the hand-off needs (up to 3 frames more than `overlap`; the limit keeps
    room for them)."""
    room = overlap + (LATENT_EXTRA if latent and overlap else 0)
    max_frames = max_content_frames(max_seconds, fps, room)
    if max_frames < fps:
        raise ValueError(
            f"segments of {max_seconds} s at {fps} fps leave no room for {overlap} overlap frames"
        )
    cuts = choose_cuts(words, duration, fps, max_frames)
    starts, ends = [w.start for w in words], [w.end for w in words]
    tol = 0.5 / fps  # a cut between back-to-back words may sit half a frame into one
    base = plan.base.render()
    specs: list[SegmentSpec] = []
    first = 0
    shown = 0  # frames the previous segment shows (overlap + new)
    for k, end_frame in enumerate(cuts):
        ov = overlap if k > 0 else 0
        if latent and ov:
            ov = latent_handoff(shown, overlap).overlap
        n = end_frame - first
        render_frames = four_k_plus_one(n + ov)
        start_s, end_s = first / fps, end_frame / fps
        render_start = (first - ov) / fps
        fw, lw = _words_in(starts, ends, start_s, end_s, tol)
        specs.append(
            SegmentSpec(
                index=k,
                start=start_s,
                end=end_s,
                first_frame=first,
                num_frames=n,
                overlap=ov,
                render_frames=render_frames,
                fps=fps,
                first_word=fw,
                last_word=lw,
                base=base,
                phases=retime_phases(plan.phases, render_start, start_s, end_s),
            )
        )
        first = end_frame
        shown = ov + n
    return specs
