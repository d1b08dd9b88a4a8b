"""Wav2Vec 2.0 features -> one feature stack per *video* frame.

The audio encoder runs at its own rate (50 Hz for 16 kHz input). The hidden states of all
transformer layers are stacked and linearly resampled along time to exactly `num_frames`
video frames (the Wan-S2V recipe: interpolate the encoder outputs, so any stock
`Wav2Vec2Model` works). The per-latent-frame windowing happens inside the transformer's
`ActAvatarAudioProjection`, so the trainer can cache these per-frame features as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["fit_waveform", "frame_features_from_hidden_states", "wav2vec2_frame_features"]


def fit_waveform(
    waveform: np.ndarray, num_frames: int, fps: float, sample_rate: int = 16000
) -> np.ndarray:
    """Trim or zero-pad a mono waveform to exactly the clip's `num_frames / fps` seconds."""
    wav = np.asarray(waveform, dtype=np.float32).reshape(-1)
    n = int(round(num_frames / fps * sample_rate))
    if len(wav) >= n:
        return wav[:n]
    return np.concatenate([wav, np.zeros(n - len(wav), dtype=np.float32)])


def frame_features_from_hidden_states(hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Resample stacked hidden states (B, L, T_audio, C) to (B, num_frames, L, C).

    Linear interpolation with `align_corners=False`, i.e. frame f samples time (f + 0.5) / fps.
    """
    b, num_layers, t, c = hidden_states.shape
    x = hidden_states.permute(0, 1, 3, 2).reshape(b, num_layers * c, t).float()
    x = F.interpolate(x, size=num_frames, mode="linear", align_corners=False)
    return x.reshape(b, num_layers, c, num_frames).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def wav2vec2_frame_features(
    waveform: np.ndarray | torch.Tensor,
    audio_encoder: Any,
    feature_extractor: Any,
    num_frames: int,
    fps: float = 25.0,
    sample_rate: int = 16000,
    num_layers: int | None = None,
) -> torch.Tensor:
    """Per-video-frame Wav2Vec2 features, shape (1, num_frames, L, C).

    `L` = the last `num_layers` transformer layers (default: all of them, i.e.
    `hidden_states[1:]`; the CNN feature projection is left out, as in MultiTalk).
    The waveform is trimmed/padded to the clip length first so the timing is exact.
    """
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().cpu().numpy()
    wav = fit_waveform(waveform, num_frames, fps, sample_rate)
    inputs = feature_extractor(wav, sampling_rate=sample_rate, return_tensors="pt")
    param = next(audio_encoder.parameters())
    values = inputs["input_values"].to(device=param.device, dtype=param.dtype)
    out = audio_encoder(values, output_hidden_states=True)
    layers = out.hidden_states[1:]
    if num_layers is not None:
        if num_layers > len(layers):
            raise ValueError(
                f"audio encoder has {len(layers)} layers, the adapter wants {num_layers}"
            )
        layers = layers[-num_layers:]
    stacked = torch.stack(layers, dim=1)  # (1, L, T_audio, C)
    return frame_features_from_hidden_states(stacked, num_frames)
