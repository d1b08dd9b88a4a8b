"""The loss log (JSONL, one event per line) and its curve (matplotlib Agg, imported lazily)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["plot_loss", "read_log"]


def read_log(path: str | Path, event: str = "step") -> list[dict[str, Any]]:
    """Events of one kind; after a resume the last record of a step wins."""
    by_step: dict[int, dict[str, Any]] = {}
    path = Path(path)
    if not path.is_file():
        return []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line after a crash
        if rec.get("event") == event and "step" in rec:
            by_step[int(rec["step"])] = rec
    return [by_step[k] for k in sorted(by_step)]


def plot_loss(log_path: str | Path, out_png: str | Path, title: str = "") -> Path | None:
    """Loss per optimizer step plus an exponential moving average; None when nothing is logged."""
    records = read_log(log_path)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    loss = [r["loss"] for r in records]
    smooth, acc = [], None
    for v in loss:
        acc = v if acc is None else 0.9 * acc + 0.1 * v
        smooth.append(acc)
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.plot(steps, loss, lw=0.8, alpha=0.45, label="loss")
    ax.plot(steps, smooth, lw=1.6, label="EMA 0.9")
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss")
    ax.set_title(title or Path(log_path).parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
