"""Controls and reference levels of the synthetic Action Bench (what "can see timing" means).

- **Positive control** (`oracle_routing`): frames inside window k may attend only to base
  and phase-k tokens (frames outside every window: base only), in training and sampling. It
  shows the world, trainer loss, sampler, decoder and metrics can reach the ceiling; the bench
  requires H@S >= 0.95 from it.
- **Negative controls** (evaluation-time inputs on a trained row): text-blind (zero text,
  unconditional ids: actions unknowable -> H@S near 0), shuffled phase ids (PACA ids permuted
  among the phase blocks: a row that routes by id must drop), wrong anchors (the right actions
  and order, but another layout's anchors in the text and windows, scored against the true
  layout: a row that follows its anchors loses temporal IoU).
- **Reference levels** (closed form over the layout prior, no model): chance (random actions,
  random layout), anchor-blind (actions and order known, anchors ignored: a layout drawn from
  the training prior with the same phase count), anchor-blind modal (per frame the most likely
  phase under that prior). Any row at or below "anchor-blind" has not shown that it reads time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from generator.eval.metrics import action_metrics

__all__ = [
    "OracleRoutingProcessor",
    "install_oracle_routing",
    "oracle_mask_from_windows",
    "oracle_mask",
    "oracle_routing",
    "reference_levels",
    "shuffled_phase_ids",
    "wrong_layouts",
]


def oracle_mask(
    phase_ids: torch.Tensor,
    windows: list[list[tuple[int, int]]],
    num_latent_frames: int,
    tokens_per_frame: int,
    pad_id: int,
) -> torch.Tensor:
    """(B, 1, N, S) additive mask: 0 where frame may look (base, padding, own phase), -inf else.

    Windows are on generated frames (latent frame = window frame + 1).
    """
    b, s = phase_ids.shape
    allowed = torch.zeros(b, num_latent_frames, s, dtype=torch.bool)
    always = (phase_ids == 0) | (phase_ids == pad_id)  # (B, S)
    allowed |= always[:, None, :]
    for i, wins in enumerate(windows):
        for k, (start, end) in enumerate(wins, start=1):
            allowed[i, start + 1 : end + 1] |= (phase_ids[i] == k)[None, :]
    mask = torch.zeros(b, num_latent_frames, s)
    mask[~allowed] = float("-inf")
    return mask.repeat_interleave(tokens_per_frame, dim=1)[:, None]


class OracleRoutingProcessor:
    """Wan's text cross-attention with the oracle mask of the current batch (`self.mask`)."""

    def __init__(self) -> None:
        from diffusers.models.transformers.transformer_wan import WanAttnProcessor

        self.inner = WanAttnProcessor()
        self.mask: torch.Tensor | None = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *a):
        mask = self.mask if attention_mask is None else attention_mask
        return self.inner(attn, hidden_states, encoder_hidden_states, mask, None)


def oracle_mask_from_windows(
    phase_ids: torch.Tensor, phase_windows: torch.Tensor, num_frames: int, tokens_per_frame: int
) -> torch.Tensor:
    """(B, 1, N, S) oracle mask from the model's own inputs: block ids (B, S) and phase
    windows (B, R, 2) in latent frames (`generator.prompting.phase_windows`). Latent frame f
    may look at a phase-k token when its centre f + 1/2 lies in window k; base (0) and the
    padding id (R - 1) are always visible. Equals `oracle_mask` for the world's windows."""
    rows = phase_windows.shape[1]
    centre = torch.arange(num_frames, dtype=torch.float32) + 0.5  # (F,)
    w = phase_windows.float()
    inside = (centre[None, :, None] >= w[:, None, :, 0]) & (
        centre[None, :, None] < w[:, None, :, 1]
    )  # (B, F, R)
    ids = phase_ids.long().clamp(0, rows - 1)
    allowed = torch.gather(inside, 2, ids[:, None, :].expand(-1, num_frames, -1))  # (B, F, S)
    allowed |= ((ids == 0) | (ids == rows - 1))[:, None, :]
    mask = torch.zeros(allowed.shape)
    mask[~allowed] = float("-inf")
    return mask.repeat_interleave(tokens_per_frame, dim=1)[:, None]


