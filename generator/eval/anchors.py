"""Anchor variants of the synthetic bench (issue 19): readable anchor tokens, inexact anchors.

- **Readable anchors** (`anchor_token_text`): the same rendered prompt text, tokenized so that
  each anchor value is one token (`▁[2.5s` and `-4.0s]`) instead of digit by digit; the new
  pieces get their own (frozen, random) umT5 input embeddings appended after the world's, so
  every other token keeps its id and embedding. A row trained on it can tell anchor values
  apart from a single token.
- **Inexact anchors** (`jitter_prompts`): the product's anchors come from word boundaries and
  a planner, not from the true action timing. At test time each phase edge moves by
  U(-J, J) seconds (rounded to the prompt's 0.1 s, clipped to the clip, end > start), with
  the same draws for every row and seed; scoring stays against the *true* windows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from generator.render_types import PromptPhase, StructuredPrompt

__all__ = ["anchor_follower_reference", "anchor_pieces", "anchor_token_text", "jitter_prompts"]


def anchor_pieces(duration: float, step: float = 0.1) -> tuple[str, ...]:
    """One start piece and one end piece per anchor value on the prompt's 0.1 s grid."""
    values = [round(i * step, 1) for i in range(int(round(duration / step)) + 1)]
    return tuple(f"▁[{v:.1f}s" for v in values) + tuple(f"-{v:.1f}s]" for v in values)


def anchor_token_text(world: Any) -> tuple[Any, Any]:
    """(tokenizer, frozen encoder) with one token per anchor value (see module doc)."""
    import torch

    from generator.eval.world import build_world_text_encoder, build_world_tokenizer

    base = build_world_tokenizer(world)
    cfg = world.config
    encoder = build_world_text_encoder(len(base), cfg.text_dim, cfg.world_seed)
    tokenizer = build_world_tokenizer(world, anchor_pieces(cfg.duration))
    old = encoder.get_input_embeddings().weight.detach()
    gen = torch.Generator().manual_seed(cfg.world_seed + 7)
    extra = torch.randn(len(tokenizer) - old.shape[0], old.shape[1], generator=gen) * old.std()
    emb = torch.nn.Embedding(len(tokenizer), old.shape[1])
    with torch.no_grad():
        emb.weight.copy_(torch.cat([old, extra]))
    emb.weight.requires_grad_(False)
    encoder.set_input_embeddings(emb)
    encoder.config.vocab_size = len(tokenizer)
    return tokenizer, encoder


def jitter_prompts(
    prompts: list[StructuredPrompt], jitter: float, seed: int
) -> list[StructuredPrompt]:
    """The prompts with every phase edge moved by U(-jitter, jitter) s (see module doc)."""
    rng = np.random.default_rng(seed)
    out = []
    for p in prompts:
        phases = []
        for ph in p.phases:
            a, b = (float(v) for v in rng.uniform(-jitter, jitter, size=2))
            start = min(max(round(ph.start + a, 1), 0.0), p.duration - 0.1)
            end = min(max(round(ph.end + b, 1), start + 0.1), p.duration)
            phases.append(PromptPhase(ph.text, start, end))
        out.append(StructuredPrompt(base=p.base, phases=tuple(phases), duration=p.duration))
    return out


def anchor_follower_reference(
    world: Any, clips: list[Any], jitter_seconds: tuple[float, ...], data_seed: int
) -> dict[str, dict[str, float]]:
    """H@S and temporal IoU (against the true windows) of a model that draws each action
    exactly inside the window its jittered anchors give (the frames whose latent centre lies in
    `generator.prompting.phase_windows` of the jittered prompt): the ceiling for any row that
    follows its anchors, per jitter level (the same draws as the bench, `data_seed + 10 + i`)."""
    from generator.eval.metrics import action_metrics
    from generator.prompting import phase_windows

    cfg = world.config
    out: dict[str, dict[str, float]] = {}
    for i, level in enumerate((0.0, *jitter_seconds)):
        prompts = (
            [c.prompt for c in clips]
            if level == 0.0
            else jitter_prompts([c.prompt for c in clips], level, data_seed + 10 + i - 1)
        )
        hits: list[float] = []
        ious: list[float] = []
        for clip, prompt in zip(clips, prompts):
            rows = phase_windows(
                prompt, cfg.fps, cfg.num_latent_frames, len(prompt.phases), cfg.temporal_stride
            )
            labels = np.zeros(cfg.num_gen_frames, dtype=np.int64)
            centres = np.arange(cfg.num_gen_frames) + 1.5  # generated frame j = latent j + 1
            for k, action in enumerate(clip.actions, start=1):
                a, b = float(rows[k, 0]), float(rows[k, 1])
                labels[(centres >= a) & (centres < b)] = action
            m = action_metrics(labels, clip.windows, clip.actions)
            hits += m["hits"]
            ious += m["ious"]
        out[str(level)] = {"hit_rate": float(np.mean(hits)), "temporal_iou": float(np.mean(ious))}
    return out
