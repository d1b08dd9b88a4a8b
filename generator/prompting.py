"""Structured prompts for Phase-Aware Cross-Attention (PACA).

A `StructuredPrompt` (base block + time-anchored phase blocks) is rendered to *one* text,
encoded in *one* umT5 pass (joint encoding: cross-block context, exact spans), and every
token gets the index of the block it came from, read from the tokenizer's character
offsets: 0 = base, k = phase k, `pad_id` = padding (and anything after the EOS).

Decision (recorded here, see GENERATOR.md §3.4): joint encoding, not block-by-block.
The EOS token belongs to the base block (it summarises the whole prompt).

Only `encode_structured_prompt` needs torch; rendering and token→block mapping are plain
Python so planners/flows can preview them cheaply.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from generator.render_types import StructuredPrompt

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_NEGATIVE_PROMPT",
    "RenderedPrompt",
    "clean_prompt_text",
    "encode_structured_prompt",
    "latent_position",
    "phase_windows",
    "render_structured_prompt",
    "token_block_ids",
    "unconditional_phase_ids",
]

# Wan's default negative prompt (the English rendering of `sample_neg_prompt`).
DEFAULT_NEGATIVE_PROMPT = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, "
    "images, static, overall gray, worst quality, low quality, JPEG compression residue, ugly, "
    "incomplete, extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, "
    "misshapen limbs, fused fingers, still picture, messy background, three legs, many people "
    "in the background, walking backwards"
)


def clean_prompt_text(text: str) -> str:
    """Wan's `prompt_clean` (ftfy when installed, double html-unescape, collapse whitespace)."""
    try:  # optional, as in diffusers
        import ftfy  # type: ignore[import-not-found]

        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


@dataclass(frozen=True)
class RenderedPrompt:
    """The single text fed to the tokenizer plus the character span of every block."""

    text: str
    spans: tuple[tuple[int, int], ...]  # spans[k] = [start, end) of block k (0 = base)

    @property
    def num_blocks(self) -> int:
        return len(self.spans)


def _anchor(start: float, end: float) -> str:
    return f"[{start:.1f}s-{end:.1f}s]"


def render_structured_prompt(prompt: StructuredPrompt | str) -> RenderedPrompt:
    """Render base + phases as `"<base> [0.0s-2.0s] <phase 1> [2.0s-4.0s] <phase 2>"`.

    Each phase carries its time anchor (seconds on the clip clock, as the paper's example
    "Phase-1 [0-2s] ..."). The separating space belongs to the following block, so the
    spans tile the text exactly.
    """
    if isinstance(prompt, str):
        text = clean_prompt_text(prompt)
        return RenderedPrompt(text=text, spans=((0, len(text)),))
    pieces = [clean_prompt_text(prompt.base)]
    for phase in prompt.phases:
        pieces.append(f"{_anchor(phase.start, phase.end)} {clean_prompt_text(phase.text)}")
    spans: list[tuple[int, int]] = []
    text = ""
    for i, piece in enumerate(pieces):
        start = len(text)
        text += piece if i == 0 else " " + piece
        spans.append((start, len(text)))
    return RenderedPrompt(text=text, spans=tuple(spans))


def token_block_ids(
    offsets: Sequence[tuple[int, int]],
    spans: Sequence[tuple[int, int]],
    text: str,
    special_block: int = 0,
) -> list[int]:
    """Block index of every token, from its character offsets.

    A token is assigned to the block holding its first non-space character (tokenizers may
    glue a separator space or punctuation of the previous block onto a token). Tokens with
    an empty span (special tokens such as EOS) get `special_block`.
    """
    starts = [s for s, _ in spans]
    ids: list[int] = []
    for s, e in offsets:
        if e <= s:
            ids.append(special_block)
            continue
        pos = s
        while pos < e - 1 and text[pos].isspace():
            pos += 1
        block = 0
        for k, bs in enumerate(starts):
            if pos >= bs:
                block = k
        ids.append(block)
    return ids


