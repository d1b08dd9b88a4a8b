"""Flow-matching loss with Wan's per-token timesteps and the I2V first-frame rule.

x_t = (1 - sigma) x0 + sigma x1 with x1 the noise; the model sees t = 1000 sigma and predicts
the velocity x1 - x0 (diffusers' `flow_prediction`, the paper's target). In I2V mode (stage 2)
the first latent frame is the clean image latent with per-token t = 0, exactly as
`ActAvatarPipeline` samples (shared helpers from `generator.conditioning`), and the loss is
averaged over the noisy frames only.

Stage 2 may also draw, per sample, how many leading latent frames are clean context
(`num_context`, `data.context_latents`) and a noise level for them (`context_level`,
`train.context_noise`: the level is hidden from the model, whose context tokens keep t = 0;
see `LoopConfig.context_noise`) and a per-channel offset for them (`context_shift`,
`train.context_shift`, also hidden), and keep the identity sink in front (`reference_sink`: the
clip's first latent frame, clean, t = 0, never noised, never in the loss; the layout of
`generator.conditioning.prepend_sink`, as the pipeline builds it).
"""

from __future__ import annotations

from typing import Any

import torch

from generator.conditioning import (
    SINK_FRAMES,
    compose_masked,
    context_frame_mask,
    noise_context,
    prepend_sink,
    shift_context,
    token_timesteps,
)

__all__ = ["flow_matching_loss", "noisy_inputs", "sink_layout"]


def sink_layout(
    latents: torch.Tensor, noise: torch.Tensor, sink: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training's `[sink | clip]` layout: the clip's first latent frame (pixel frame 0 alone
    through the causal VAE: an image latent, like the reference) prepended as the sink, with
    zero noise in its slot (it is held clean). `sink` (B, C, 1, h, w): that frame when the
    window was cut further into the clip (`data.sink_gap`); None: the window's first frame."""
    if sink is None:
        sink = latents[:, :, :SINK_FRAMES]
    sink = sink.to(latents.device, latents.dtype)
    return prepend_sink(latents, sink), prepend_sink(noise, torch.zeros_like(sink))


def noisy_inputs(
    latents: torch.Tensor,
    noise: torch.Tensor,
    sigma: torch.Tensor,
    num_clean: int | torch.Tensor,
    patch_hw: tuple[int, int],
    *,
    context_level: torch.Tensor | None = None,
    context_start: int = 0,
    context_offset: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_t, per-token timesteps (B, F*h'*w'), frame mask (B, F): 1 = noisy) for (B, C, F, h, w).

    `num_clean` is an int or a per-sample (B,) count of clean leading frames (the sink
    included when there is one). `context_level` (B,): the clean frames from `context_start`
    on (the context, after the sink) are noised to that level with `noise`; their timestep
    stays 0 (the model is not told). `context_offset` (B, C): added to those frames first (a
    colour-shifted context, `train.context_shift`), also hidden.
    """
    b, _, f, h, w = latents.shape
    s = sigma.float().view(b, 1, 1, 1, 1)
    xt = (1.0 - s) * latents.float() + s * noise.float()
    k = torch.as_tensor(num_clean, device=latents.device).long().reshape(-1).expand(b)
    mask = context_frame_mask(f, k).to(latents.device)
    clean = latents.float()
    if context_offset is not None:
        clean = shift_context(clean, context_offset.float(), k - context_start, context_start)
    if context_level is not None:
        clean = noise_context(
            clean, noise.float(), context_level.float(), k - context_start, context_start
        )
    xt = compose_masked(xt, clean, mask)
    tokens_per_frame = (h // patch_hw[0]) * (w // patch_hw[1])
    timesteps = token_timesteps(sigma.float() * 1000.0, mask, tokens_per_frame)
    return xt, timesteps, mask


def flow_matching_loss(
    model: Any,
    batch: dict[str, Any],
    num_clean: int,
    patch_hw: tuple[int, int],
    dtype: torch.dtype = torch.float32,
    reference_sink: bool = False,
) -> torch.Tensor:
    """Masked MSE between the predicted and the true velocity (mean over noisy elements).

    In I2V mode (`num_clean` > 0) the batch's per-sample `num_context` replaces `num_clean`
    and its `context_level` noises the context, when present (stage-2 batches)."""
    latents, noise = batch["latents"], batch["noise"]  # (B, C, F, h, w)
    level = offset = None
    if num_clean > 0:
        if batch.get("num_context") is not None:
            num_clean = batch["num_context"].to(latents.device)
        level = batch.get("context_level")
        if level is not None and not bool((level > 0).any()):
            level = None
        offset = batch.get("context_shift")
    start = 0
    if reference_sink:
        if isinstance(num_clean, int) and num_clean == 0:
            raise ValueError("the reference sink needs an I2V stage (stage 2)")
        latents, noise = sink_layout(latents, noise, batch.get("sink"))
        num_clean, start = num_clean + SINK_FRAMES, SINK_FRAMES
    xt, timesteps, mask = noisy_inputs(
        latents,
        noise,
        batch["sigma"],
        num_clean,
        patch_hw,
        context_level=None if level is None else level.to(latents.device),
        context_start=start,
        context_offset=None if offset is None else offset.to(latents.device),
    )
    pred = model(
        xt.to(dtype),
        timesteps,
        batch["prompt_embeds"].to(dtype),
        audio_embeds=batch["audio"].to(dtype),
        phase_ids=batch["phase_ids"],
        audio_mask=batch["audio_mask"],
        phase_windows=batch.get("phase_windows"),
        return_dict=False,
    )[0]
    target = noise.float() - latents.float()
    err = (pred.float() - target) ** 2  # (B, C, F, h, w)
    weight = mask[:, None, :, None, None].expand_as(err)
    return (err * weight).sum() / weight.sum().clamp_min(1.0)
