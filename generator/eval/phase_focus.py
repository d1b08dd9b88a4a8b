"""Phase focus: where the text cross-attention of each frame goes (paper Figure 4).

Why: PACA's claim is that, after training, frames inside phase k's window attend mostly
to phase-k tokens, more sharply in deeper layers. We measure it with a diffusers
attention processor set on every block's text cross-attention (`attn2`) through the
processor API (`set_processor`), so the model file stays untouched. The processor computes
the same attention as `WanAttnProcessor` (text-only cross-attention, no RoPE) but with an
explicit softmax, and records the probabilities averaged over heads and over the spatial
tokens of each latent frame.

Measure (per layer): for each phase k, over the frames inside its window, the share of
attention mass on phase-k tokens (`focus`), and that share among phase tokens only
(`focus_rel` = mass(k) / mass(all phases); chance is the token share of phase k).

`focus_rel` alone cannot tell routing from a fixed preference: attention that never changes
over time gives 1/2 for two phases whatever it prefers. The timing measure is the *contrast*
(`contrast`): phase k's share in frames of window k minus its share in frames of the other
phases' windows, averaged over phases and clips. Chance (no routing) is exactly 0; perfect
routing is 1. It is reported per layer (Figure 4's sharpening with depth).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = [
    "TextAttentionRecorder",
    "TextAttnProbsProcessor",
    "block_mass",
    "capture_text_attention",
    "phase_contrast",
    "phase_focus",
]


class TextAttentionRecorder:
    """Per-layer sums of (B, F, S) attention probabilities (mean over heads and frame tokens)."""

    def __init__(self, num_layers: int, tokens_per_frame: int, keep_inputs: bool = False) -> None:
        self.tokens_per_frame = tokens_per_frame
        self.sums: list[torch.Tensor | None] = [None] * num_layers
        self.calls = [0] * num_layers
        self.keep_inputs = keep_inputs
        self.inputs: list[list[torch.Tensor]] = [[] for _ in range(num_layers)]

    def add_input(self, layer: int, hidden_states: torch.Tensor) -> None:
        """Keep the cross-attention input, averaged over each frame's tokens: (B, F, D)."""
        if not self.keep_inputs:
            return
        b, n, d = hidden_states.shape
        per_frame = hidden_states.reshape(b, n // self.tokens_per_frame, self.tokens_per_frame, d)
        self.inputs[layer].append(per_frame.mean(2).detach().float().cpu())

    def add(self, layer: int, probs: torch.Tensor) -> None:
        # probs: (B, heads, N_video, S) -> (B, F, S)
        b, _, n, s = probs.shape
        per_frame = probs.mean(1).reshape(b, n // self.tokens_per_frame, self.tokens_per_frame, s)
        per_frame = per_frame.mean(2).detach().float().cpu()
        cur = self.sums[layer]
        self.sums[layer] = per_frame if cur is None else cur + per_frame
        self.calls[layer] += 1

    def mean(self) -> np.ndarray:
        """(L, B, F, S): attention probabilities averaged over the recorded calls."""
        if any(s is None for s in self.sums):
            raise RuntimeError("no attention recorded for some layers")
        return np.stack([(s / c).numpy() for s, c in zip(self.sums, self.calls)])  # type: ignore[union-attr]


class TextAttnProbsProcessor:
    """`WanAttnProcessor` for text cross-attention with an explicit softmax that records probs."""

    def __init__(self, recorder: TextAttentionRecorder, layer: int) -> None:
        self.recorder = recorder
        self.layer = layer

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: Any = None,
        phase_time_bias: tuple[torch.Tensor, torch.Tensor, int] | None = None,
    ) -> torch.Tensor:
        if attn.add_k_proj is not None:
            raise NotImplementedError("image-conditioned (I2V 14B) cross-attention is not recorded")
        if encoder_hidden_states is None:
            raise ValueError("TextAttnProbsProcessor is for cross-attention (attn2)")
        self.recorder.add_input(self.layer, hidden_states)
        # hidden_states: (B, N, D); encoder_hidden_states: (B, S, D)
        query = attn.norm_q(attn.to_q(hidden_states))
        key = attn.norm_k(attn.to_k(encoder_hidden_states))
        value = attn.to_v(encoder_hidden_states)
        q = query.unflatten(2, (attn.heads, -1)).transpose(1, 2)  # (B, h, N, d)
        k = key.unflatten(2, (attn.heads, -1)).transpose(1, 2)  # (B, h, S, d)
        v = value.unflatten(2, (attn.heads, -1)).transpose(1, 2)
        logits = q @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5)  # (B, h, N, S)
        if phase_time_bias is not None:  # time-aware phases: bias[frame(n), row(s)]
            frame_bias, token_rows, tpf = phase_time_bias  # (B, F, h, R), (B, S, R)
            bias = torch.einsum("bfhr,bsr->bhfs", frame_bias.float(), token_rows.float())
            logits = logits + bias.repeat_interleave(tpf, dim=2).to(logits.dtype)
        mask = attention_mask if attention_mask is not None else getattr(self, "mask", None)
        if mask is not None:
            logits = logits + mask
        probs = logits.float().softmax(-1).to(q.dtype)
        self.recorder.add(self.layer, probs)
        out = (probs @ v).transpose(1, 2).flatten(2, 3).type_as(query)  # (B, N, h*d)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


