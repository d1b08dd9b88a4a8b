"""Encode clips for training once: VAE latents, umT5 states (+ PACA block ids), Wav2Vec2 features.

The trainer never runs the VAE, umT5 or Wav2Vec2 (they are frozen and large); it reads what
this module wrote through `generator.train.data.CacheWriter`. Inputs are plain arrays, so the
flow that cuts videos (flows/dataset.py) and tests can feed it without files.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from generator.audio import wav2vec2_frame_features
from generator.prompting import encode_structured_prompt, phase_windows
from generator.render_types import StructuredPrompt

__all__ = ["encode_clip", "encoder_signature"]


def encoder_signature(encoders: dict[str, Any], name: str) -> dict[str, Any]:
    """What the cached tensors depend on: encoder identity and the widths the model must match."""
    te, ae, vae = encoders["text_encoder"], encoders["audio_encoder"], encoders["vae"]
    return {
        "name": name,
        "text_dim": int(te.config.d_model),
        "audio_in_dim": int(ae.config.hidden_size),
        "audio_layers": int(ae.config.num_hidden_layers),
        "z_dim": int(vae.config.z_dim),
    }


def _trim(
    embeds: torch.Tensor, phase_ids: torch.Tensor, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    n = int((phase_ids != pad_id).sum())
    return embeds[:n].contiguous(), phase_ids[:n].contiguous()


@torch.no_grad()
def encode_clip(
    encoders: dict[str, Any],
    frames: np.ndarray,
    audio16k: np.ndarray,
    caption: str,
    prompt: StructuredPrompt | None,
    fps: float,
    text_len: int = 512,
    max_phases: int = 8,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """One clip -> cached tensors.

    frames: (F, H, W, 3) uint8, F = 4k+1, H and W multiples of 32 (already bucketed).
    Returns latents (C, 1+k, H/16, W/16) normalised with the VAE's latents_mean/std (posterior
    mode, as Wan's pipelines encode conditions), caption_embeds (S1, D), prompt_embeds (S2, D)
    and phase_ids (S2,) trimmed to real tokens, phase_windows (max_phases + 2, 2), audio
    (F, L, C_a) per video frame.
    """
    vae = encoders["vae"]
    num_frames = frames.shape[0]
    if (num_frames - 1) % vae.config.scale_factor_temporal:
        raise ValueError(f"clips must have 4k+1 frames, got {num_frames}")
    param = next(vae.parameters())
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)[
        None
    ]  # (1, 3, F, H, W)
    video = (video.float() / 127.5 - 1.0).to(param.device, vae.dtype)
    z = vae.encode(video).latent_dist.mode()
    z_dim = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean).view(1, z_dim, 1, 1, 1).to(z)
    std = torch.tensor(vae.config.latents_std).view(1, z_dim, 1, 1, 1).to(z)
    latents = ((z - mean) / std)[0]

    texts: list[StructuredPrompt | str] = [caption] + ([prompt] if prompt is not None else [])
    embeds, phase_ids = encode_structured_prompt(
        texts,
        encoders["tokenizer"],
        encoders["text_encoder"],
        max_sequence_length=text_len,
        max_phases=max_phases,
        device="cpu",
        dtype=torch.float32,
    )
    pad = max_phases + 1
    out = {"latents": latents}
    out["caption_embeds"], _ = _trim(embeds[0], phase_ids[0], pad)
    if prompt is not None:
        out["prompt_embeds"], out["phase_ids"] = _trim(embeds[1], phase_ids[1], pad)
        # anchor windows of the phase blocks (time-aware phases), on the latent-frame grid
        out["phase_windows"] = phase_windows(
            prompt,
            fps,
            latents.shape[1],
            max_phases=max_phases,
            temporal_stride=vae.config.scale_factor_temporal,
        )
    out["audio"] = wav2vec2_frame_features(
        audio16k,
        encoders["audio_encoder"],
        encoders["audio_feature_extractor"],
        num_frames=num_frames,
        fps=fps,
    )[0]
    return {k: (v.to(dtype) if v.is_floating_point() else v).cpu() for k, v in out.items()}
