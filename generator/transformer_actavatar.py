# Copyright 2025 The avatar-flow authors. Built on diffusers' Wan transformer
# (Copyright 2025 The Wan Team and The HuggingFace Team), Apache License 2.0.
"""ActAvatar transformer: Wan2.2 + frame-wise audio adapter + progressive scaling + PACA.

Composition on diffusers' `WanTransformer3DModel` (VACE-style): Wan's module names are kept
so public Wan2.2 checkpoints load 1:1; the new keys are

    phase_embedding.weight                      PACA phase table (zero-init)
    audio_proj.*                                audio projection (Wav2Vec2 -> tokens/latent frame)
    blocks.{i}.norm_audio.*                     LayerNorm before the audio cross-attention
    blocks.{i}.audio_attn.*                     frame-wise audio cross-attention (to_out zero-init)
    blocks.{i}.phase_time.weight                time-aware phase attention (zero-init, optional)
    frame_time.weight                           absolute frame-time embedding (zero-init, optional)
    phase_anchor.weight                         numeric anchor embedding (zero-init, optional)
    sink_embedding.weight                       reference-sink frame embedding (zero-init, optional)

With `audio_embeds=None` and `phase_ids=None` (or zero-initialised new modules) the forward
is exactly `WanTransformer3DModel.forward` with the same weights.

Time-aware phase attention (`time_aware_phases=True`, beyond the paper)
-----------------------------------------------------------------------
PACA tells a text token *which* phase it belongs to; *when* the phase acts is only in the
prompt text ("[2.0s-4.0s]", which umT5 spells digit by digit). In the synthetic bench
(`docs/eval/synthetic/attribution/`, 3 seeds, 500 stage-2 steps) +PACA does not place actions
inside their windows (temporal IoU 0.07), and neither of two simpler ways of supplying time
does: a learned absolute frame-time embedding on the video tokens (frame-time probe R^2 from
0.2-0.4 to 0.7-0.8, IoU +0.006) or the windows added as numbers to each phase's tokens (IoU
+0.001), nor both together (+0.007); this term does (IoU 0.99). What the evidence supports
is that the gain comes from this term, a direct (frame time, anchor window) interaction in
the cross-attention logits, not from frames merely knowing their time; whether many more
steps would let the simpler rows learn the match is not settled there.

Design: an additive logit term between frame queries and phase-token keys,

    logit(f, s) += b_h(f, window[id(s)]),   b_h(f, [a, e)) = w_h . phi(f + 1/2 - a, f + 1/2 - e)

where `phi` are fixed features of the signed distances (latent frames) from the frame's
centre to the start and to the end of the token's anchor window: smooth steps tanh(u / tau)
(tau = 0.5, 1, 2, 4; a difference of a start step and an end step is a soft box, i.e. "inside
the window") and Fourier features cos/sin(2 pi u / P) (P = 4, 8, 16, ...; smooth bumps and
ramps). `w_h` is one zero-initialised `Linear(features, heads)` per block (`phase_time`), so
at initialisation the term is exactly 0 and the model is Wan (tested, max |delta| <= 1e-5).
Why this and not a query-side time embedding: a frame-time embedding added to the queries
still needs the keys to *know* their anchor (from text digits); a relative term of (frame
time, anchor window) needs nothing to be decoded from text, is translation-invariant (a
phase at 1 s and at 4 s is the same problem), and is exactly representable as extra q/k
channels: the bias depends only on (frame, block id), so q gains `R = max_phases + 2` channels
(the frame's bias to each block row) and k gains the one-hot of its block id. One SDPA call,
no (N x S) mask, cost O(N S R) on top of O(N S d) (<= 2 % of the forward, benchmarks/generator.py).
Row 0 of `phase_windows` is the base block (the whole clip); padding ids and empty rows get
no term. Used identically in training (`generator.train.losses`), `ActAvatarPipeline` and the
renderer (both build the windows with `generator.prompting.phase_windows`).

Reference sink (`reference_sink=True`, issue 20: an identity anchor in every segment)
------------------------------------------------------------------------------------
After the first segment the avatar image conditions nothing: each segment starts from the
previous one's tail, so identity and colour can drift along a long video. With the switch,
latent frame 0 of EVERY forward is a clean latent of the reference image (a sink frame, as
Live Avatar keeps one), then the continuity context frames, then the generated frames:

    [sink | context_0 .. context_{k-1} | generated ...]     (latent frames)

The layout is the same in every segment, the first included (there the sink and the first
context frame are both the reference: one consistent layout beats a special case, and it is
exactly what training sees). The sink frame

* has timestep 0, like the TI2V clean frame (`generator.conditioning` builds the mask);
* takes RoPE temporal position 0, the clip's frames 1, 2, ...: the sink sits at a fixed
  relative position to every segment, so the rule is the same whatever the segment index;
* gets `sink_embedding` (one learned vector, zero-init) added to its tokens after the patch
  embedding, so the model can tell the sink from a context frame once trained;
* receives no audio (its audio residual is gated to zero), no time-aware phase term and no
  frame-time term: `audio_embeds` and `phase_windows` describe the clip frames only
  (F_video = 4 (F - 2) + 1 for F latent frames including the sink), and clip frame j keeps
  the time j it has without the sink;
* is never noised in training and never in the loss; the pipeline strips it before decoding.

With `sink_embedding` at zero, the switch-on forward on [sink, clip] equals the switch-off
forward of the same weights on the same frames in which frame 0 is an ordinary clean frame
without audio or phase terms (tested), and a checkpoint without the key loads with the
embedding materialised at zero. Context parallelism with the sink is not supported (the
audio tokens have one frame fewer than the video).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from diffusers.configuration_utils import register_to_config
from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry
from diffusers.models._modeling_parallel import ContextParallelInput
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  (pipeline loader resolves base classes here)
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import (
    WanAttention,
    WanAttnProcessor,
    WanTransformer3DModel,
    WanTransformerBlock,
    _get_qkv_projections,
)
from diffusers.utils import apply_lora_scale, logging
from diffusers.utils.torch_utils import maybe_allow_in_graph

logger = logging.get_logger(__name__)

ADAPTER_PREFIXES = ("audio_proj.",)
ADAPTER_BLOCK_MODULES = ("audio_attn", "norm_audio")
PHASE_PREFIXES = ("phase_embedding.", "frame_time.", "phase_anchor.")
PHASE_BLOCK_MODULES = ("phase_time",)
SINK_PREFIXES = ("sink_embedding.",)
PHASE_TIME_TAUS = (0.5, 1.0, 2.0, 4.0)
# periods (latent frames) of the absolute-time features: frame time and numeric anchors
ABSOLUTE_TIME_PERIODS = (4.0, 8.0, 16.0, 32.0, 64.0, 128.0)


def is_audio_adapter_key(key: str) -> bool:
    """True for state-dict keys of the audio adapter (projection + per-block attention)."""
    if key.startswith(ADAPTER_PREFIXES):
        return True
    parts = key.split(".")
    return len(parts) > 2 and parts[0] == "blocks" and parts[2] in ADAPTER_BLOCK_MODULES


def is_phase_key(key: str) -> bool:
    """True for PACA keys: the phase table and the per-block time-aware phase projections."""
    if key.startswith(PHASE_PREFIXES):
        return True
    parts = key.split(".")
    return len(parts) > 2 and parts[0] == "blocks" and parts[2] in PHASE_BLOCK_MODULES


def is_sink_key(key: str) -> bool:
    """True for the reference-sink keys (`reference_sink=True`)."""
    return key.startswith(SINK_PREFIXES)


def is_actavatar_key(key: str) -> bool:
    """True for every key that a plain Wan checkpoint does not have."""
    return is_audio_adapter_key(key) or is_phase_key(key) or is_sink_key(key)


def num_phase_time_features(num_freqs: int) -> int:
    """Width of `phase_time_features`: steps + Fourier pairs, each for the start and the end."""
    return 2 * len(PHASE_TIME_TAUS) + 4 * num_freqs


def phase_time_features(
    num_frames: int, phase_windows: torch.Tensor, num_freqs: int
) -> torch.Tensor:
    """(B, F, R, n) features of (latent frame f, anchor window of block row r).

    `phase_windows` (B, R, 2) holds [start, end) in latent-frame units (frame f spans
    [f, f + 1)); u = f + 1/2 - start and f + 1/2 - end are the signed distances of the
    frame centre to the window's edges. Steps tanh(u / tau) and Fourier cos/sin(2 pi u / P),
    P = 4 * 2**j. Rows with end <= start (unused) are zero.
    """
    w = phase_windows.float()
    centre = torch.arange(num_frames, device=w.device, dtype=torch.float32) + 0.5
    u = centre[None, :, None, None] - w[:, None, :, :]  # (B, F, R, 2): to start, to end
    feats = [torch.tanh(u / tau) for tau in PHASE_TIME_TAUS]
    for j in range(num_freqs):
        ang = u * (2 * math.pi / (4.0 * 2**j))
        feats += [torch.cos(ang), torch.sin(ang)]
    out = torch.cat(feats, dim=-1)  # (B, F, R, n)
    valid = (w[..., 1] > w[..., 0]).to(out.dtype)  # (B, R)
    return out * valid[:, None, :, None]


def absolute_time_features(positions: torch.Tensor) -> torch.Tensor:
    """(..., ) positions in latent frames -> (..., 1 + 2 * len(ABSOLUTE_TIME_PERIODS)).

    A ramp (position / 16) and cos/sin(2 pi x / P) for P = 4 ... 128 latent frames: any
    smooth function of *absolute* clip time is (close to) linear in them. Shared by the
    attribution switches `frame_time_embedding` (x = frame centre) and
    `phase_anchor_embedding` (x = a window's start and end).
    """
    x = positions.float()
    feats = [x / 16.0]
    for period in ABSOLUTE_TIME_PERIODS:
        ang = x * (2 * math.pi / period)
        feats += [torch.cos(ang), torch.sin(ang)]
    return torch.stack(feats, dim=-1)


def num_absolute_time_features() -> int:
    return 1 + 2 * len(ABSOLUTE_TIME_PERIODS)


def progressive_audio_scales(
    num_layers: int, gamma: float = 1.5, progressive: bool = True, scale: float = 1.0
) -> list[float]:
    """Per-block audio scales: `scale * (l / L) ** gamma` for l = 1..L, or `scale` everywhere."""
    if not progressive:
        return [float(scale)] * num_layers
    return [float(scale) * ((i + 1) / num_layers) ** gamma for i in range(num_layers)]


class ActAvatarFrameAudioAttnProcessor:
    """Frame-local cross-attention: video tokens of latent frame f attend only to audio tokens of f.

    Frames are folded into the batch, (B, F*HW, D) -> (B*F, HW, D), so the cost is linear in
    the number of frames and no mask is needed. Always local (`parallel_config=None`): under
    context parallelism each rank holds whole frames and their audio tokens.
    """

    _attention_backend = None
    _parallel_config = None

    def __call__(
        self,
        attn: ActAvatarAudioAttention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        tokens_per_frame: int | None = None,
    ) -> torch.Tensor:
        # hidden_states: (B, F*HW, D); encoder_hidden_states (audio tokens): (B, F, n_a, C)
        batch_size, seq_len, dim = hidden_states.shape
        num_frames = encoder_hidden_states.shape[1]
        if tokens_per_frame is None:
            tokens_per_frame = seq_len // num_frames
        if seq_len != num_frames * tokens_per_frame:
            raise ValueError(
                f"{seq_len} video tokens do not split into {num_frames} frames of {tokens_per_frame}"
            )
        hidden_states = hidden_states.reshape(batch_size * num_frames, tokens_per_frame, dim)
        encoder_hidden_states = encoder_hidden_states.flatten(0, 1)  # (B*F, n_a, C)

        query, key, value = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
        query = attn.norm_q(query)
        key = attn.norm_k(key)

        query = query.unflatten(2, (attn.heads, -1))
        key = key.unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))

        hidden_states = dispatch_attention_fn(
            query,
            key,
            value,
            attn_mask=None,
            dropout_p=0.0,
            is_causal=False,
            backend=self._attention_backend,
            parallel_config=None,
        )
        hidden_states = hidden_states.flatten(2, 3).type_as(query)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        return hidden_states.reshape(batch_size, seq_len, dim)


class ActAvatarTextAttnProcessor(WanAttnProcessor):
    """Wan's text cross-attention, plus the time-aware phase term when it is given.

    `phase_time_bias = (frame_bias (B, F, h, R), token_rows (B, S, R), tokens_per_frame)`:
    the logit of query token n (frame f = n // tokens_per_frame) on key s gains
    `frame_bias[f] . token_rows[s]` (the bias of f to the block row of s). It is added as R
    extra q/k channels (q scaled by sqrt(d) so the bias enters unscaled under the usual
    1/sqrt(d)), with `scale` fixed to 1/sqrt(d): one SDPA call, no mask. Without it this is
    exactly `WanAttnProcessor`.
    """

    def __call__(
        self,
        attn: WanAttention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        phase_time_bias: tuple[torch.Tensor, torch.Tensor, int] | None = None,
    ) -> torch.Tensor:
        if phase_time_bias is None:
            return super().__call__(
                attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb
            )
        if attn.add_k_proj is not None:
            raise NotImplementedError("time-aware phases with image context (I2V 14B)")
        query, key, value = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
        query = attn.norm_q(query).unflatten(2, (attn.heads, -1))
        key = attn.norm_k(key).unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))
        head_dim = value.shape[-1]
        query, key, value, scale = extend_qkv_with_phase_time(query, key, value, *phase_time_bias)
        hidden_states = dispatch_attention_fn(
            query,
            key,
            value,
            attn_mask=attention_mask,
            dropout_p=0.0,
            is_causal=False,
            scale=scale,
            backend=self._attention_backend,
            parallel_config=None,
        )
        hidden_states = hidden_states[..., :head_dim].flatten(2, 3).type_as(query)
        hidden_states = attn.to_out[0](hidden_states)
        return attn.to_out[1](hidden_states)


def extend_qkv_with_phase_time(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    frame_bias: torch.Tensor,
    token_rows: torch.Tensor,
    tokens_per_frame: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """(B, N, h, d) queries, (B, S, h, d) keys/values -> extended by the phase-time channels.

    Returns (query', key', value', scale) with query' . key' * scale = q . k / sqrt(d) + bias.
    q/k gain R channels (then zeros up to a multiple of 8) and v gains zeros to the same
    width: equal q/k/v head sizes keep the fused SDPA kernels (CPU flash, CUDA flash needs a
    multiple of 8); a q/k width different from v's falls back to a ~5x slower path. The
    caller keeps the first d output channels.
    """
    d = query.shape[-1]
    b, n, h, _ = query.shape
    if n % tokens_per_frame or n // tokens_per_frame != frame_bias.shape[1]:
        raise ValueError(
            f"{n} video tokens do not match {frame_bias.shape[1]} frames of {tokens_per_frame}"
        )
    rows = token_rows.shape[-1]
    pad = (-(d + rows)) % 8
    q_ext = frame_bias.to(query.dtype).repeat_interleave(tokens_per_frame, dim=1)  # (B, N, h, R)
    k_ext = token_rows.to(key.dtype)[:, :, None, :].expand(-1, -1, h, -1)  # (B, S, h, R)
    query = nn.functional.pad(torch.cat([query, q_ext * math.sqrt(d)], dim=-1), (0, pad))
    key = nn.functional.pad(torch.cat([key, k_ext], dim=-1), (0, pad))
    value = nn.functional.pad(value, (0, rows + pad))
    return query, key, value, d**-0.5


class ActAvatarAudioAttention(WanAttention):
    """`WanAttention` whose keys/values come from `audio_dim`-wide audio tokens."""

    _default_processor_cls = ActAvatarFrameAudioAttnProcessor
    _available_processors = [ActAvatarFrameAudioAttnProcessor]

    def __init__(
        self, dim: int, heads: int, dim_head: int, audio_dim: int, eps: float = 1e-6, processor=None
    ):
        super().__init__(
            dim=dim,
            heads=heads,
            dim_head=dim_head,
            eps=eps,
            cross_attention_dim_head=dim_head,
            processor=processor or ActAvatarFrameAudioAttnProcessor(),
            is_cross_attention=True,
        )
        self.audio_dim = audio_dim
        self.to_k = nn.Linear(audio_dim, self.kv_inner_dim, bias=True)
        self.to_v = nn.Linear(audio_dim, self.kv_inner_dim, bias=True)
        nn.init.zeros_(self.to_out[0].weight)
        nn.init.zeros_(self.to_out[0].bias)


class ActAvatarAudioProjection(nn.Module):
    """Per-video-frame Wav2Vec2 features -> `num_tokens` audio tokens per *latent* frame.

    Latent frame 0 covers video frame 0, latent k >= 1 covers video frames 4k-3..4k (the
    Wan VAE's 1 + 4k layout). Each latent frame reads its video frames plus `window`
    neighbours on each side (edge-replicated): 1 + 2w frames for frame 0, 4 + 2w for the
    others (the MultiTalk windowing), through separate first layers, then a shared MLP.
    """

    def __init__(
        self,
        in_dim: int,
        num_layers: int,
        window: int = 2,
        temporal_stride: int = 4,
        hidden_dim: int = 512,
        num_tokens: int = 32,
        token_dim: int = 768,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.window = window
        self.temporal_stride = temporal_stride
        self.num_tokens = num_tokens
        self.token_dim = token_dim
        feat = num_layers * in_dim
        self.proj_first = nn.Linear((1 + 2 * window) * feat, hidden_dim)
        self.proj_rest = nn.Linear((temporal_stride + 2 * window) * feat, hidden_dim)
        self.proj_mid = nn.Linear(hidden_dim, hidden_dim)
        self.proj_tokens = nn.Linear(hidden_dim, num_tokens * token_dim)
        self.norm_tokens = nn.LayerNorm(token_dim, eps=eps)
        self.act = nn.ReLU()

    def num_latent_frames(self, num_video_frames: int) -> int:
        if (num_video_frames - 1) % self.temporal_stride:
            raise ValueError(
                f"audio frames must be 1 + {self.temporal_stride}k, got {num_video_frames}"
            )
        return (num_video_frames - 1) // self.temporal_stride + 1

    def forward(self, audio_embeds: torch.Tensor) -> torch.Tensor:
        # audio_embeds: (B, F_video, L, C) -> (B, F_latent, num_tokens, token_dim)
        batch_size, num_video_frames = audio_embeds.shape[:2]
        num_latent = self.num_latent_frames(num_video_frames)
        x = audio_embeds.flatten(2).to(self.proj_first.weight.dtype)  # (B, F_video, L*C)
        device, w, s = x.device, self.window, self.temporal_stride

        idx_first = torch.arange(-w, w + 1, device=device).clamp(0, num_video_frames - 1)
        first = self.act(self.proj_first(x[:, idx_first].flatten(1))).unsqueeze(1)  # (B, 1, H)
        if num_latent > 1:
            starts = torch.arange(num_latent - 1, device=device) * s + 1 - w
            idx_rest = (starts[:, None] + torch.arange(s + 2 * w, device=device)[None]).clamp(
                0, num_video_frames - 1
            )  # (F_latent - 1, s + 2w)
            rest = self.act(self.proj_rest(x[:, idx_rest].flatten(2)))  # (B, F_latent - 1, H)
            hidden = torch.cat([first, rest], dim=1)
        else:
            hidden = first
        hidden = self.act(self.proj_mid(hidden))
        tokens = self.proj_tokens(hidden).unflatten(-1, (self.num_tokens, self.token_dim))
        return self.norm_tokens(tokens)


@maybe_allow_in_graph
class ActAvatarTransformerBlock(WanTransformerBlock):
    """Wan block + frame-wise audio cross-attention (after text cross-attn, before the FFN).

    The audio residual is multiplied by `audio_scale` (progressive alignment, `(l/L)**gamma`)
    and an optional per-sample `audio_gate` (B, 1, 1) used to drop audio for some samples of
    a batch (batched guidance, training-time audio dropout).
    """

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        num_heads: int,
        qk_norm: str = "rms_norm_across_heads",
        cross_attn_norm: bool = False,
        eps: float = 1e-6,
        added_kv_proj_dim: int | None = None,
        audio_token_dim: int = 768,
        audio_scale: float = 1.0,
        phase_time_features: int = 0,
    ):
        super().__init__(dim, ffn_dim, num_heads, qk_norm, cross_attn_norm, eps, added_kv_proj_dim)
        self.norm_audio = FP32LayerNorm(dim, eps, elementwise_affine=True)
        self.audio_attn = ActAvatarAudioAttention(
            dim=dim, heads=num_heads, dim_head=dim // num_heads, audio_dim=audio_token_dim, eps=eps
        )
        self.audio_scale = audio_scale
        self.phase_time = None
        if phase_time_features:
            # time-aware phase attention: per-head bias of (frame time, anchor window), zero-init
            self.phase_time = nn.Linear(phase_time_features, num_heads, bias=False)
            nn.init.zeros_(self.phase_time.weight)
            self.attn2.set_processor(ActAvatarTextAttnProcessor())

    # Adapted from diffusers.models.transformers.transformer_wan.WanTransformerBlock.forward
    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        rotary_emb: torch.Tensor,
        audio_hidden_states: torch.Tensor | None = None,
        tokens_per_frame: int | None = None,
        audio_gate: torch.Tensor | None = None,
        phase_time: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if temb.ndim == 4:
            # temb: batch_size, seq_len, 6, inner_dim (wan2.2 ti2v)
            shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = (
                self.scale_shift_table.unsqueeze(0) + temb.float()
            ).chunk(6, dim=2)
            shift_msa = shift_msa.squeeze(2)
            scale_msa = scale_msa.squeeze(2)
            gate_msa = gate_msa.squeeze(2)
            c_shift_msa = c_shift_msa.squeeze(2)
            c_scale_msa = c_scale_msa.squeeze(2)
            c_gate_msa = c_gate_msa.squeeze(2)
        else:
            # temb: batch_size, 6, inner_dim
            shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = (
                self.scale_shift_table + temb.float()
            ).chunk(6, dim=1)

        # 1. Self-attention
        norm_hidden_states = (
            self.norm1(hidden_states.float()) * (1 + scale_msa) + shift_msa
        ).type_as(hidden_states)
        attn_output = self.attn1(norm_hidden_states, None, None, rotary_emb)
        hidden_states = (hidden_states.float() + attn_output * gate_msa).type_as(hidden_states)

        # 2. Text cross-attention (standard; PACA acts on the text tokens before the projection;
        #    time-aware phases add a (frame time, anchor window) logit term)
        norm_hidden_states = self.norm2(hidden_states.float()).type_as(hidden_states)
        if phase_time is not None and self.phase_time is not None:
            features, token_rows = phase_time  # (B, F, R, n), (B, S, R)
            frame_bias = self.phase_time(features.to(self.phase_time.weight.dtype))  # (B,F,R,h)
            bias = (frame_bias.transpose(2, 3), token_rows, tokens_per_frame)
            attn_output = self.attn2(
                norm_hidden_states, encoder_hidden_states, None, None, phase_time_bias=bias
            )
        else:
            attn_output = self.attn2(norm_hidden_states, encoder_hidden_states, None, None)
        hidden_states = hidden_states + attn_output

        # 3. Frame-wise audio cross-attention, scaled by f(l) (ActAvatar)
        if audio_hidden_states is not None:
            norm_hidden_states = self.norm_audio(hidden_states.float()).type_as(hidden_states)
            audio_output = self.audio_attn(
                norm_hidden_states,
                audio_hidden_states,
                None,
                None,
                tokens_per_frame=tokens_per_frame,
            )
            if audio_gate is not None:
                audio_output = audio_output * audio_gate
            hidden_states = hidden_states + self.audio_scale * audio_output

        # 4. Feed-forward
        norm_hidden_states = (
            self.norm3(hidden_states.float()) * (1 + c_scale_msa) + c_shift_msa
        ).type_as(hidden_states)
        ff_output = self.ffn(norm_hidden_states)
        hidden_states = (hidden_states.float() + ff_output.float() * c_gate_msa).type_as(
            hidden_states
        )
        return hidden_states


# Cache hooks (FirstBlockCache, MagCache, TaylorSeer, SeaCache) look blocks up by exact class.
TransformerBlockRegistry.register(
    model_class=ActAvatarTransformerBlock,
    metadata=TransformerBlockMetadata(
        return_hidden_states_index=0, return_encoder_hidden_states_index=None
    ),
)


class ActAvatarTransformer3DModel(WanTransformer3DModel):
    r"""
    Wan2.2 transformer with ActAvatar's audio adapter and Phase-Aware Cross-Attention.

    Accepts every [`WanTransformer3DModel`] argument, plus:

    Args:
        audio_in_dim (`int`, defaults to 768): width of the Wav2Vec2 hidden states.
        audio_layers (`int`, defaults to 12): number of Wav2Vec2 layers stacked per frame.
        audio_window (`int`, defaults to 2): neighbouring video frames read on each side.
        audio_temporal_stride (`int`, defaults to 4): video frames per latent frame (VAE).
        audio_hidden_dim (`int`, defaults to 512): width of the projection MLP.
        audio_tokens_per_frame (`int`, defaults to 32): audio tokens per latent frame.
        audio_token_dim (`int`, defaults to 768): width of the audio tokens (K/V input).
        audio_gamma (`float`, defaults to 1.5): exponent of the progressive scale `(l/L)**gamma`.
        audio_progressive (`bool`, defaults to `True`): `False` uses `audio_scale` in every block
            (the ablation without progressive alignment).
        audio_scale (`float`, defaults to 1.0): global multiplier of the audio residual.
        max_phases (`int`, defaults to 8): phase blocks supported by the PACA table (index 0 is
            the base block, `max_phases + 1` is the padding index).
        time_aware_phases (`bool`, defaults to `False`): add the time-aware phase term to the text
            cross-attention (see the module docstring); needs `phase_ids` and `phase_windows`.
        phase_time_freqs (`int`, defaults to 4): Fourier periods (4, 8, 16, ... latent frames) of
            the time-aware features.
        frame_time_embedding (`bool`, defaults to `False`): attribution switch (not the product's
            timing mechanism): add a zero-initialised learned function of each latent frame's
            *absolute* time (`absolute_time_features`) to its video tokens after the patch
            embedding, so frames know when they are.
        phase_anchor_embedding (`bool`, defaults to `False`): attribution switch: add a
            zero-initialised learned function of each phase's anchor window (its start and end
            in latent frames, `absolute_time_features`) to the text tokens of that phase, next
            to the PACA phase embedding (the paper's "temporal anchors + phase embeddings" made
            numeric; no attention bias). Needs `phase_ids` and `phase_windows`.
        reference_sink (`bool`, defaults to `False`): latent frame 0 of every forward is a clean
            latent of the reference image (the identity sink, see the module docstring), with a
            zero-initialised learned embedding on its tokens; `audio_embeds` and
            `phase_windows` then describe the frames after it.
    """

    _no_split_modules = ["ActAvatarTransformerBlock"]
    _repeated_blocks = ["ActAvatarTransformerBlock"]
    _keep_in_fp32_modules = WanTransformer3DModel._keep_in_fp32_modules + ["norm_audio"]
    _skip_layerwise_casting_patterns = WanTransformer3DModel._skip_layerwise_casting_patterns + [
        "phase_embedding",
        "audio_proj",
    ]
    _cp_plan = {
        **WanTransformer3DModel._cp_plan,
        # split audio tokens by latent frame, like the video tokens (whole frames per rank)
        "audio_proj": {0: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True)},
    }

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 16,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        audio_in_dim: int = 768,
        audio_layers: int = 12,
        audio_window: int = 2,
        audio_temporal_stride: int = 4,
        audio_hidden_dim: int = 512,
        audio_tokens_per_frame: int = 32,
        audio_token_dim: int = 768,
        audio_gamma: float = 1.5,
        audio_progressive: bool = True,
        audio_scale: float = 1.0,
        max_phases: int = 8,
        time_aware_phases: bool = False,
        phase_time_freqs: int = 4,
        frame_time_embedding: bool = False,
        phase_anchor_embedding: bool = False,
        reference_sink: bool = False,
    ) -> None:
        # Build Wan without blocks (ours replace them), then restore the registered layer count.
        super().__init__(
            patch_size=patch_size,
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            text_dim=text_dim,
            freq_dim=freq_dim,
            ffn_dim=ffn_dim,
            num_layers=0,
            cross_attn_norm=cross_attn_norm,
            qk_norm=qk_norm,
            eps=eps,
            image_dim=image_dim,
            added_kv_proj_dim=added_kv_proj_dim,
            rope_max_seq_len=rope_max_seq_len,
            pos_embed_seq_len=pos_embed_seq_len,
        )
        self.register_to_config(num_layers=num_layers)
        if patch_size[0] != 1:
            raise ValueError("frame-wise audio attention needs a temporal patch size of 1")

        inner_dim = num_attention_heads * attention_head_dim
        scales = progressive_audio_scales(num_layers, audio_gamma, audio_progressive, audio_scale)
        n_time = num_phase_time_features(phase_time_freqs) if time_aware_phases else 0
        self.blocks = nn.ModuleList(
            [
                ActAvatarTransformerBlock(
                    inner_dim,
                    ffn_dim,
                    num_attention_heads,
                    qk_norm,
                    cross_attn_norm,
                    eps,
                    added_kv_proj_dim,
                    audio_token_dim=audio_token_dim,
                    audio_scale=scales[i],
                    phase_time_features=n_time,
                )
                for i in range(num_layers)
            ]
        )
        self.audio_proj = ActAvatarAudioProjection(
            in_dim=audio_in_dim,
            num_layers=audio_layers,
            window=audio_window,
            temporal_stride=audio_temporal_stride,
            hidden_dim=audio_hidden_dim,
            num_tokens=audio_tokens_per_frame,
            token_dim=audio_token_dim,
            eps=eps,
        )
        # PACA: e_k added to umT5 tokens of block k (0 = base); the padding row stays zero.
        self.phase_embedding = nn.Embedding(max_phases + 2, text_dim, padding_idx=max_phases + 1)
        nn.init.zeros_(self.phase_embedding.weight)
        # attribution switches (zero-init: a checkpoint without them loads as the identity)
        n_abs = num_absolute_time_features()
        self.frame_time = None
        if frame_time_embedding:
            self.frame_time = nn.Linear(n_abs, inner_dim, bias=False)
            nn.init.zeros_(self.frame_time.weight)
        self.phase_anchor = None
        if phase_anchor_embedding:
            self.phase_anchor = nn.Linear(2 * n_abs, text_dim, bias=False)
            nn.init.zeros_(self.phase_anchor.weight)
        # identity sink: one learned vector on the sink frame's tokens (zero-init)
        self.sink_embedding = None
        if reference_sink:
            self.sink_embedding = nn.Embedding(1, inner_dim)
            nn.init.zeros_(self.sink_embedding.weight)

    # ----------------------------------------------------------------------------------------
    # Scales, initialisation, adapter I/O
    # ----------------------------------------------------------------------------------------
    @property
    def phase_pad_id(self) -> int:
        return self.config.max_phases + 1

    @property
    def audio_block_scales(self) -> list[float]:
        return [block.audio_scale for block in self.blocks]

    def set_audio_scales(
        self,
        gamma: float | None = None,
        progressive: bool | None = None,
        scale: float | None = None,
    ) -> list[float]:
        """Recompute the per-block audio scales (and record the new values in the config)."""
        cfg = self.config
        gamma = cfg.audio_gamma if gamma is None else gamma
        progressive = cfg.audio_progressive if progressive is None else progressive
        scale = cfg.audio_scale if scale is None else scale
        self.register_to_config(audio_gamma=gamma, audio_progressive=progressive, audio_scale=scale)
        scales = progressive_audio_scales(len(self.blocks), gamma, progressive, scale)
        for block, s in zip(self.blocks, scales):
            block.audio_scale = s
        return scales

    def actavatar_modules(self) -> dict[str, nn.Module]:
        """The modules a plain Wan checkpoint lacks, by name."""
        mods: dict[str, nn.Module] = {
            "audio_proj": self.audio_proj,
            "phase_embedding": self.phase_embedding,
        }
        if self.frame_time is not None:
            mods["frame_time"] = self.frame_time
        if self.phase_anchor is not None:
            mods["phase_anchor"] = self.phase_anchor
        if self.sink_embedding is not None:
            mods["sink_embedding"] = self.sink_embedding
        for i, block in enumerate(self.blocks):
            mods[f"blocks.{i}.norm_audio"] = block.norm_audio
            mods[f"blocks.{i}.audio_attn"] = block.audio_attn
            if block.phase_time is not None:
                mods[f"blocks.{i}.phase_time"] = block.phase_time
        return mods

    @torch.no_grad()
    def init_actavatar_weights(self, names: list[str] | None = None) -> None:
        """(Re-)initialise the new modules: identity at start (zero audio output, zero phases).

        Needed after `from_pretrained` of a plain Wan checkpoint: missing parameters are left
        uninitialised (meta, or under `no_init_weights`) by the loader.
        """
        for name, module in self.actavatar_modules().items():
            if names is not None and name not in names:
                continue
            if isinstance(module, ActAvatarAudioAttention):
                for lin in (module.to_q, module.to_k, module.to_v):
                    lin.reset_parameters()
                nn.init.ones_(module.norm_q.weight)
                nn.init.ones_(module.norm_k.weight)
                nn.init.zeros_(module.to_out[0].weight)
                nn.init.zeros_(module.to_out[0].bias)
            elif isinstance(module, nn.Embedding) or name.endswith(  # incl. sink_embedding
                (".phase_time", "frame_time", "phase_anchor")
            ):
                nn.init.zeros_(module.weight)
            else:
                for sub in module.modules():
                    if hasattr(sub, "reset_parameters"):
                        sub.reset_parameters()

    def _materialize_missing(self, missing_keys: list[str]) -> list[str]:
        """Allocate and identity-initialise new modules that a checkpoint lacked (or that the
        loader left on `meta`), on the device and in the dtype of the loaded backbone."""
        mods = self.actavatar_modules()
        owners = set()
        for key in missing_keys:
            for name in mods:
                if key.startswith(name + "."):
                    owners.add(name)
        for name, module in mods.items():
            if any(p.is_meta for p in module.parameters()):
                owners.add(name)
        meta_rest = [n for n, p in self.named_parameters() if p.is_meta and not is_actavatar_key(n)]
        if meta_rest:
            raise ValueError(f"checkpoint lacks backbone weights: {meta_rest[:8]} ...")
        ref = self.patch_embedding.weight
        for name in owners:
            module = mods[name]
            if any(p.is_meta for p in module.parameters()):
                module.to_empty(device=ref.device)
            if not name.endswith("norm_audio"):  # keep the fp32 contract of norm_audio
                module.to(ref.dtype)
            else:
                module.float()
        self.init_actavatar_weights(sorted(owners))
        return sorted(owners)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *args: Any, **kwargs: Any):
        """diffusers' `from_pretrained`, plus: ActAvatar modules a checkpoint lacks (a plain
        Wan folder) are materialised and initialised as identity instead of being left on the
        `meta` device (diffusers' loader only announces them as "newly initialized").
        """
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
        )
        missing = [k for k in info.get("missing_keys", []) if is_actavatar_key(k)]
        if missing or any(p.is_meta for p in model.parameters()):
            model._materialize_missing(missing)
        return (model, info) if want_info else model

    @classmethod
    def from_wan_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        subfolder: str | None = None,
        torch_dtype: torch.dtype | None = None,
        **actavatar_config: Any,
    ) -> ActAvatarTransformer3DModel:
        """Load a plain Wan2.2 (or ActAvatar) checkpoint strictly; new modules start as identity.

        Like `from_pretrained`, but only the ActAvatar keys may be missing and no unknown
        key may be present (a wrong folder fails here, not at the first forward).
        """
        kwargs = {"subfolder": subfolder} if subfolder else {}
        model, info = cls.from_pretrained(
            pretrained_model_name_or_path,
            dtype=torch_dtype,
            output_loading_info=True,
            use_safetensors=True,
            **kwargs,
            **actavatar_config,
        )
        missing = list(info.get("missing_keys", []))
        bad = [k for k in missing if not is_actavatar_key(k)]
        if bad:
            raise ValueError(f"checkpoint lacks backbone weights: {bad[:8]} ...")
        unexpected = [k for k in info.get("unexpected_keys", []) if "norm_added_q" not in k]
        if unexpected:
            raise ValueError(f"checkpoint has keys the model does not know: {unexpected[:8]} ...")
        return model

    def freeze_backbone(self, train_phase_embedding: bool = False) -> list[str]:
        """Stage 1: only the audio adapter (optionally also the phase table) is trainable."""
        trainable = []
        for name, param in self.named_parameters():
            train = is_audio_adapter_key(name) or (train_phase_embedding and is_phase_key(name))
            param.requires_grad_(train)
            if train:
                trainable.append(name)
        return trainable

    def audio_adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Stage-1 extraction: `audio_proj.*`, `blocks.*.audio_attn.*`, `blocks.*.norm_audio.*`."""
        return {k: v for k, v in self.state_dict().items() if is_audio_adapter_key(k)}

    def phase_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if is_phase_key(k)}

    def save_audio_adapter(self, path: str | Path) -> None:
        """Write the audio adapter as safetensors (with the adapter config in the metadata)."""
        import json

        from safetensors.torch import save_file

        keys = [k for k in self.config if k.startswith("audio_")]
        meta = {
            "format": "pt",
            "actavatar_audio_config": json.dumps({k: self.config[k] for k in keys}),
        }
        tensors = {
            k: v.detach().cpu().contiguous() for k, v in self.audio_adapter_state_dict().items()
        }
        save_file(tensors, str(path), metadata=meta)

    def load_audio_adapter(self, path: str | Path, strict: bool = True) -> None:
        """Inject an extracted adapter (stage 2 starts from the stage-1 adapter)."""
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        expected = set(self.audio_adapter_state_dict())
        extra = set(tensors) - expected
        if extra:
            raise ValueError(f"not audio-adapter keys: {sorted(extra)[:8]}")
        if strict and expected - set(tensors):
            raise ValueError(f"adapter file lacks: {sorted(expected - set(tensors))[:8]}")
        mods = self.actavatar_modules()
        for name, module in mods.items():
            keep = is_phase_key(name + ".") or is_sink_key(name + ".")
            if not keep and any(p.is_meta for p in module.parameters()):
                module.to_empty(device="cpu")
        self.load_state_dict(tensors, strict=False)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the Wan backbone, the audio adapter, the PACA table and the sink."""
        counts = {"backbone": 0, "audio_adapter": 0, "phase_embedding": 0, "reference_sink": 0}
        for name, p in self.named_parameters():
            if is_sink_key(name):
                counts["reference_sink"] += p.numel()
            elif is_audio_adapter_key(name):
                counts["audio_adapter"] += p.numel()
            elif is_phase_key(name):
                counts["phase_embedding"] += p.numel()
            else:
                counts["backbone"] += p.numel()
        counts["total"] = sum(counts.values())
        return counts

    def _phase_time_inputs(
        self,
        num_frames: int,
        phase_windows: torch.Tensor,
        phase_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, F, R, n), token rows (B, S, R)) for the blocks' time-aware term."""
        rows = self.config.max_phases + 2
        batch, seq = phase_ids.shape
        if phase_windows.shape != (batch, rows, 2):
            raise ValueError(
                f"phase_windows must be ({batch}, {rows}, 2) (batch, max_phases + 2, [start, end)),"
                f" got {tuple(phase_windows.shape)}"
            )
        if encoder_hidden_states.shape[1] != seq:
            raise NotImplementedError("time-aware phases with image context tokens")
        device = encoder_hidden_states.device
        features = phase_time_features(
            num_frames, phase_windows.to(device), self.config.phase_time_freqs
        )
        ids = phase_ids.to(device).clamp(0, rows - 1)
        token_rows = torch.nn.functional.one_hot(ids, rows).to(features.dtype)
        token_rows[..., self.phase_pad_id] = 0  # padding tokens get no term
        return features, token_rows

    def enable_parallelism(self, *args: Any, **kwargs: Any) -> Any:
        """diffusers' `enable_parallelism`, refused for a reference-sink model under context
        parallelism: the plan splits audio tokens and video tokens by the same frames, and
        with the sink the video has one frame more (one clear error, not a wrong render)."""
        config = kwargs.get("config", args[0] if args else None)
        if self.sink_embedding is not None and (
            getattr(config, "context_parallel_config", None) is not None
            or type(config).__name__ == "ContextParallelConfig"
        ):
            raise NotImplementedError(
                "context-parallel (multi-GPU) rendering of a reference_sink checkpoint is not "
                "supported yet; render it on one GPU"
            )
        return super().enable_parallelism(*args, **kwargs)

    @property
    def has_reference_sink(self) -> bool:
        """True when latent frame 0 of every forward is the reference sink."""
        return bool(self.config.get("reference_sink", False))

    @property
    def timing_mechanism(self) -> str:
        """How this transformer learns *when* a phase acts (what `checkpoints show`/`doctor`
        list): `time-aware phase attention` (reads `phase_windows`), or `text anchors only
        (paper PACA)` (the windows are ignored; only the anchor text in the prompt), plus
        the attribution switches when present."""
        return timing_mechanism(dict(self.config))

    def _anchor_embedding(
        self, phase_windows: torch.Tensor, phase_ids: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor:
        """(B, S, text_dim): the numeric anchor term of every text token (phase rows only)."""
        rows = self.config.max_phases + 2
        batch, seq = phase_ids.shape
        if phase_windows.shape != (batch, rows, 2):
            raise ValueError(
                f"phase_windows must be ({batch}, {rows}, 2) (batch, max_phases + 2, [start, end)),"
                f" got {tuple(phase_windows.shape)}"
            )
        w = phase_windows.to(self.phase_anchor.weight.device).float()
        feats = absolute_time_features(w).flatten(-2)  # (B, R, 2n): start, end
        valid = (w[..., 1] > w[..., 0]).float()
        valid[:, 0] = 0.0  # the base block has no anchor
        per_row = self.phase_anchor(feats.to(self.phase_anchor.weight.dtype)) * valid[..., None]
        ids = phase_ids.to(per_row.device).clamp(0, rows - 1)
        onehot = torch.nn.functional.one_hot(ids, rows).to(per_row.dtype)  # (B, S, R)
        return (onehot @ per_row).to(dtype)

    # ----------------------------------------------------------------------------------------
    # Forward
    # ----------------------------------------------------------------------------------------
    # Adapted from diffusers.models.transformers.transformer_wan.WanTransformer3DModel.forward
    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.LongTensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor | None = None,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        audio_embeds: torch.Tensor | None = None,
        phase_ids: torch.LongTensor | None = None,
        audio_mask: torch.Tensor | None = None,
        phase_windows: torch.Tensor | None = None,
    ) -> torch.Tensor | Transformer2DModelOutput:
        """
        Args:
            hidden_states: (B, C, F, H, W) latents.
            timestep: (B,) or per-token (B, F*H'*W') timesteps (Wan2.2 TI2V layout).
            encoder_hidden_states: (B, S_text, text_dim) umT5 states (zero tail).
            audio_embeds: optional (B, F_video, audio_layers, audio_in_dim) per-video-frame
                Wav2Vec2 features, F_video = 4 (F - 1) + 1. `None` skips the adapter.
            phase_ids: optional (B, S_text) block index of every text token (PACA).
            audio_mask: optional (B,) 1/0 per sample; 0 drops the audio for that sample.
            phase_windows: optional (B, max_phases + 2, 2) [start, end) of each block id's anchor
                window in latent frames (row 0 = base = whole clip; `prompting.phase_windows`).
                Used by `time_aware_phases` models together with `phase_ids`; else ignored.

        With `reference_sink`, latent frame 0 is the clean reference sink (timestep 0 in
        `timestep`); `audio_embeds` and `phase_windows` describe frames 1.. only.
        """
        batch_size, num_channels, num_frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        post_patch_num_frames = num_frames // p_t
        post_patch_height = height // p_h
        post_patch_width = width // p_w
        tokens_per_frame = post_patch_height * post_patch_width
        sink = 1 if self.sink_embedding is not None else 0
        if sink and post_patch_num_frames < 2:
            raise ValueError("reference_sink: the input needs the sink frame plus the clip frames")
        clip_frames = post_patch_num_frames - sink

        rotary_emb = self.rope(hidden_states)

        hidden_states = self.patch_embedding(hidden_states)
        hidden_states = hidden_states.flatten(2).transpose(1, 2).contiguous()

        # Reference sink: its learned embedding on the tokens of latent frame 0.
        if sink:
            emb = self.sink_embedding.weight[0].to(hidden_states.dtype)
            hidden_states = torch.cat(
                [hidden_states[:, :tokens_per_frame] + emb, hidden_states[:, tokens_per_frame:]],
                dim=1,
            )

        # Attribution switch: a learned function of each frame's absolute time on its tokens
        # (clip frames only: the sink gets none, clip frame j keeps time j).
        if self.frame_time is not None:
            centres = torch.arange(clip_frames, device=hidden_states.device) + 0.5
            ft = self.frame_time(absolute_time_features(centres).to(self.frame_time.weight.dtype))
            ft = torch.nn.functional.pad(ft, (0, 0, sink, 0))
            hidden_states = hidden_states + ft.to(hidden_states.dtype).repeat_interleave(
                tokens_per_frame, dim=0
            )

        # PACA: add the phase embedding to the text tokens before Wan's text projection.
        if phase_ids is not None:
            phase = self.phase_embedding(phase_ids.to(encoder_hidden_states.device))
            encoder_hidden_states = encoder_hidden_states + phase.to(encoder_hidden_states.dtype)
            # Attribution switch: numeric anchors next to the phase embedding.
            if self.phase_anchor is not None and phase_windows is not None:
                encoder_hidden_states = encoder_hidden_states + self._anchor_embedding(
                    phase_windows, phase_ids, encoder_hidden_states.dtype
                )

        if timestep.ndim == 2:
            ts_seq_len = timestep.shape[1]
            timestep = timestep.flatten()  # batch_size * seq_len
        else:
            ts_seq_len = None

        temb, timestep_proj, encoder_hidden_states, encoder_hidden_states_image = (
            self.condition_embedder(
                timestep,
                encoder_hidden_states,
                encoder_hidden_states_image,
                timestep_seq_len=ts_seq_len,
            )
        )
        if ts_seq_len is not None:
            timestep_proj = timestep_proj.unflatten(2, (6, -1))  # (B, seq_len, 6, D)
        else:
            timestep_proj = timestep_proj.unflatten(1, (6, -1))  # (B, 6, D)

        if encoder_hidden_states_image is not None:
            encoder_hidden_states = torch.concat(
                [encoder_hidden_states_image, encoder_hidden_states], dim=1
            )

        # Time-aware phases: features of (frame, block row) and the one-hot row of every token.
        phase_time = None
        if self.config.time_aware_phases and phase_windows is not None and phase_ids is not None:
            phase_time = self._phase_time_inputs(
                clip_frames, phase_windows, phase_ids, encoder_hidden_states
            )
            if sink:  # the sink frame gets no time-aware term
                features, token_rows = phase_time
                phase_time = (torch.nn.functional.pad(features, (0, 0, 0, 0, sink, 0)), token_rows)

        # Audio tokens, once per forward: (B, F_latent, n_a, audio_token_dim)
        audio_hidden_states = audio_gate = None
        if audio_embeds is not None:
            audio_hidden_states = self.audio_proj(audio_embeds.to(hidden_states.device))
            if audio_hidden_states.shape[1] != clip_frames:
                raise ValueError(
                    f"audio covers {audio_hidden_states.shape[1]} latent frames, video has "
                    f"{clip_frames}" + (" after the reference sink" if sink else "")
                )
            audio_hidden_states = audio_hidden_states.to(hidden_states.dtype)
            if audio_mask is not None:
                audio_gate = audio_mask.to(hidden_states.device, hidden_states.dtype).reshape(
                    -1, 1, 1
                )
            if sink:
                # the sink frame attends to placeholder audio whose residual is gated to zero
                audio_hidden_states = torch.nn.functional.pad(
                    audio_hidden_states, (0, 0, 0, 0, sink, 0)
                )
                frame_gate = torch.ones(
                    1,
                    post_patch_num_frames * tokens_per_frame,
                    1,
                    device=hidden_states.device,
                    dtype=hidden_states.dtype,
                )
                frame_gate[:, : sink * tokens_per_frame] = 0
                audio_gate = frame_gate if audio_gate is None else audio_gate * frame_gate

        # 4. Transformer blocks
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            for block in self.blocks:
                hidden_states = self._gradient_checkpointing_func(
                    block,
                    hidden_states,
                    encoder_hidden_states,
                    timestep_proj,
                    rotary_emb,
                    audio_hidden_states,
                    tokens_per_frame,
                    audio_gate,
                    phase_time,
                )
        else:
            for block in self.blocks:
                hidden_states = block(
                    hidden_states,
                    encoder_hidden_states,
                    timestep_proj,
                    rotary_emb,
                    audio_hidden_states,
                    tokens_per_frame,
                    audio_gate,
                    phase_time,
                )

        # 5. Output norm, projection & unpatchify
        if temb.ndim == 3:
            shift, scale = (
                self.scale_shift_table.unsqueeze(0).to(temb.device) + temb.unsqueeze(2)
            ).chunk(2, dim=2)
            shift = shift.squeeze(2)
            scale = scale.squeeze(2)
        else:
            shift, scale = (self.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(
                2, dim=1
            )
        shift = shift.to(hidden_states.device)
        scale = scale.to(hidden_states.device)

        hidden_states = (self.norm_out(hidden_states.float()) * (1 + scale) + shift).type_as(
            hidden_states
        )
        hidden_states = self.proj_out(hidden_states)

        hidden_states = hidden_states.reshape(
            batch_size,
            post_patch_num_frames,
            post_patch_height,
            post_patch_width,
            p_t,
            p_h,
            p_w,
            -1,
        )
        hidden_states = hidden_states.permute(0, 7, 1, 4, 2, 5, 3, 6)
        output = hidden_states.flatten(6, 7).flatten(4, 5).flatten(2, 3)

        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)


def timing_mechanism(config: dict[str, Any]) -> str:
    """The timing mechanism an ActAvatar transformer config trains/renders with (one line)."""
    if config.get("time_aware_phases"):
        base = "time-aware phase attention (reads the phase windows)"
    else:
        base = "text anchors only (paper PACA; phase windows ignored)"
    extra = [
        name
        for key, name in (
            ("frame_time_embedding", "absolute frame-time embedding"),
            ("phase_anchor_embedding", "numeric anchor embedding"),
        )
        if config.get(key)
    ]
    return base + (" + " + " + ".join(extra) if extra else "")


def ignores_phase_windows(config: dict[str, Any]) -> bool:
    """True when a transformer with this config drops the phase windows the pipeline passes
    (no time-aware phase attention and no numeric anchors): actions are timed only by the
    anchor text, which the synthetic bench shows PACA does not learn to read."""
    return not (config.get("time_aware_phases") or config.get("phase_anchor_embedding"))


PHASE_WINDOWS_WARNING = (
    "this checkpoint's transformer ignores the phase windows (time_aware_phases is false: the "
    "paper's PACA, timed by the anchor text only), so actions may not land inside their "
    "windows; train stage 2 with model.time_aware_phases: true (the shipped configs do)"
)


def read_timing_mechanism(folder: str | Path) -> str | None:
    """The timing mechanism of a saved checkpoint or pipeline folder (its `transformer/`
    config), or None when the folder has no ActAvatar transformer config."""
    import json

    folder = Path(folder)
    for cfg in (folder / "transformer" / "config.json", folder / "config.json"):
        if cfg.is_file():
            data = json.loads(cfg.read_text())
            if str(data.get("_class_name", "")).startswith("ActAvatar"):
                return timing_mechanism(data)
    return None


def wan_config_from_actavatar(config: dict[str, Any]) -> dict[str, Any]:
    """The `WanTransformer3DModel` kwargs inside an ActAvatar config (for comparisons)."""
    import inspect

    wan_args = set(inspect.signature(WanTransformer3DModel.__init__).parameters) - {"self"}
    return {k: v for k, v in dict(config).items() if k in wan_args}


__all__ = [
    "ActAvatarAudioAttention",
    "ActAvatarAudioProjection",
    "ActAvatarFrameAudioAttnProcessor",
    "ActAvatarTextAttnProcessor",
    "ActAvatarTransformer3DModel",
    "PHASE_WINDOWS_WARNING",
    "ActAvatarTransformerBlock",
    "absolute_time_features",
    "ignores_phase_windows",
    "is_actavatar_key",
    "is_audio_adapter_key",
    "is_phase_key",
    "is_sink_key",
    "phase_time_features",
    "progressive_audio_scales",
    "read_timing_mechanism",
    "timing_mechanism",
    "wan_config_from_actavatar",
]
