"""Linear probes: does a frame know its time, can keys tell their phase apart?

- `frame_time_r2`: R^2 of the latent-frame index predicted linearly (ridge) from each layer's
  text cross-attention *input* (per-frame mean over spatial tokens), fitted on half of the
  test clips and scored on the other half. Near 0: frames reach the text attention without
  knowing when they are, so no routing by content can work. (Time-aware phases supply time
  as a logit term instead, so their R^2 need not rise.)
- `key_phase_accuracy`: held-out accuracy of a linear classifier telling phase-1 tokens from
  phase-2 tokens using the states the text attention's keys are computed from (Wan's text
  projection of the umT5 states, plus the PACA embedding when the row has it). 0.5 = the
  frozen text encoder gives the keys no way to know which phase they belong to.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["frame_time_r2", "key_phase_accuracy", "ridge_fit"]


def ridge_fit(x: np.ndarray, y: np.ndarray, lam: float = 1e-2) -> np.ndarray:
    """Ridge weights (with bias) for standardised features."""
    xb = np.concatenate([x, np.ones((len(x), 1))], 1)
    reg = lam * len(x) * np.eye(xb.shape[1])
    reg[-1, -1] = 0.0
    return np.linalg.solve(xb.T @ xb + reg, xb.T @ y)


def _predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones((len(x), 1))], 1) @ w


def _split(n: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(n)
    return idx[idx % 2 == 0], idx[idx % 2 == 1]


def frame_time_r2(inputs: np.ndarray) -> float:
    """`inputs` (N_clips, F, D) -> held-out R^2 of the frame index (clips split even/odd)."""
    n, f, d = inputs.shape
    tr, te = _split(n)
    x = inputs.astype(np.float64)
    mu, sd = x[tr].reshape(-1, d).mean(0), x[tr].reshape(-1, d).std(0) + 1e-6
    x = (x - mu) / sd
    y = np.broadcast_to(np.arange(f, dtype=np.float64), (n, f))
    w = ridge_fit(x[tr].reshape(-1, d), y[tr].reshape(-1))
    pred = _predict(w, x[te].reshape(-1, d))
    truth = y[te].reshape(-1)
    return float(1.0 - ((pred - truth) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())


@torch.no_grad()
def key_phase_accuracy(
    model: Any, text: torch.Tensor, phase_ids: torch.Tensor, use_paca: bool
) -> float:
    """Held-out accuracy of phase-1 vs phase-2 tokens from the key-side text states."""
    states = text.float()
    if use_paca:
        states = states + model.phase_embedding(phase_ids).float()
    keys = model.condition_embedder.text_embedder(states).numpy()  # (N, S, D)
    ids = phase_ids.numpy()
    n = len(ids)
    tr, te = _split(n)

    def pick(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for i in rows:
            for k, sign in ((1, 1.0), (2, -1.0)):
                sel = ids[i] == k
                xs.append(keys[i][sel])
                ys.append(np.full(int(sel.sum()), sign))
        return np.concatenate(xs), np.concatenate(ys)

    xtr, ytr = pick(tr)
    xte, yte = pick(te)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    w = ridge_fit((xtr - mu) / sd, ytr)
    return float((np.sign(_predict(w, (xte - mu) / sd)) == yte).mean())
