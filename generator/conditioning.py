"""Clean conditioning latent frames (TI2V image, segment continuity) shared by sampler and trainer.

Wan2.2 TI2V conditions on an image by writing its latent into latent frame 0 and giving
those tokens timestep 0 (`expand_timesteps`). ActAvatar generalises this to the first
`num_clean` latent frames: 1 for an image (the TI2V rule) or the encoded tail of the previous
segment (InfiniteTalk keeps 9 frames = 3 latents). The trainer uses the same functions so
inference and training see the same per-token timestep layout; the loss mask is
`frame_mask` (1 = noisy frame to predict).

Reference sink (`ActAvatarTransformer3DModel(reference_sink=True)`, issue 20): one more clean
latent frame, the reference image's, goes in FRONT of the context in every segment:
`[sink | context | generated]`. `prepend_sink` builds that layout (the pipeline prepends the
reference latent to its clean frames and an empty slot to its noise; the trainer prepends the
clip's first latent frame, which the causal Wan VAE encodes from pixel frame 0 alone, i.e. an
image latent like the reference), `strip_sink` removes it before decoding. The sink has
timestep 0 (it is a clean frame for `clean_frame_mask`), is never noised and never in the loss.

Noised context (`train.context_noise`, training only): `noise_context` moves the context
frames (never the sink, never the generated frames) towards noise to a per-sample level.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "SINK_FRAMES",
    "clean_frame_mask",
    "color_match",
    "compose_clean_latents",
    "compose_masked",
    "context_frame_mask",
    "latent_frames_for_context",
    "noise_context",
    "prepend_sink",
    "strip_sink",
    "token_timesteps",
]

SINK_FRAMES = 1  # latent frames the reference sink occupies (frame 0)


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


def context_frame_mask(
    num_latent_frames: int, num_clean: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(B, F) mask like `clean_frame_mask` with a per-sample count `num_clean` (B,) (training
    draws the number of context frames per sample)."""
    k = torch.as_tensor(num_clean).long().reshape(-1, 1)
    if int(k.min()) < 0 or int(k.max()) > num_latent_frames:
        raise ValueError(f"num_clean {k.flatten().tolist()} outside [0, {num_latent_frames}]")
    frames = torch.arange(num_latent_frames, device=k.device)[None]
    return (frames >= k).to(dtype)


def compose_masked(
    latents: torch.Tensor, clean_latents: torch.Tensor, frame_mask: torch.Tensor
) -> torch.Tensor:
    """`clean_latents` where `frame_mask` (B, F) is 0, `latents` where it is 1 (per sample)."""
    m = frame_mask.to(latents.dtype)[:, None, :, None, None]
    return latents * m + clean_latents.to(latents.dtype) * (1 - m)


def prepend_sink(latents: torch.Tensor, sink: torch.Tensor) -> torch.Tensor:
    """[sink | latents] along the frame axis: (B, C, 1, h, w) + (B, C, F, h, w) -> F + 1."""
    if sink.shape[2] != SINK_FRAMES:
        raise ValueError(f"the sink is {SINK_FRAMES} latent frame, got {sink.shape[2]}")
    if sink.shape[0] != latents.shape[0]:
        sink = sink.expand(latents.shape[0], -1, -1, -1, -1)
    return torch.cat([sink.to(latents.device, latents.dtype), latents], dim=2)


def strip_sink(latents: torch.Tensor) -> torch.Tensor:
    """The frames after the sink (what is decoded and shown)."""
    return latents[:, :, SINK_FRAMES:]


def noise_context(
    latents: torch.Tensor,
    noise: torch.Tensor,
    level: torch.Tensor,
    num_context: torch.Tensor | int,
    first: int = 0,
) -> torch.Tensor:
    """Context frames [first, first + k_b) of sample b moved to `(1 - s_b) x + s_b eps`.

    The flow-matching interpolation at the drawn level `level` (B,) in [0, 1], with the
    sample's own `noise`; frames before `first` (the sink) and from `first + k_b` on (the
    frames to generate) are returned unchanged.
    """
    b = latents.shape[0]
    s = level.to(latents.device, latents.dtype).reshape(b, 1) * _in_context(
        latents, num_context, first
    )
    s = s[:, None, :, None, None]  # (B, 1, F, 1, 1)
    return (1 - s) * latents + s * noise.to(latents.dtype)


def shift_context(
    latents: torch.Tensor, offset: torch.Tensor, num_context: torch.Tensor | int, first: int = 0
) -> torch.Tensor:
    """Context frames [first, first + k_b) of sample b plus the per-channel `offset` (B, C):
    a colour shift of the context in latent space (`train.context_shift`); the sink and the
    frames to generate are returned unchanged."""
    b, c = latents.shape[:2]
    in_ctx = _in_context(latents, num_context, first)  # (B, F)
    off = offset.to(latents.device, latents.dtype).reshape(b, c, 1)
    return latents + (off * in_ctx[:, None])[..., None, None]


def _in_context(latents: torch.Tensor, num_context: torch.Tensor | int, first: int) -> torch.Tensor:
    """(B, F) 1 on the context frames [first, first + k_b) of each sample, else 0."""
    b, _, f, _, _ = latents.shape
    k = torch.as_tensor(num_context, device=latents.device).long().reshape(-1).expand(b)
    frames = torch.arange(f, device=latents.device)[None]
    return ((frames >= first) & (frames < first + k[:, None])).to(latents.dtype)


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