def install_oracle_routing(model: Any) -> list[OracleRoutingProcessor]:
    """Oracle processors on every `attn2`, their mask set before each forward from the
    forward's `phase_ids` and `phase_windows` (a forward pre-hook): the oracle trains and
    samples through the unmodified trainer and sampler. Permanent on this model object."""
    procs = [OracleRoutingProcessor() for _ in model.blocks]
    for block, proc in zip(model.blocks, procs):
        block.attn2.set_processor(proc)
    _, ph, pw = model.config.patch_size

    def set_masks(_module: Any, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else kwargs["hidden_states"]
        ids, windows = kwargs.get("phase_ids"), kwargs.get("phase_windows")
        if ids is None or windows is None:
            raise ValueError("oracle routing needs phase_ids and phase_windows")
        _, _, f, h, w = x.shape
        mask = oracle_mask_from_windows(ids.cpu(), windows.cpu(), f, (h // ph) * (w // pw))
        for proc in procs:
            proc.mask = mask.to(x.device)

    model.register_forward_pre_hook(set_masks, with_kwargs=True)
    return procs


@contextlib.contextmanager
def oracle_routing(model: Any) -> Iterator[list[OracleRoutingProcessor]]:
    """Set the oracle processor on every block's `attn2`; yields them (set `.mask` per batch)."""
    previous = [block.attn2.get_processor() for block in model.blocks]
    procs = [OracleRoutingProcessor() for _ in model.blocks]
    try:
        for block, proc in zip(model.blocks, procs):
            block.attn2.set_processor(proc)
        yield procs
    finally:
        for block, proc in zip(model.blocks, previous):
            block.attn2.set_processor(proc)


def shuffled_phase_ids(phase_ids: torch.Tensor, num_phases: list[int]) -> torch.Tensor:
    """Phase ids with the phase blocks cyclically relabelled (k -> k mod n + 1), base/pad kept."""
    out = phase_ids.clone()
    for i, n in enumerate(num_phases):
        for k in range(1, n + 1):
            out[i][phase_ids[i] == k] = k % n + 1
    return out


def wrong_layouts(world: Any, clips: list[Any], seed: int) -> list[list[tuple[int, int]]]:
    """For every clip another layout with the same number of phases (seeded, never its own)."""
    rng = np.random.default_rng(seed)
    out = []
    for clip in clips:
        pool = world.layouts_by_count[len(clip.windows)]
        while True:
            lay = [tuple(w) for w in pool[int(rng.integers(len(pool)))]]
            if lay != [tuple(w) for w in clip.windows]:
                out.append(lay)
                break
    return out


def _score(labels: np.ndarray, clip: Any) -> tuple[list[float], list[float]]:
    m = action_metrics(labels, clip.windows, clip.actions)
    return m["hits"], m["ious"]


def reference_levels(world: Any, clips: list[Any], draws: int = 64, seed: int = 0) -> dict:
    """H@S and temporal IoU of the no-model references over the test clips (see module doc)."""
    rng = np.random.default_rng(seed)
    n_gen = world.config.num_gen_frames
    prior: dict[int, list] = {}
    for _acts, lay in world.train_combos:
        prior.setdefault(len(lay), []).append(lay)
    modal: dict[int, np.ndarray] = {}
    for k, lays in prior.items():  # per frame: most likely phase index (0 = rest)
        counts = np.zeros((n_gen, k + 1))
        for lay in lays:
            idx = np.zeros(n_gen, dtype=int)
            for j, (s, e) in enumerate(lay, start=1):
                idx[s:e] = j
            counts[np.arange(n_gen), idx] += 1
        modal[k] = counts.argmax(1)
    out: dict[str, dict[str, float]] = {}
    hits: dict[str, list[float]] = {"chance": [], "anchor-blind": [], "anchor-blind modal": []}
    ious: dict[str, list[float]] = {k: [] for k in hits}
    for clip in clips:
        k = len(clip.windows)
        acts = np.array(clip.actions)
        idx = modal[k]
        labels = np.where(idx > 0, acts[np.maximum(idx - 1, 0)], 0)
        h, i = _score(labels, clip)
        hits["anchor-blind modal"] += h
        ious["anchor-blind modal"] += i
        for _ in range(draws):
            lay = prior[k][int(rng.integers(len(prior[k])))]
            h, i = _score(world.frame_labels(list(lay), list(acts)), clip)
            hits["anchor-blind"] += h
            ious["anchor-blind"] += i
            rand = list(rng.integers(1, 5, size=k))
            h, i = _score(world.frame_labels(list(lay), rand), clip)
            hits["chance"] += h
            ious["chance"] += i
    for name in hits:
        out[name] = {
            "hit_rate": float(np.mean(hits[name])),
            "temporal_iou": float(np.mean(ious[name])),
        }
    return out
