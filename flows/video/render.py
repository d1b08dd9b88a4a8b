"""Renderer dispatch: one loaded renderer per worker process, the render-job record, and the
per-segment request built from it (the same way in-process and in a torchrun worker)."""

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict

from flows.video.avatar import load_avatar
from flows.video.options import RENDERERS
from flows.video.segments import SegmentSpec
from flows.video.speech import read_wav
from generator.render_types import (
    CaptionWord,
    PromptPhase,
    Renderer,
    RenderRequest,
    StructuredPrompt,
)
from planners.schema import Plan, Transcript, Word

_lock = threading.Lock()


def renderer_overlap(name: str, continuity_frames: int = 1) -> int:
    """Frames a renderer repeats from the previous segment's tail (0 = no continuity needed)."""
    return 0 if name == "animatic" else continuity_frames


@lru_cache(maxsize=2)
def get_renderer(
    name: str,
    checkpoint: str | None = None,
    device: str | None = None,
    steps: int = 40,
    sampling: tuple[tuple[str, Any], ...] = (),
) -> Renderer:
    """Load a renderer once per process (the ActAvatar pipeline is expensive to load).
    `sampling`: the job's fast-sampling options as sorted (name, value) pairs (hashable)."""
    with _lock:
        if name == "animatic":
            from generator.animatic import AnimaticRenderer

            return AnimaticRenderer()
        if name == "actavatar":
            if not checkpoint:
                raise ValueError(
                    "the actavatar renderer needs --checkpoint DIR (or AVATAR_FLOW_CHECKPOINT)"
                )
            from generator.renderer_actavatar import load_actavatar_renderer

            opts = dict(sampling)
            interval = opts.get("guidance_interval")
            return load_actavatar_renderer(
                checkpoint,
                device=device,
                num_inference_steps=steps,
                fast=bool(opts.get("fast")),
                step_cache=bool(opts.get("step_cache")),
                solver=opts.get("solver"),
                guidance_interval=tuple(interval) if interval else None,
            )
        raise ValueError(f"unknown renderer '{name}' (one of: {', '.join(RENDERERS)})")


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


def segment_timeline(phases: list, start: float, end: float) -> list[PromptPhase]:
    """The phases the animatic's timeline bar shows for a render window: those overlapping it.

    Only the segment's own phases are drawn (on the whole-video bar, at their times), so a
    segment's pixels depend on nothing planned elsewhere: an edited phase re-renders only the
    segments it touches, and the stitched preview never shows a stale bar.
    """
    return [
        PromptPhase(p.action, p.start, p.end) for p in phases if p.end > start and p.start < end
    ]


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


class RenderJob(BaseModel):
    """What every segment of one job renders with, besides its own spec and continuity frames.

    Frozen and JSON-able: the same record is the render task's parameter, part of the segment
    cache key, and the payload of a context-parallel torchrun launch.
    """

    model_config = ConfigDict(frozen=True)

    renderer: str
    checkpoint: str | None
    steps: int
    analysis: str  # the 16 kHz speech WAV
    transcript: Transcript
    plan: Plan
    avatar: str | None  # None: the built-in avatar
    width: int
    height: int
    seed: int
    duration: float
    cuts: tuple[float, ...]
    title: str
    continuity_frames: int
    # fast sampling (issue 12): fast, solver, guidance_interval [lo, hi], step_cache
    sampling: dict[str, Any] = {}

    def for_segment(self, spec: SegmentSpec) -> "RenderJob":
        """This job cut down to what one segment's render reads: the words and the plan's
        phases that overlap its render window (captions, timeline bar); everything else is
        kept. The render task gets this as its parameter, which Prefect walks and the task
        validates on every call: with the whole transcript there, each segment would cost
        time in proportion to the talk's length, and a long talk the square of it."""
        t0 = spec.render_start
        t1 = t0 + spec.render_seconds
        words = [w for w in self.transcript.words if w.end > t0 and w.start < t1]
        phases = [p for p in self.plan.phases if p.end > t0 and p.start < t1]
        return self.model_copy(
            update={
                "transcript": self.transcript.model_copy(update={"words": words}),
                "plan": self.plan.model_copy(update={"phases": phases}),
            }
        )

    def sampling_key(self) -> tuple[tuple[str, Any], ...]:
        """The sampling options as the hashable argument of `get_renderer`."""
        return tuple(
            sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in self.sampling.items())
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