def encode_structured_prompt(
    prompts: StructuredPrompt | str | Sequence[StructuredPrompt | str],
    tokenizer: Any,
    text_encoder: Any,
    max_sequence_length: int = 512,
    max_phases: int = 8,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode structured prompts with umT5 the way Wan does, plus PACA block indices.

    Returns `prompt_embeds` (B, max_sequence_length, text_dim), exactly zero after the last
    real token (Wan's convention), and `phase_ids` (B, max_sequence_length) long: 0 = base,
    k = phase k, `max_phases + 1` = padding (the embedding's `padding_idx`).
    A plain string is a base-only prompt (use it for negative prompts).
    """
    import torch

    if isinstance(prompts, (str, StructuredPrompt)):
        prompts = [prompts]
    rendered = [render_structured_prompt(p) for p in prompts]
    for r in rendered:
        if r.num_blocks - 1 > max_phases:
            raise ValueError(
                f"structured prompt has {r.num_blocks - 1} phases; the model supports {max_phases}"
            )
    inputs = tokenizer(
        [r.text for r in rendered],
        padding="max_length",
        max_length=max_sequence_length,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    input_ids, mask = inputs["input_ids"], inputs["attention_mask"]
    seq_lens = mask.gt(0).sum(dim=1).long()
    pad_id = max_phases + 1
    phase_ids = torch.full_like(input_ids, pad_id)
    for b, r in enumerate(rendered):
        n = int(seq_lens[b])
        offsets = [tuple(int(v) for v in o) for o in inputs["offset_mapping"][b][:n].tolist()]
        phase_ids[b, :n] = torch.tensor(token_block_ids(offsets, r.spans, r.text), dtype=torch.long)

    enc_device = next(text_encoder.parameters()).device
    embeds = text_encoder(input_ids.to(enc_device), mask.to(enc_device)).last_hidden_state
    dtype = dtype or embeds.dtype
    embeds = embeds.to(dtype=dtype, device=device or enc_device)
    positions = torch.arange(embeds.shape[1], device=embeds.device)[None]
    keep = positions < seq_lens.to(embeds.device)[:, None]
    prompt_embeds = torch.where(
        keep[..., None], embeds, torch.zeros_like(embeds)
    )  # Wan's zero tail
    return prompt_embeds, phase_ids.to(prompt_embeds.device)


def latent_position(seconds: float, fps: float, temporal_stride: int = 4) -> float:
    """Clip time (s) -> continuous latent-frame coordinate (latent frame f spans [f, f + 1)).

    Wan2.2 TI2V layout: latent frame 0 = video frame 0, latent f >= 1 = video frames
    4(f-1)+1 .. 4f; video frame v is shown during [v / fps, (v + 1) / fps). So video time
    v in [0, 1) maps to [0, 1) and v >= 1 to (v + stride - 1) / stride (piecewise linear,
    continuous at v = 1): the latent frame whose video frames show time t contains x(t).
    """
    v = max(0.0, float(seconds) * float(fps))
    return v if v < 1.0 else (v + temporal_stride - 1) / temporal_stride


def phase_windows(
    prompt: StructuredPrompt | str | None,
    fps: float,
    num_latent_frames: int,
    max_phases: int = 8,
    temporal_stride: int = 4,
) -> torch.Tensor:
    """(max_phases + 2, 2) float [start, end) anchor window of every block id, latent frames.

    Row 0 = base block = the whole clip [0, num_latent_frames); row k = phase k's anchor
    [`latent_position(start)`, `latent_position(end)`) clipped to the clip; rows of absent
    phases and the padding row are [0, 0] (ignored by the model). A latent frame f is inside
    a window when its centre f + 1/2 is. This is the `phase_windows` input of
    `ActAvatarTransformer3DModel` (time-aware phases); the pipeline, the renderer and the
    trainer all build it here.
    """
    import torch

    out = torch.zeros(max_phases + 2, 2)
    out[0, 1] = float(num_latent_frames)
    if prompt is None or isinstance(prompt, str):
        return out
    if len(prompt.phases) > max_phases:
        raise ValueError(
            f"structured prompt has {len(prompt.phases)} phases; the model supports {max_phases}"
        )
    for k, phase in enumerate(prompt.phases, start=1):
        a = min(latent_position(phase.start, fps, temporal_stride), float(num_latent_frames))
        b = min(latent_position(phase.end, fps, temporal_stride), float(num_latent_frames))
        out[k] = torch.tensor([a, max(a, b)])
    return out


def unconditional_phase_ids(batch_size: int, text_len: int) -> torch.Tensor:
    """(B, text_len) long zeros: the block ids of every *unconditional* text input.

    Training's dropped text (zeros) and inference's negative prompt both carry these: every
    position is base block 0, so neither says how many phases the prompt had or how long it
    was (the phase-embedding pattern of the real prompt would). Their `phase_windows` are the
    base row only (`phase_windows(None, ...)`).
    """
    import torch

    return torch.zeros(batch_size, text_len, dtype=torch.long)
