# Copyright 2025 The avatar-flow authors. Follows diffusers' WanImageToVideoPipeline (TI2V path),
# Copyright 2025 The Wan Team and The HuggingFace Team, Apache License 2.0.
"""ActAvatarPipeline: image + 16 kHz speech + structured prompt -> talking-avatar video.

The TI2V path of `WanImageToVideoPipeline` (first latent frame(s) = encoded condition, held
clean with timestep 0) plus ActAvatar's audio adapter, PACA phase ids and two guidance scales.

Guidance (three predictions per step, one batched forward by default):

    v_u  = v(negative text, no audio)      unconditional
    v_t  = v(text,          no audio)      text only
    v_ta = v(text,          audio)         text + audio
    v    = v_u + s_text * (v_t - v_u) + s_audio * (v_ta - v_t)

"No audio" skips the adapter (`audio_mask = 0`), it does not feed silence.

Fast sampling (`generator.sampling`, every option off by default): `solver` picks another
flow-matching scheduler for fewer steps; `guidance_interval=(lo, hi)` runs the three
predictions only while sigma is in [lo, hi] and exactly one forward (text + audio) elsewhere;
`step_cache` skips the block stack on steps where MagCache's calibrated rule says the residual
barely changes. `pipe.sampling_stats` records the evaluations of the last call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKLWan, DiffusionPipeline, UniPCMultistepScheduler
from diffusers.utils import BaseOutput, logging
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor

from generator.audio import wav2vec2_frame_features
from generator.conditioning import (
    clean_frame_mask,
    compose_clean_latents,
    latent_frames_for_context,
    prepend_sink,
    strip_sink,
    token_timesteps,
)
from generator.prompting import (
    DEFAULT_NEGATIVE_PROMPT,
    encode_structured_prompt,
    phase_windows,
    unconditional_phase_ids,
)
from generator.render_types import StructuredPrompt
from generator.sampling import (
    StepCacheConfig,
    disable_step_cache,
    enable_step_cache,
    guidance_on,
    make_scheduler,
    step_cache_stats,
)
from generator.transformer_actavatar import ActAvatarTransformer3DModel

logger = logging.get_logger(__name__)

ProgressCallback = Callable[[int, int], None]


@dataclass
class ActAvatarPipelineOutput(BaseOutput):
    """`frames`: (B, F, H, W, 3) floats in [0, 1] for `output_type="np"`, latents for "latent"."""

    frames: np.ndarray | torch.Tensor


def resize_center_crop(image: PIL.Image.Image, height: int, width: int) -> PIL.Image.Image:
    """Scale to cover (width, height) and centre-crop, keeping the aspect ratio (Wan TI2V)."""
    image = image.convert("RGB")
    scale = max(width / image.width, height / image.height)
    w, h = max(width, round(image.width * scale)), max(height, round(image.height * scale))
    image = image.resize((w, h), PIL.Image.Resampling.LANCZOS)
    left, top = (w - width) // 2, (h - height) // 2
    return image.crop((left, top, left + width, top + height))


def combine_guidance(
    v_uncond: torch.Tensor,
    v_text: torch.Tensor,
    v_text_audio: torch.Tensor,
    text_scale: float,
    audio_scale: float,
) -> torch.Tensor:
    """`v_u + s_text (v_t - v_u) + s_audio (v_ta - v_t)` (both scales 1 -> v_ta)."""
    return v_uncond + text_scale * (v_text - v_uncond) + audio_scale * (v_text_audio - v_text)


@dataclass(frozen=True)
class Conditioning:
    """What every forward of one batch of B clips is conditioned on, besides the noisy latents.

    One record for the pipeline, the distillation teacher and the bench, so all three sample
    with exactly the same inputs per guidance branch. `negative_*` may have batch 1 (broadcast).
    """

    prompt_embeds: torch.Tensor  # (B, L, D_text) the structured prompt, one umT5 pass
    phase_ids: torch.Tensor | None  # (B, L) PACA block index per token (None: plain Wan)
    negative_prompt_embeds: torch.Tensor  # (1 or B, L, D_text)
    negative_phase_ids: torch.Tensor | None  # (1 or B, L) all-base ids of the negative text
    audio_embeds: torch.Tensor | None  # (B, F_video, window, C) audio tokens; None: no audio
    # (B, max_phases + 2, 2) [start, end) of each block id's anchor window in latent frames
    # (time-aware phases; `prompting.phase_windows`); None for a model without them
    phase_windows: torch.Tensor | None = None

    def forward_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every transformer forward takes besides the three branch inputs."""
        return {} if self.phase_windows is None else {"phase_windows": self.phase_windows}


