"""The `actavatar` renderer: one saved `ActAvatarPipeline`, loaded once, renders segments.

Implements the `Renderer` protocol of `generator.render_types`. Continuity: the segment's
first `overlap_frames` frames repeat the previous segment's tail (`context_frames`, oldest
first); the first 1 + 4k of them are encoded and held clean at timestep 0 (one frame is the
TI2V image rule, more is the InfiniteTalk-style motion context), the rest are generated and
dropped by the stitcher. The first segment is conditioned on the avatar image.

Fast sampling (each off by default) arrives as one `generator.sampling.SamplingRequest`:
`load_actavatar_renderer(dir, sampling=SamplingRequest(fast=True))` loads the checkpoint's
distilled student instead (one forward per step, its own step count and solver from its
`sampling.json`); `solver`, `guidance_interval` and a calibrated `step_cache` go to every
pipeline call. `last_stats` holds the evaluations of the last render and `model_note` says
which model rendered (both part of the `Renderer` protocol, read by the run report);
`last_stats["timing"]` names the checkpoint's timing mechanism and `last_stats["warnings"]`
says when it drops the phase windows of a prompt that has phases (the job warns once).

Identity sink (issue 20): when the checkpoint's transformer has `reference_sink`, every
segment gets the avatar image's latent (`request.reference_image`, else `request.image`, which
is the avatar in the first segment) as its sink frame, encoded once per image and size;
`last_stats["identity_sink"]` is "on" or "off" and `last_stats["notes"]` says it in words.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np

from generator.render_types import ProgressFn, RenderRequest
from generator.sampling import SamplingRequest, resolve_sampling

__all__ = ["ActAvatarRenderer", "load_actavatar_renderer"]


def _resample(audio: np.ndarray, rate: int, target: int = 16000) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if rate == target or len(audio) == 0:
        return audio
    n = int(round(len(audio) * target / rate))
    x_old = np.arange(len(audio)) / rate
    x_new = np.arange(n) / target
    return np.interp(x_new, x_old, audio).astype(np.float32)


def _clean_context_count(overlap: int, available: int) -> int:
    """Largest 1 + 4k <= min(overlap, available) (0 when there is nothing to hold)."""
    n = min(overlap, available)
    return 0 if n <= 0 else (n - 1) // 4 * 4 + 1


class ActAvatarRenderer:
    """Renders a `RenderRequest` with an `ActAvatarPipeline` (CUDA when available)."""

    name = "actavatar"

    def __init__(
        self,
        pipeline: Any,
        num_inference_steps: int = 40,
        guidance_scale: float = 5.0,
        audio_guidance_scale: float = 5.0,
        negative_prompt: str | None = None,
        color_match_strength: float = 0.0,
        batched_guidance: bool = True,
        solver: str | None = None,
        guidance_interval: tuple[float, float] | None = None,
        step_cache: Any = None,
        model_note: str = "teacher",
    ):
        self.pipeline = pipeline
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.audio_guidance_scale = audio_guidance_scale
        self.negative_prompt = negative_prompt
        self.color_match_strength = color_match_strength
        self.batched_guidance = batched_guidance
        self.solver = solver
        self.guidance_interval = guidance_interval
        self.step_cache = step_cache
        self.model_note = model_note  # which model renders (teacher, or the student and why)
        self.last_stats: dict[str, Any] = {}
        self._lock = threading.Lock()  # one GPU job at a time per loaded pipeline
        self._sink_cache: tuple[tuple[Any, ...], Any] | None = None  # (key, latent)

    @property
    def identity_sink(self) -> bool:
        """True when the checkpoint keeps the avatar's latent in front of every segment."""
        return bool(getattr(self.pipeline.transformer.config, "reference_sink", False))

    def _reference_latents(self, request: RenderRequest) -> Any:
        """The avatar's latent for the sink (None without the switch), encoded once per
        image and size (every segment of a video shares it)."""
        if not self.identity_sink:
            return None
        image = request.reference_image if request.reference_image is not None else request.image
        digest = hashlib.sha1(image.tobytes()).hexdigest()
        key = (digest, image.size, image.mode, request.width, request.height)
        if self._sink_cache is None or self._sink_cache[0] != key:
            latent = self.pipeline.encode_condition_frames([image], request.height, request.width)
            self._sink_cache = (key, latent)
        return self._sink_cache[1]

    def render(self, request: RenderRequest, progress: ProgressFn | None = None) -> np.ndarray:
        from generator.conditioning import color_match

        audio = _resample(request.audio, request.sample_rate, 16000)
        n_ctx = _clean_context_count(request.overlap_frames, len(request.context_frames))
        context = list(request.context_frames[:n_ctx]) if n_ctx else None
        with self._lock:
            sink = self._reference_latents(request)
            extra = {} if sink is None else {"reference_latents": sink}
            out = self.pipeline(
                image=request.image,
                audio=audio,
                prompt=request.prompt,
                negative_prompt=self.negative_prompt,
                num_frames=request.num_frames,
                height=request.height,
                width=request.width,
                num_inference_steps=self.num_inference_steps,
                guidance_scale=self.guidance_scale,
                audio_guidance_scale=self.audio_guidance_scale,
                seed=request.seed,
                context_frames=context,
                fps=request.fps,
                sample_rate=16000,
                batched_guidance=self.batched_guidance,
                solver=self.solver,
                guidance_interval=self.guidance_interval,
                step_cache=self.step_cache,
                progress=progress,
                output_type="np",
                **extra,
            ).frames[0]
            self.last_stats = dict(getattr(self.pipeline, "sampling_stats", {}))
            self.last_stats.update(self._timing_stats(request))
            on = "on" if sink is not None else "off"
            self.last_stats["identity_sink"] = on
            self.last_stats["notes"] = [f"identity sink: {on}"]
        frames = np.clip(np.round(np.asarray(out) * 255.0), 0, 255).astype(np.uint8)
        if self.color_match_strength > 0 and request.reference_image is not None:
            from generator.pipeline_actavatar import resize_center_crop

            ref = np.asarray(
                resize_center_crop(request.reference_image, request.height, request.width)
            )
            frames = color_match(
                frames, ref, self.color_match_strength, start=request.overlap_frames
            )
        return frames

    def _timing_stats(self, request: RenderRequest) -> dict[str, Any]:
        """Which timing mechanism rendered, and a warning when the prompt's phase windows
        were dropped (a transformer without time-aware phases, e.g. the paper-exact one)."""
        from generator.transformer_actavatar import (
            PHASE_WINDOWS_WARNING,
            ignores_phase_windows,
            timing_mechanism,
        )

        config = dict(self.pipeline.transformer.config)
        stats: dict[str, Any] = {"timing": timing_mechanism(config)}
        if request.prompt.phases and ignores_phase_windows(config):
            stats["warnings"] = [PHASE_WINDOWS_WARNING]
        return stats


