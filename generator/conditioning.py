"""Clean conditioning latent frames (TI2V image, segment continuity) shared by sampler and trainer.

Wan2.2 TI2V conditions on an image by writing its latent into latent frame 0 and giving
those tokens timestep 0 (`expand_timesteps`). ActAvatar generalises this to the first
`num_clean` latent frames: 1 for an image (the TI2V rule) or the encoded tail of the previous
segment (InfiniteTalk keeps 9 frames = 3 latents). The trainer uses the same functions so
inference and training see the same per-token timestep layout; the loss mask is
`frame_mask` (1 = noisy frame to predict).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "clean_frame_mask",
    "color_match",
    "compose_clean_latents",
    "latent_frames_for_context",
    "token_timesteps",
]


def latent_frames_for_context(num_context_frames: int, temporal_stride: int = 4) -> int:
    """Latent frames produced by encoding `num_context_frames` pixel frames (1 + 4k layout)."""
    if num_context_frames <= 0:
        return 0
    if (num_context_frames - 1) % temporal_stride:
        raise ValueError(
            f"context frames must be 1 + {temporal_stride}k (1, 5, 9, ...), got {num_context_frames}"
        )
    return (num_context_frames - 1) // temporal_stride + 1


def clean_frame_mask(
    num_latent_frames: int,
    num_clean: int,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(B, F) mask: 0 for the first `num_clean` (clean, conditioning) latent frames, 1 after."""
    if not 0 <= num_clean <= num_latent_frames:
        raise ValueError(f"num_clean={num_clean} outside [0, {num_latent_frames}]")
    mask = torch.ones(batch_size, num_latent_frames, device=device, dtype=dtype)
    mask[:, :num_clean] = 0
    return mask


def token_timesteps(
    timestep: torch.Tensor | float,
    frame_mask: torch.Tensor,
    tokens_per_frame: int,
) -> torch.Tensor:
    """Per-token timesteps (B, F * tokens_per_frame) = frame_mask * t, Wan's TI2V layout.

    `timestep` is a scalar or (B,). Token order is (frame, h, w) row-major, as the Wan
    patch embedding flattens it, so a frame's value is repeated over its tokens.
    """
    t = torch.as_tensor(timestep, device=frame_mask.device, dtype=frame_mask.dtype)
    t = t.reshape(-1, 1) if t.ndim else t.reshape(1, 1)
    per_frame = frame_mask * t  # (B, F)
    return per_frame.repeat_interleave(tokens_per_frame, dim=1)


def compose_clean_latents(
    latents: torch.Tensor, clean_latents: torch.Tensor | None, num_clean: int
) -> torch.Tensor:
    """Write `clean_latents[:, :, :num_clean]` over the first latent frames of (B, C, F, H, W)."""
    if clean_latents is None or num_clean == 0:
        return latents
    out = latents.clone()
    out[:, :, :num_clean] = clean_latents[:, :, :num_clean].to(latents.dtype)
    return out


def color_match(
    frames: np.ndarray, reference: np.ndarray, strength: float = 1.0, start: int = 0
) -> np.ndarray:
    """Match the colour statistics of `frames[start:]` (F, H, W, 3) to `reference` (H, W, 3).

    Per-channel mean/std transfer with statistics over the whole clip (not per frame, so it
    cannot flicker), blended with `strength`. Counters the slow colour drift that chained
    segments accumulate through VAE round trips.
    """
    if strength <= 0 or start >= len(frames):
        return frames
    src = frames[start:].astype(np.float32)
    ref = reference.astype(np.float32).reshape(-1, 3)
    mu_s, sd_s = src.reshape(-1, 3).mean(0), src.reshape(-1, 3).std(0) + 1e-5
    mu_r, sd_r = ref.mean(0), ref.std(0) + 1e-5
    matched = (src - mu_s) / sd_s * sd_r + mu_r
    blended = (1 - strength) * src + strength * matched
    out = frames.copy()
    out[start:] = np.clip(np.round(blended), 0, 255).astype(frames.dtype)
    return out