@dataclass(frozen=True)
class Guidance:
    """How the three-prediction guidance of the module docstring runs."""

    text_scale: float = 5.0
    audio_scale: float = 5.0
    interval: tuple[float, float] | None = None  # sigma range with guidance; None: every step
    batched: bool = True  # the three predictions as one B=3 forward

    @property
    def active(self) -> bool:
        """False when both scales are 1: one text+audio forward is the whole formula."""
        return not (self.text_scale == 1.0 and self.audio_scale == 1.0)


def guided_velocity(
    model: Any,
    x: torch.Tensor,
    timestep: torch.Tensor,
    cond: Conditioning,
    guidance: Guidance,
    *,
    guided: bool = True,
    step_index: int | None = None,
    num_steps: int | None = None,
    attention_kwargs: dict[str, Any] | None = None,
) -> torch.Tensor:
    """The sampler's velocity for a batch of B samples `x` (B, C, F, H, W): the three-prediction
    guidance of the module docstring, or one text+audio forward when `guided` is False or both
    scales are 1. Tensors of `cond` with batch B are repeated for the batched B=3 call;
    `step_index` / `num_steps` go into the cache context (step cache)."""
    where = {"step_index": step_index, "num_inference_steps": num_steps}
    extra = cond.forward_kwargs()
    b = x.shape[0]
    if not guided or not guidance.active:
        with model.cache_context("text_audio", **where):
            return model(
                x,
                timestep,
                cond.prompt_embeds,
                audio_embeds=cond.audio_embeds,
                phase_ids=cond.phase_ids,
                attention_kwargs=attention_kwargs,
                return_dict=False,
                **extra,
            )[0].float()
    neg = cond.negative_prompt_embeds.expand(b, -1, -1)
    ids = cond.phase_ids
    neg_ids = None if cond.negative_phase_ids is None else cond.negative_phase_ids.expand(b, -1)
    if guidance.batched:

        def rep(v: Any) -> Any:
            return torch.cat([v] * 3) if torch.is_tensor(v) and v.shape[:1] == (b,) else v

        with model.cache_context("guidance_batch", **where):
            out = model(
                rep(x),
                rep(timestep),
                torch.cat([neg, cond.prompt_embeds, cond.prompt_embeds]),
                audio_embeds=rep(cond.audio_embeds),
                phase_ids=None if ids is None else torch.cat([neg_ids, ids, ids]),
                audio_mask=torch.tensor([0.0] * (2 * b) + [1.0] * b, device=x.device),
                attention_kwargs=attention_kwargs,
                return_dict=False,
                **{k: rep(v) for k, v in extra.items()},
            )[0]
        v_u, v_t, v_ta = out.chunk(3)
    else:
        passes = {
            "uncond": (neg, neg_ids, None),
            "text": (cond.prompt_embeds, ids, None),
            "text_audio": (cond.prompt_embeds, ids, cond.audio_embeds),
        }
        preds = {}
        for name, (embeds, branch_ids, audio) in passes.items():
            with model.cache_context(name, **where):
                preds[name] = model(
                    x,
                    timestep,
                    embeds,
                    audio_embeds=audio,
                    phase_ids=branch_ids,
                    attention_kwargs=attention_kwargs,
                    return_dict=False,
                    **extra,
                )[0]
        v_u, v_t, v_ta = preds["uncond"], preds["text"], preds["text_audio"]
    return combine_guidance(
        v_u.float(), v_t.float(), v_ta.float(), guidance.text_scale, guidance.audio_scale
    )


