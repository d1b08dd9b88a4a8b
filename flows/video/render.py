"""Renderer dispatch: one loaded renderer per worker process (through its registered spec,
`flows.video.renderers`), and the per-segment request built from the render-job record (the
same way in-process and in a torchrun worker)."""

import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from flows.video.avatar import load_avatar
from flows.video.render_job import RenderJob, segment_timeline
from flows.video.renderers import RenderSetup, get_renderer_spec
from flows.video.segments import SegmentSpec
from flows.video.speech import read_wav
from generator.render_types import (
    CaptionWord,
    PromptPhase,
    Renderer,
    RenderRequest,
    StructuredPrompt,
)
from planners.schema import Plan, Word

_lock = threading.Lock()


@lru_cache(maxsize=2)
def get_renderer(name: str, setup: RenderSetup = RenderSetup()) -> Renderer:  # noqa: B008
    """Load a renderer once per process and setup (the ActAvatar pipeline is expensive to
    load), through its spec's one loader (the torchrun worker uses the same)."""
    spec = get_renderer_spec(name)
    with _lock:
        return spec.load(setup)


def slice_audio(
    audio: np.ndarray, rate: int, start: float, seconds: float, offset: int = 0
) -> np.ndarray:
    """Samples for [start, start + seconds), zero-padded outside the recording; `audio` may be
    a window of it that begins at sample `offset`."""
    n = int(round(seconds * rate))
    i0 = int(round(start * rate)) - offset
    out = np.zeros(n, dtype=np.float32)
    lo, hi = max(i0, 0), min(i0 + n, len(audio))
    if hi > lo:
        out[lo - i0 : hi - i0] = audio[lo:hi]
    return out


def build_request(
    spec: SegmentSpec,
    *,
    words: list[Word],
    plan: Plan,
    audio16k: np.ndarray,
    avatar: Image.Image,
    width: int,
    height: int,
    seed: int,
    total_duration: float,
    cuts: list[float],
    title: str,
    context: list[Image.Image],
    audio_offset: int = 0,
) -> RenderRequest:
    """The renderer's request for one segment. `audio16k` is the speech at 16 kHz, or a window
    of it that starts at sample `audio_offset`."""
    t0 = spec.render_start
    seconds = spec.render_frames / spec.fps
    captions = [
        CaptionWord(w.word, round(w.start - t0, 4), round(w.end - t0, 4))
        for w in words
        if w.end > t0 and w.start < t0 + seconds
    ]
    prompt = StructuredPrompt(
        base=spec.base,
        phases=tuple(PromptPhase(p.action, p.start, p.end) for p in spec.phases),
        duration=seconds,
    )
    return RenderRequest(
        index=spec.index,
        num_frames=spec.render_frames,
        fps=spec.fps,
        width=width,
        height=height,
        audio=slice_audio(audio16k, 16000, t0, seconds, audio_offset),
        prompt=prompt,
        image=context[-1] if context else avatar,
        sample_rate=16000,
        seed=seed + spec.index,
        reference_image=avatar,
        overlap_frames=spec.overlap,
        context_frames=list(context),
        captions=captions,
        segment_start=t0,
        total_duration=total_duration,
        timeline_phases=segment_timeline(plan.phases, t0, t0 + seconds),
        timeline_cuts=cuts,
        title=title,
    )


def request_from_job(spec: SegmentSpec, job: RenderJob, context: list[str]) -> RenderRequest:
    """The renderer's request for one segment; `context` are the previous segment's tail PNGs.
    Only the segment's own audio is read (the whole talk per segment made a long talk's
    renders quadratic in its length)."""
    first = int(round(spec.render_start * 16000))
    audio, _ = read_wav(Path(job.analysis), first, int(round(spec.render_seconds * 16000)))
    return build_request(
        spec,
        words=job.transcript.words,
        plan=job.plan,
        audio16k=audio,
        audio_offset=first,
        avatar=load_avatar(Path(job.avatar) if job.avatar else None),
        width=job.width,
        height=job.height,
        seed=job.seed,
        total_duration=job.duration,
        cuts=list(job.cuts),
        title=job.title,
        context=[load_avatar(Path(p)) for p in context],
    )


def tail_frames(frames: np.ndarray, spec: SegmentSpec, count: int) -> np.ndarray:
    """The last `count` frames the video shows of this segment: the next one continues from them.

    A render has `render_frames` (4k+1) frames, of which only `overlap + num_frames` are kept;
    the frames after them are rounding padding that never appears in the video.
    """
    shown = spec.overlap + spec.num_frames
    return frames[max(0, shown - count) : shown] if count else frames[:0]


def save_tail(frames: np.ndarray, spec: SegmentSpec, count: int, folder: Path) -> list[Path]:
    """Write `tail_frames` as PNGs: the next segment's continuity input."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(tail_frames(frames, spec, count)):
        p = folder / f"tail_{i}.png"
        Image.fromarray(frame).save(p)
        paths.append(p)
    return paths
