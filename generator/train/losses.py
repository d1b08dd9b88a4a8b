"""Flow-matching loss with Wan's per-token timesteps and the I2V first-frame rule.

x_t = (1 - sigma) x0 + sigma x1 with x1 the noise; the model sees t = 1000 sigma and predicts
the velocity x1 - x0 (diffusers' `flow_prediction`, the paper's target). In I2V mode (stage 2)
the first latent frame is the clean image latent with per-token t = 0, exactly as
`ActAvatarPipeline` samples (shared helpers from `generator.conditioning`), and the loss is
averaged over the noisy frames only.
"""

from __future__ import annotations

from typing import Any

import torch

from generator.conditioning import clean_frame_mask, compose_clean_latents, token_timesteps

__all__ = ["flow_matching_loss", "noisy_inputs"]


def noisy_inputs(
    latents: torch.Tensor,
    noise: torch.Tensor,
    sigma: torch.Tensor,
    num_clean: int,
    patch_hw: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_t, per-token timesteps (B, F*h'*w'), frame mask (B, F): 1 = noisy) for (B, C, F, h, w)."""
    b, _, f, h, w = latents.shape
    s = sigma.float().view(b, 1, 1, 1, 1)
    xt = (1.0 - s) * latents.float() + s * noise.float()
    xt = compose_clean_latents(xt, latents.float(), num_clean)
    mask = clean_frame_mask(f, num_clean, b, device=latents.device)
    tokens_per_frame = (h // patch_hw[0]) * (w // patch_hw[1])
    timesteps = token_timesteps(sigma.float() * 1000.0, mask, tokens_per_frame)
    return xt, timesteps, mask


def flow_matching_loss(
    model: Any,
    batch: dict[str, Any],
    num_clean: int,
    patch_hw: tuple[int, int],
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Masked MSE between the predicted and the true velocity (mean over noisy elements)."""
    latents, noise = batch["latents"], batch["noise"]  # (B, C, F, h, w)
    xt, timesteps, mask = noisy_inputs(latents, noise, batch["sigma"], num_clean, patch_hw)
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