def denoise(
    model: Any,
    scheduler: Any,
    latents: torch.Tensor,
    clean: torch.Tensor,
    cond: Conditioning,
    guidance: Guidance,
    num_inference_steps: int,
    *,
    step_cache: StepCacheConfig | None = None,
    attention_kwargs: dict[str, Any] | None = None,
    on_step: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor | None] | None = None,
    interrupted: Callable[[], bool] | None = None,
    reference_latents: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The pipeline's denoising loop on latents: (B, C, F, H, W) noise -> clean latents.

    `clean` (B, C, num_clean, H, W) are the encoded condition frames, held clean at timestep 0
    as the first latent frames (TI2V rule). Every step calls `guided_velocity` (three
    predictions inside `guidance.interval`, one outside) and `scheduler.step`; `step_cache`
    skips block stacks by the MagCache rule. `ActAvatarPipeline.__call__` runs exactly this;
    the bench calls it on its own latents so that what is measured is what users run.
    `on_step(i, t, latents)` may return new latents. Returns the latents (condition
    composited) and the call's evaluation counts.

    `reference_latents` (B or 1, C, 1, H, W): the identity sink of a `reference_sink`
    transformer, held clean in front of `clean` (`generator.conditioning.prepend_sink`) at
    every step; `on_step` and the result see the clip's frames only (the sink stripped)."""
    if reference_latents is not None:
        sink = reference_latents.to(latents.device, torch.float32)
        step_fn = on_step

        def on_step_clip(i: int, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
            new = step_fn(i, t, strip_sink(x))
            return None if new is None else prepend_sink(new, x[:, :, :1])

        out, stats = denoise(
            model,
            scheduler,
            prepend_sink(latents, torch.zeros_like(sink)),
            prepend_sink(clean.to(sink.device, torch.float32), sink),
            cond,
            guidance,
            num_inference_steps,
            step_cache=step_cache,
            attention_kwargs=attention_kwargs,
            on_step=None if on_step is None else on_step_clip,
            interrupted=interrupted,
        )
        return strip_sink(out), stats
    device = latents.device
    dtype = model.dtype
    b, _, f, h, w = latents.shape
    num_clean = clean.shape[2]
    scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps = scheduler.timesteps
    sigmas = [float(s) for s in scheduler.sigmas[: len(timesteps)]]
    interval = guidance.interval
    if interval is not None and not 0 <= interval[0] <= interval[1]:
        raise ValueError(f"guidance_interval must be (lo, hi) with lo <= hi, got {interval}")
    frame_mask = clean_frame_mask(f, num_clean, b, device)
    p_h, p_w = model.config.patch_size[1:]
    tokens_per_frame = (h // p_h) * (w // p_w)
    evaluations = guided_steps = 0
    if step_cache is not None:
        enable_step_cache(model, step_cache)
    try:
        for i, t in enumerate(timesteps):
            if interrupted is not None and interrupted():
                continue
            x = compose_clean_latents(latents, clean, num_clean).to(dtype)
            timestep = token_timesteps(t, frame_mask, tokens_per_frame)
            guided = guidance.active and guidance_on(sigmas[i], interval)
            guided_steps += int(guided)
            evaluations += 3 if guided else 1
            v = guided_velocity(
                model,
                x,
                timestep,
                cond,
                guidance,
                guided=guided,
                step_index=i,
                num_steps=len(timesteps),
                attention_kwargs=attention_kwargs,
            )
            latents = scheduler.step(v, t, latents, return_dict=False)[0]
            if on_step is not None:
                new = on_step(i, t, latents)
                latents = latents if new is None else new
        skipped = step_cache_stats(model)["skipped"] if step_cache is not None else 0
    finally:
        if step_cache is not None:
            disable_step_cache(model)
    stats = {
        "steps": len(timesteps),
        "guided_steps": guided_steps,
        # block-stack forwards per clip (a guided step counts 3, a cached one 0)
        "evaluations": (evaluations * b - skipped) // b,
        "cache_skipped": skipped // b,
        "solver": type(scheduler).__name__,
    }
    return compose_clean_latents(latents, clean, num_clean), stats


class ActAvatarPipeline(DiffusionPipeline):
    r"""
    ActAvatar talking-avatar generation on Wan2.2-TI2V-5B.

    Components:
        tokenizer (`T5Tokenizer`): umT5 tokenizer (fast, must return offsets).
        text_encoder (`UMT5EncoderModel`): umT5-XXL encoder.
        vae (`AutoencoderKLWan`): the Wan2.2 VAE (16x spatial, 4x temporal).
        scheduler (`UniPCMultistepScheduler`): flow matching with Wan's shift (5.0 at 720p).
        transformer (`ActAvatarTransformer3DModel`): Wan2.2 + audio adapter + PACA.
        audio_encoder (`Wav2Vec2Model`): speech features (all layers are used).
        audio_feature_extractor (`Wav2Vec2FeatureExtractor`): waveform normalisation.
    """

    model_cpu_offload_seq = "text_encoder->audio_encoder->transformer->vae"
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]
    _optional_components: list[str] = []

    def __init__(
        self,
        tokenizer: Any,
        text_encoder: Any,
        vae: AutoencoderKLWan,
        scheduler: UniPCMultistepScheduler,
        transformer: ActAvatarTransformer3DModel,
        audio_encoder: Any,
        audio_feature_extractor: Any,
        fps: int = 25,
    ):
        super().__init__()
        self.register_modules(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            scheduler=scheduler,
            transformer=transformer,
            audio_encoder=audio_encoder,
            audio_feature_extractor=audio_feature_extractor,
        )
        self.register_to_config(fps=fps)
        self.vae_scale_factor_temporal = self.vae.config.scale_factor_temporal if self.vae else 4
        self.vae_scale_factor_spatial = self.vae.config.scale_factor_spatial if self.vae else 16
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)

    # ------------------------------------------------------------------------------------------
    # Assembly from public checkpoints
    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_wan(
        cls,
        wan_dir: str | Path,
        wav2vec_dir: str | Path,
        torch_dtype: torch.dtype = torch.bfloat16,
        vae_dtype: torch.dtype = torch.float32,
        text_encoder_dtype: torch.dtype | None = None,
        flow_shift: float = 5.0,
        fps: int = 25,
        **transformer_config: Any,
    ) -> ActAvatarPipeline:
        """Assemble from a Wan2.2-TI2V diffusers folder and a Wav2Vec2 folder (local paths).

        The transformer is `ActAvatarTransformer3DModel.from_wan_pretrained` (new modules start
        as identity); the audio adapter's input size follows the Wav2Vec2 config unless given.
        """
        from transformers import (
            AutoTokenizer,
            UMT5EncoderModel,
            Wav2Vec2FeatureExtractor,
            Wav2Vec2Model,
        )

        wan_dir, wav2vec_dir = Path(wan_dir), Path(wav2vec_dir)
        audio_encoder = Wav2Vec2Model.from_pretrained(wav2vec_dir, use_safetensors=True)
        transformer_config.setdefault("audio_in_dim", audio_encoder.config.hidden_size)
        transformer_config.setdefault("audio_layers", audio_encoder.config.num_hidden_layers)
        transformer = ActAvatarTransformer3DModel.from_wan_pretrained(
            wan_dir, subfolder="transformer", torch_dtype=torch_dtype, **transformer_config
        )
        vae = AutoencoderKLWan.from_pretrained(
            wan_dir, subfolder="vae", dtype=vae_dtype, use_safetensors=True
        )
        text_encoder = UMT5EncoderModel.from_pretrained(
            wan_dir / "text_encoder", dtype=text_encoder_dtype or torch_dtype, use_safetensors=True
        )
        tokenizer = AutoTokenizer.from_pretrained(wan_dir / "tokenizer")
        if (wan_dir / "scheduler").is_dir():
            scheduler = UniPCMultistepScheduler.from_pretrained(wan_dir, subfolder="scheduler")
        else:
            scheduler = UniPCMultistepScheduler(
                prediction_type="flow_prediction",
                use_flow_sigmas=True,
                num_train_timesteps=1000,
                flow_shift=flow_shift,
            )
        feature_extractor = Wav2Vec2FeatureExtractor.from_pretrained(wav2vec_dir)
        return cls(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            scheduler=scheduler,
            transformer=transformer,
            audio_encoder=audio_encoder.to(torch.float32),
            audio_feature_extractor=feature_extractor,
            fps=fps,
        )

    # ------------------------------------------------------------------------------------------
    # Conditioning
    # ------------------------------------------------------------------------------------------
    def encode_prompt(
        self,
        prompt: StructuredPrompt | str,
        negative_prompt: str | None = None,
        max_sequence_length: int = 512,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Jointly encode the structured prompt -> (embeds, phase_ids, neg_embeds, neg_phase_ids)."""
        device = device or self._execution_device
        dtype = dtype or self.transformer.dtype
        negative_prompt = DEFAULT_NEGATIVE_PROMPT if negative_prompt is None else negative_prompt
        embeds, phase_ids = encode_structured_prompt(
            [prompt, negative_prompt],
            self.tokenizer,
            self.text_encoder,
            max_sequence_length=max_sequence_length,
            max_phases=self.transformer.config.max_phases,
            device=device,
            dtype=dtype,
        )
        # the negative branch carries the unconditional ids, as training's dropped text does
        negative_ids = unconditional_phase_ids(1, phase_ids.shape[1]).to(phase_ids.device)
        return embeds[:1], phase_ids[:1], embeds[1:], negative_ids

    def encode_audio(
        self,
        audio: np.ndarray | torch.Tensor,
        num_frames: int,
        fps: float,
        sample_rate: int = 16000,
    ) -> torch.Tensor:
        """Per-video-frame Wav2Vec2 features (1, num_frames, L, C) on the execution device."""
        if sample_rate != 16000:
            raise ValueError("Wav2Vec2 expects 16 kHz audio; resample first")
        feats = wav2vec2_frame_features(
            audio,
            self.audio_encoder,
            self.audio_feature_extractor,
            num_frames=num_frames,
            fps=fps,
            sample_rate=sample_rate,
            num_layers=self.transformer.config.audio_layers,
        )
        return feats.to(self._execution_device, self.transformer.dtype)

    def _latents_stats(
        self, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.vae.config.z_dim
        mean = torch.tensor(self.vae.config.latents_mean).view(1, z, 1, 1, 1).to(device, dtype)
        std = torch.tensor(self.vae.config.latents_std).view(1, z, 1, 1, 1).to(device, dtype)
        return mean, std

    @torch.no_grad()
    def encode_condition_frames(
        self, frames: Sequence[PIL.Image.Image], height: int, width: int
    ) -> torch.Tensor:
        """Encode 1 + 4k conditioning frames -> normalised clean latents (1, z, 1 + k, h, w).

        One frame is the TI2V image rule; more frames are the previous segment's tail
        (segment continuity). Posterior mode, as the Wan pipelines do.
        """
        latent_frames_for_context(len(frames), self.vae_scale_factor_temporal)  # validates 1 + 4k
        pixels = [
            self.video_processor.preprocess(resize_center_crop(f, height, width), height, width)
            for f in frames
        ]
        video = torch.stack(pixels, dim=2)  # (1, 3, k, H, W) in [-1, 1]
        param = next(self.vae.parameters())
        video = video.to(device=param.device, dtype=self.vae.dtype)
        z = self.vae.encode(video).latent_dist.mode()
        mean, std = self._latents_stats(z.device, z.dtype)
        return ((z - mean) / std).to(self._execution_device, torch.float32)

    @property
    def uses_reference_sink(self) -> bool:
        """True when the transformer keeps the reference image as a sink frame (issue 20)."""
        return bool(getattr(self.transformer.config, "reference_sink", False))

    def reference_sink_latents(
        self,
        image: PIL.Image.Image | None,
        reference_latents: torch.Tensor | None,
        height: int,
        width: int,
    ) -> torch.Tensor:
        """The sink frame (1, C, 1, h, w): `reference_latents` as given, else `image` encoded."""
        h, w = height // self.vae_scale_factor_spatial, width // self.vae_scale_factor_spatial
        if reference_latents is None:
            if image is None:
                raise ValueError(
                    "this transformer keeps a reference sink: give `image` or `reference_latents`"
                )
            return self.encode_condition_frames([image], height, width)
        ref = torch.as_tensor(reference_latents)
        want = (self.vae.config.z_dim, 1, h, w)
        if ref.ndim != 5 or tuple(ref.shape[1:]) != want:
            raise ValueError(
                f"reference_latents must be (B, {want[0]}, 1, {h}, {w}), got {tuple(ref.shape)}"
            )
        return ref.to(self._execution_device, torch.float32)

    def check_inputs(self, num_frames: int, height: int, width: int) -> None:
        multiple = self.vae_scale_factor_spatial * self.transformer.config.patch_size[1]
        if height % multiple or width % multiple:
            raise ValueError(
                f"height and width must be multiples of {multiple}, got {height}x{width}"
            )
        if (num_frames - 1) % self.vae_scale_factor_temporal:
            raise ValueError(f"num_frames must be 4k+1, got {num_frames}")

    def prepare_latents(
        self,
        num_frames: int,
        height: int,
        width: int,
        generator: torch.Generator | None,
        device: torch.device,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        shape = (
            1,
            self.vae.config.z_dim,
            (num_frames - 1) // self.vae_scale_factor_temporal + 1,
            height // self.vae_scale_factor_spatial,
            width // self.vae_scale_factor_spatial,
        )
        if latents is not None:
            return latents.to(device=device, dtype=torch.float32)
        # sample on the generator's device (CPU by default) so a seed gives the same video anywhere
        gen_device = generator.device if generator is not None else torch.device("cpu")
        return randn_tensor(shape, generator=generator, device=gen_device, dtype=torch.float32).to(
            device
        )

    # ------------------------------------------------------------------------------------------
    # Properties (diffusers conventions)
    # ------------------------------------------------------------------------------------------
    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def audio_guidance_scale(self) -> float:
        return self._audio_guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale != 1.0 or self._audio_guidance_scale != 1.0

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def current_timestep(self) -> torch.Tensor | None:
        return self._current_timestep

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    # ------------------------------------------------------------------------------------------
    # Denoiser call with guidance
    # ------------------------------------------------------------------------------------------
    def predict_velocity(
        self,
        latent_model_input: torch.Tensor,
        timestep: torch.Tensor,
        cond: Conditioning,
        batched: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        guided: bool = True,
        step_index: int | None = None,
        num_steps: int | None = None,
    ) -> torch.Tensor:
        """Guided velocity for one step at the call's guidance scales (see the module
        docstring for the formula). `guided=False` (outside the guidance interval) runs the
        single text+audio forward; `step_index` / `num_steps` go into the cache context."""
        guidance = Guidance(self._guidance_scale, self._audio_guidance_scale, batched=batched)
        return guided_velocity(
            self.transformer,
            latent_model_input,
            timestep,
            cond,
            guidance,
            guided=guided,
            step_index=step_index,
            num_steps=num_steps,
            attention_kwargs=attention_kwargs,
        )

    @torch.no_grad()
    def __call__(
        self,
        image: PIL.Image.Image | None = None,
        audio: np.ndarray | torch.Tensor | None = None,
        prompt: StructuredPrompt | str = "",
        negative_prompt: str | None = None,
        num_frames: int = 125,
        height: int = 704,
        width: int = 1280,
        num_inference_steps: int = 40,
        guidance_scale: float = 5.0,
        audio_guidance_scale: float = 5.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        context_frames: Sequence[PIL.Image.Image] | None = None,
        fps: int | None = None,
        sample_rate: int = 16000,
        latents: torch.Tensor | None = None,
        batched_guidance: bool = True,
        solver: str | None = None,
        guidance_interval: tuple[float, float] | None = None,
        step_cache: StepCacheConfig | None = None,
        max_sequence_length: int = 512,
        output_type: str = "np",
        return_dict: bool = True,
        progress: ProgressCallback | None = None,
        callback_on_step_end: Callable[[Any, int, torch.Tensor, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        attention_kwargs: dict[str, Any] | None = None,
        reference_latents: torch.Tensor | None = None,
    ) -> ActAvatarPipelineOutput | tuple:
        r"""
        Generate a talking-avatar clip.

        Args:
            image: the avatar (or continuity) image; latent frame 0 is its encoding, kept clean.
            audio: mono 16 kHz speech for exactly this clip (trimmed / zero-padded to fit).
            prompt: a `StructuredPrompt` (base + time-anchored phases) or a plain string.
            negative_prompt: negative text (default: Wan's negative prompt).
            num_frames: 4k+1 frames (125 = 5 s at 25 fps).
            height, width: multiples of 32 (704 x 1280 default).
            num_inference_steps: sampler steps (40).
            guidance_scale, audio_guidance_scale: text and audio guidance (5.0 each).
            seed / generator: the initial noise (sampled on CPU for portability).
            context_frames: 1 + 4k frames (oldest first) that the clip must start with, e.g. the
                previous segment's tail; they are encoded and held clean at timestep 0 as the
                first latent frames. Overrides `image`.
            batched_guidance: run the three guidance predictions as one B=3 forward.
            solver: None (the pipeline's scheduler) or a name of `generator.sampling.SOLVERS`.
            guidance_interval: (lo, hi) in sigma; guidance (three predictions) only inside,
                one text+audio forward outside. None: every step.
            step_cache: a calibrated `StepCacheConfig` (MagCache rule); None: no caching.
            progress: `progress(done, total)` after every step.
            output_type: "np" (frames in [0, 1]), "pt" or "latent" (the clip's latents, without
                the sink frame).
            reference_latents: (B, C, 1, h, w) normalised latent of the reference (avatar)
                image: the identity sink held clean as latent frame 0 of every segment, in
                front of the context. Used only when `transformer.config.reference_sink`;
                None there encodes `image` (the renderer passes the avatar's latent so later
                segments, whose `image` is the previous tail, still see the avatar).
        """
        fps = fps or self.config.fps
        self.check_inputs(num_frames, height, width)
        if audio is None:
            raise ValueError("audio is required")
        cond_frames = (
            list(context_frames) if context_frames else ([image] if image is not None else [])
        )
        if not cond_frames:
            raise ValueError("give an image or context_frames")

        self._guidance_scale = guidance_scale
        self._audio_guidance_scale = audio_guidance_scale
        self._current_timestep = None
        self._interrupt = False
        device = self._execution_device
        dtype = self.transformer.dtype
        if generator is None and seed is not None:
            generator = torch.Generator(device="cpu").manual_seed(seed)

        # 1. Encode the structured prompt (one umT5 pass, PACA phase ids) and the audio
        prompt_embeds, phase_ids, negative_prompt_embeds, negative_phase_ids = self.encode_prompt(
            prompt, negative_prompt, max_sequence_length, device, dtype
        )
        audio_embeds = self.encode_audio(audio, num_frames, fps, sample_rate)

        # 2. The scheduler (a named solver replaces it for this call only)
        scheduler = (
            self.scheduler if solver is None else make_scheduler(solver, self.scheduler.config)
        )

        # 3. Latents and the clean conditioning frames (image or previous tail)
        latents = self.prepare_latents(num_frames, height, width, generator, device, latents)
        condition = self.encode_condition_frames(cond_frames, height, width)
        num_latent_frames = latents.shape[2]
        sink = self.uses_reference_sink
        # identity sink: [reference | context | generated], held by `denoise`
        reference = (
            self.reference_sink_latents(image, reference_latents, height, width) if sink else None
        )
        # anchor windows of the prompt's phases on the latent grid (time-aware phases)
        windows = phase_windows(
            prompt,
            fps,
            num_latent_frames,
            self.transformer.config.max_phases,
            self.vae_scale_factor_temporal,
        )[None].to(device)

        # 4. Denoising loop (`denoise`: the same function the bench samples with)
        scheduler.set_timesteps(num_inference_steps, device=device)
        self._num_timesteps = len(scheduler.timesteps)
        tensors = {
            "prompt_embeds": prompt_embeds,
            "negative_prompt_embeds": negative_prompt_embeds,
        }

        def on_step(i: int, t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
            self._current_timestep = t
            if callback_on_step_end is not None:
                local_vars = {"latents": latents, **tensors}
                callback_kwargs = {k: local_vars[k] for k in callback_on_step_end_tensor_inputs}
                outputs = callback_on_step_end(self, i, t, callback_kwargs)
                latents = outputs.pop("latents", latents)
            progress_bar.update()
            if progress is not None:
                progress(i + 1, self._num_timesteps)
            return latents

        with self.progress_bar(total=self._num_timesteps) as progress_bar:
            latents, self.sampling_stats = denoise(
                self.transformer,
                scheduler,
                latents,
                condition,
                Conditioning(
                    prompt_embeds=prompt_embeds,
                    phase_ids=phase_ids,
                    negative_prompt_embeds=negative_prompt_embeds,
                    negative_phase_ids=negative_phase_ids,
                    audio_embeds=audio_embeds,
                    phase_windows=windows,
                ),
                Guidance(
                    guidance_scale,
                    audio_guidance_scale,
                    interval=guidance_interval,
                    batched=batched_guidance,
                ),
                num_inference_steps,
                step_cache=step_cache,
                attention_kwargs=attention_kwargs,
                on_step=on_step,
                interrupted=lambda: self.interrupt,
                reference_latents=reference,
            )
        self._current_timestep = None
        if solver is not None:
            self.sampling_stats["solver"] = solver
        self.sampling_stats["identity_sink"] = "on" if sink else "off"

        # 5. Decode
        if output_type == "latent":
            video = latents
        else:
            param = next(self.vae.parameters())
            z = latents.to(device=param.device, dtype=self.vae.dtype)
            mean, std = self._latents_stats(z.device, z.dtype)
            video = self.vae.decode(z * std + mean, return_dict=False)[0]
            video = self.video_processor.postprocess_video(video, output_type=output_type)

        self.maybe_free_model_hooks()
        if not return_dict:
            return (video,)
        return ActAvatarPipelineOutput(frames=video)