def load_actavatar_renderer(
    checkpoint_dir: str | Path,
    device: str | None = None,
    sampling: SamplingRequest | None = None,
    **renderer_kwargs: Any,
) -> ActAvatarRenderer:
    """Load a pipeline saved by `ActAvatarPipeline.save_pretrained` once, on `device`.

    Default device: CUDA when available (transformer and text encoder in bf16, VAE and
    audio encoder in fp32), else CPU in fp32. `sampling` (default: the reference sampler) is
    read against the checkpoint by `resolve_sampling`: `fast` loads the distilled student it
    names in its `sampling.json` (or the checkpoint itself when it is a student), run with its
    own steps, solver and guidance 1; `step_cache` the calibrated cache. A checkpoint without
    what is asked for is a one-line ValueError before anything loads. `renderer_kwargs` are
    the other `ActAvatarRenderer` arguments (guidance scales, colour matching...).
    """
    import torch

    from generator.pipeline_actavatar import ActAvatarPipeline

    resolved = resolve_sampling(checkpoint_dir, sampling or SamplingRequest())
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = str(device).startswith("cuda")
    dtype = torch.bfloat16 if on_gpu else torch.float32
    pipe = ActAvatarPipeline.from_pretrained(
        str(resolved.folder),
        dtype={"default": dtype, "vae": torch.float32, "audio_encoder": torch.float32},
        use_safetensors=True,
    )
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return ActAvatarRenderer(
        pipe, model_note=resolved.note, **{**renderer_kwargs, **resolved.renderer_kwargs}
    )