@contextlib.contextmanager
def capture_text_attention(
    model: Any,
    tokens_per_frame: int,
    keep_inputs: bool = False,
    mask: torch.Tensor | None = None,
) -> Iterator[TextAttentionRecorder]:
    """Record every block's `attn2` probabilities inside the `with`; restore processors after.

    `keep_inputs` also keeps each layer's cross-attention input per frame (probes); `mask`
    (B, 1, N, S) additive, e.g. the oracle routing of the positive control, is applied too.
    """
    recorder = TextAttentionRecorder(len(model.blocks), tokens_per_frame, keep_inputs)
    previous = [block.attn2.get_processor() for block in model.blocks]
    try:
        for i, block in enumerate(model.blocks):
            proc = TextAttnProbsProcessor(recorder, i)
            proc.mask = mask
            block.attn2.set_processor(proc)
        yield recorder
    finally:
        for block, proc in zip(model.blocks, previous):
            block.attn2.set_processor(proc)


def block_mass(probs: np.ndarray, phase_ids: np.ndarray, num_blocks: int) -> np.ndarray:
    """Sum probabilities per prompt block: (..., S) with ids (S,) -> (..., num_blocks + 1).

    Column k < num_blocks is block k (0 = base); the last column collects padding tokens.
    """
    ids = np.minimum(np.asarray(phase_ids), num_blocks)
    out = np.zeros((*probs.shape[:-1], num_blocks + 1), dtype=np.float64)
    for k in range(num_blocks + 1):
        out[..., k] = probs[..., ids == k].sum(-1)
    return out


def phase_focus(
    probs: np.ndarray,
    phase_ids: np.ndarray,
    windows: list[list[tuple[int, int]]],
) -> dict[str, np.ndarray]:
    """Per-layer focus from recorded probs (L, B, F, S), block ids (B, S), windows per clip.

    Windows are on generated frames (latent frame = window frame + 1). Returns
    `focus` and `focus_rel` of shape (L,) (means over clips and phases) and
    `chance_rel` (L,): the token share of the phase, what uniform attention would give.
    """
    num_layers, batch = probs.shape[:2]
    focus = np.zeros((num_layers, 0)).tolist()
    focus_rel = [[] for _ in range(num_layers)]
    chance: list[float] = []
    for b in range(batch):
        nb = len(windows[b]) + 1
        mass = block_mass(probs[:, b], phase_ids[b], nb)  # (L, F, nb + 1)
        counts = np.array([(np.minimum(phase_ids[b], nb) == k).sum() for k in range(nb)])
        for k, (s, e) in enumerate(windows[b], start=1):
            frames = slice(s + 1, e + 1)
            m = mass[:, frames]  # (L, n_frames, nb + 1)
            phase_total = m[..., 1:nb].sum(-1)
            for layer in range(num_layers):
                focus[layer].append(float(m[layer, :, k].mean()))
                rel = m[layer, :, k] / np.maximum(phase_total[layer], 1e-12)
                focus_rel[layer].append(float(rel.mean()))
            chance.append(counts[k] / max(counts[1:].sum(), 1))
    return {
        "focus": np.array([np.mean(f) for f in focus]),
        "focus_rel": np.array([np.mean(f) for f in focus_rel]),
        "chance_rel": np.full(num_layers, float(np.mean(chance)) if chance else 0.0),
    }


def phase_contrast(
    probs: np.ndarray,
    phase_ids: np.ndarray,
    windows: list[list[tuple[int, int]]],
) -> np.ndarray:
    """(L,) routing contrast: phase k's share of the phase-token mass in window-k frames minus
    its share in the frames of the other phases' windows (mean over phases and clips).

    0 = attention that does not change with time (whatever it prefers), 1 = perfect routing.
    Windows are on generated frames (latent frame = window frame + 1).
    """
    num_layers, batch = probs.shape[:2]
    per_layer: list[list[float]] = [[] for _ in range(num_layers)]
    for b in range(batch):
        nb = len(windows[b]) + 1
        if nb < 3:
            continue
        mass = block_mass(probs[:, b], phase_ids[b], nb)  # (L, F, nb + 1)
        share = mass[..., 1:nb] / np.maximum(mass[..., 1:nb].sum(-1, keepdims=True), 1e-12)
        for k, (s, e) in enumerate(windows[b], start=1):
            own = share[:, s + 1 : e + 1, k - 1].mean(1)  # (L,)
            others = [
                share[:, s2 + 1 : e2 + 1, k - 1].mean(1)
                for j, (s2, e2) in enumerate(windows[b], start=1)
                if j != k
            ]
            diff = own - np.mean(others, axis=0)
            for layer in range(num_layers):
                per_layer[layer].append(float(diff[layer]))
    return np.array([np.mean(v) if v else 0.0 for v in per_layer])
