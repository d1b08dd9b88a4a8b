"""Renderer dispatch: one loaded renderer per worker process (through its registered spec,
`flows.video.renderers`), and the per-segment request built from the render-job record (the
same way in-process and in a torchrun worker).

Continuity input, kept in the segment cache beside each segment's video: in `pixels` mode the
previous segment's last shown frames as PNGs (`save_tail`); in `latent` mode its last shown
latent frames (`save_tail_latents`, one safetensors file chosen by
`flows.video.segments.latent_handoff`), which the next request carries as `context_latents`.
"""

import json
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from flows.video.avatar import load_avatar
from flows.video.render_job import RenderJob, segment_timeline
from flows.video.renderers import RenderSetup, get_renderer_spec
from flows.video.segments import LatentHandoff, SegmentSpec, latent_handoff
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
    context_latents: np.ndarray | None = None,
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
        context_latents=context_latents,
        captions=captions,
        segment_start=t0,
        total_duration=total_duration,
        timeline_phases=segment_timeline(plan.phases, t0, t0 + seconds),
        timeline_cuts=cuts,
        title=title,
    )


def request_from_job(spec: SegmentSpec, job: RenderJob, context: list[str]) -> RenderRequest:
    """The renderer's request for one segment; `context` are the previous segment's tail PNGs,
    or (latent mode) its one tail latents file. Only the segment's own audio is read (the whole
    talk per segment made a long talk's renders quadratic in its length)."""
    latents = None
    if context and str(context[0]).endswith(LATENTS_SUFFIX):
        latents = load_tail_latents(Path(context[0]))
        context = []
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
        context_latents=latents,
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


LATENTS_SUFFIX = ".safetensors"
HANDOFF_KEY = "avatar_flow.handoff"
TAIL_LATENTS = "tail_latents" + LATENTS_SUFFIX


def tail_latent_frames(latents: np.ndarray, spec: SegmentSpec, continuity: int) -> np.ndarray:
    """The latent frames (z, c, h, w) of this segment's last shown frames that the next one
    starts from: `latent_handoff(overlap + num_frames, continuity)` of the render's latents
    (z, F, h, w), never a latent that holds unshown padding frames."""
    h = latent_handoff(spec.overlap + spec.num_frames, continuity)
    if latents.ndim != 4 or latents.shape[1] != (spec.render_frames - 1) // 4 + 1:
        raise RuntimeError(
            f"segment {spec.index}: latents of shape {latents.shape}, expected (z, "
            f"{(spec.render_frames - 1) // 4 + 1}, h, w) for {spec.render_frames} frames"
        )
    return np.ascontiguousarray(latents[:, h.first : h.first + h.count], dtype=np.float32)


def save_tail_latents(
    latents: np.ndarray, spec: SegmentSpec, continuity: int, folder: Path
) -> Path:
    """Write `tail_latent_frames` as one safetensors file, atomically (a killed run never
    leaves a half file under the name a resume reads). Its metadata says which latents and
    pixel frames of the render they are."""
    from safetensors.numpy import save

    from storage import atomic_write_bytes

    h: LatentHandoff = latent_handoff(spec.overlap + spec.num_frames, continuity)
    tail = tail_latent_frames(latents, spec, continuity)
    meta = {
        "segment": spec.index,
        "first_latent": h.first,
        "latent_frames": h.count,
        "pixel_frames": list(h.pixel_span),
        "shown_frames": spec.overlap + spec.num_frames,
        "next_overlap": h.overlap,
    }
    # One metadata key: safetensors writes its metadata map in no fixed order, and the file's
    # sha256 is part of the next segment's render key, so the bytes must not vary between runs.
    blob = save({"latents": tail}, metadata={HANDOFF_KEY: json.dumps(meta, sort_keys=True)})
    folder.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(folder / TAIL_LATENTS, blob)


def tail_latents_handoff(path: Path) -> dict:
    """The metadata `save_tail_latents` wrote: which latents and frames of the render."""
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return json.loads(f.metadata()[HANDOFF_KEY])


def load_tail_latents(path: Path) -> np.ndarray:
    """The latents `save_tail_latents` wrote (z, c, h, w) float32."""
    from safetensors.numpy import load_file

    return load_file(str(path))["latents"]


def anchor_colors(frames: np.ndarray, avatar: Image.Image, start: int) -> np.ndarray:
    """The colour anchor: `frames[start:]` matched to the avatar's per-channel mean and spread
    (`generator.conditioning.color_match`, statistics over the clip so it cannot flicker)."""
    from PIL import ImageOps

    from generator.conditioning import color_match

    h, w = frames.shape[1:3]
    ref = np.asarray(ImageOps.fit(avatar.convert("RGB"), (w, h), Image.Resampling.LANCZOS))
    return color_match(frames, ref, 1.0, start=start)
