"""Metrics of the synthetic Action Bench, computed from the signals of generated latents.

Why: the paper scores actions with an MLLM judge and lip-sync with SyncNet; in the
synthetic world the ground truth is exact, so each score has a closed form:

- `hit`            per phase: the action is detected in at least half of its window's
                   frames (the H@S analogue: Action Occurrence = 1);
- `iou`            per phase: IoU of the frames where the action is detected (anywhere in
                   the clip) with its window (Temporal Correctness);
- `action_acc`     among window frames where *some* action is detected, the share that
                   shows the prompted one (Action Accuracy: the right action when it acts);
- `frame_acc`      per-frame label accuracy over the whole clip, rest included;
- `lip_corr`       Pearson correlation of the decoded mouth with the audio-driven truth at
                   lag 0 (Sync-C analogue); `lip_lag` the lag in [-max_lag, max_lag] with
                   the best correlation (0 = in sync); `mouth_err` mean absolute error
                   (Sync-D analogue);
- `identity_err`   relative L2 error of the identity channels vs the conditioning frame's
                   identity, mean over generated frames.

Everything here is numpy on single clips; `score_clip` returns one flat dict.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from generator.eval.world import SyntheticWorld

__all__ = [
    "DETECT_THRESHOLD",
    "action_metrics",
    "aggregate",
    "decode_latents",
    "lip_sync",
    "score_clip",
]

DETECT_THRESHOLD = 0.5  # template coefficient above which an action counts as present


def decode_latents(world: SyntheticWorld, latents: np.ndarray) -> dict[str, np.ndarray]:
    """Read body label, mouth opening and identity back from latents (C, F, H, W).

    Body: least-squares coefficient of each action template per generated frame; the best
    template wins if its coefficient >= DETECT_THRESHOLD, else rest (0).
    """
    cfg = world.config
    x = np.asarray(latents, dtype=np.float64)
    b0, b1 = cfg.body_channels
    m0, m1 = cfg.mouth_channels
    i0, i1 = cfg.identity_channels
    body = x[b0:b1, 1:].transpose(1, 0, 2, 3).reshape(cfg.num_gen_frames, -1)  # (F_gen, n_b)
    tmpl = world.body_templates.reshape(len(world.body_templates), -1).astype(np.float64)
    coef = body @ tmpl.T / (tmpl * tmpl).sum(1)[None]  # (F_gen, n_templates)
    best = coef.argmax(1)
    labels = np.where(coef.max(1) >= DETECT_THRESHOLD, world.template_actions[best], 0).astype(
        np.int64
    )
    mt = world.mouth_template.reshape(-1).astype(np.float64)
    mouth_all = x[m0:m1].transpose(1, 0, 2, 3).reshape(cfg.num_latent_frames, -1) @ mt / (mt @ mt)
    ident = x[i0:i1]  # (n_id, F, H, W)
    return {
        "labels": labels,  # (F_gen,)
        "coef": coef,
        "mouth": mouth_all[1:],  # (F_gen,)
        "identity": ident,
    }


def action_metrics(
    labels: np.ndarray, windows: list[tuple[int, int]], actions: list[int]
) -> dict[str, Any]:
    """Per-phase hit and IoU plus action accuracy, from detected per-frame labels."""
    labels = np.asarray(labels)
    n = len(labels)
    hits, ious = [], []
    detected = correct = 0
    for (s, e), a in zip(windows, actions):
        win = np.zeros(n, dtype=bool)
        win[s:e] = True
        det = labels == a
        hits.append(float(det[s:e].mean() >= 0.5))
        union = (win | det).sum()
        ious.append(float((win & det).sum() / union) if union else 0.0)
        inside = labels[s:e]
        detected += int((inside != 0).sum())
        correct += int((inside == a).sum())
    acc = correct / detected if detected else float("nan")
    return {"hits": hits, "ious": ious, "action_acc": acc}


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-12 else 0.0


def lip_sync(pred: np.ndarray, truth: np.ndarray, max_lag: int = 2) -> dict[str, float]:
    """Correlation at lag 0, best lag and its correlation, mean absolute error.

    Lag L compares `pred[j]` with `truth[j - L]`: a positive lag means the mouth trails
    the audio by L latent frames.
    """
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    n = len(pred)
    best_lag, best = 0, -np.inf
    for lag in range(-max_lag, max_lag + 1):
        a, b = (pred[lag:], truth[: n - lag]) if lag >= 0 else (pred[: n + lag], truth[-lag:])
        c = _corr(a, b)
        if c > best + 1e-12:
            best_lag, best = lag, c
    return {
        "lip_corr": _corr(pred, truth),
        "lip_lag": float(best_lag),
        "lip_best_corr": float(best),
        "mouth_err": float(np.abs(pred - truth).mean()),
    }


def score_clip(world: SyntheticWorld, latents: np.ndarray, clip: Any) -> dict[str, Any]:
    """All metrics of one generated clip against its ground truth (`world.Clip`)."""
    dec = decode_latents(world, latents)
    out: dict[str, Any] = action_metrics(dec["labels"], clip.windows, clip.actions)
    out["frame_acc"] = float((dec["labels"] == clip.labels).mean())
    out.update(lip_sync(dec["mouth"], clip.mouth))
    ident = dec["identity"][:, 1:]  # (n_id, F_gen, H, W)
    ref = clip.identity[:, None]
    err = np.sqrt(((ident - ref) ** 2).sum(axis=(0, 2, 3))) / np.sqrt((ref**2).sum())
    out["identity_err"] = float(err.mean())
    out["labels"] = dec["labels"].tolist()
    return out


def aggregate(scores: list[dict[str, Any]]) -> dict[str, float]:
    """Clip scores -> bench numbers (H@S over all phases; NaN accuracies skipped)."""
    hits = [h for s in scores for h in s["hits"]]
    ious = [v for s in scores for v in s["ious"]]
    accs = [s["action_acc"] for s in scores if not np.isnan(s["action_acc"])]
    return {
        "hit_rate": float(np.mean(hits)) if hits else 0.0,
        "temporal_iou": float(np.mean(ious)) if ious else 0.0,
        "action_acc": float(np.mean(accs)) if accs else 0.0,
        "frame_acc": float(np.mean([s["frame_acc"] for s in scores])),
        "lip_corr": float(np.mean([s["lip_corr"] for s in scores])),
        "lip_abs_lag": float(np.mean([abs(s["lip_lag"]) for s in scores])),
        "mouth_err": float(np.mean([s["mouth_err"] for s in scores])),
        "identity_err": float(np.mean([s["identity_err"] for s in scores])),
    }
