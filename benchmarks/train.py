"""Trainer benchmark (CPU, tiny preset): optimizer steps per second with and without gradient
checkpointing and latent caching, and how long the step waits for the data loader.

    .venv/bin/python benchmarks/train.py [--quick] [--json]

"cached" reads VAE latents, umT5 states and Wav2Vec2 features from the safetensors shards the
dataset builder writes; "uncached" runs the three frozen encoders inside the data loader for
every sample (what training without `avatar-flow dataset build`'s cache would cost). Stage 2
(full fine-tuning) on 33-frame 128x128 clips (9 latent frames x 16 tokens), global batch 2,
float32; each variant: 2 warm-up steps, then the median of timed steps.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from generator.render_types import PromptPhase, StructuredPrompt  # noqa: E402
from generator.train.cache import encode_clip, encoder_signature  # noqa: E402
from generator.train.config import load_config  # noqa: E402
from generator.train.data import CachedClipDataset, CacheWriter  # noqa: E402
from generator.train.models import load_encoders, resolve_base  # noqa: E402
from generator.train.trainer import Trainer  # noqa: E402

FPS, FRAMES, SIZE, CLIPS, TEXT_LEN = 25, 33, 128, 8, 128


def raw_clip(i: int) -> dict[str, Any]:
    rng = np.random.RandomState(i)
    frames = np.full((FRAMES, SIZE, SIZE, 3), rng.randint(30, 90, size=3), dtype=np.uint8)
    for f in range(FRAMES):
        x = (8 + 3 * f + 11 * i) % (SIZE - 24)
        frames[f, 40:64, x : x + 24] = (230, 200, 40)
    t = np.arange(int(FRAMES / FPS * 16000)) / 16000
    dur = FRAMES / FPS
    prompt = StructuredPrompt(
        base="A person speaking to the camera",
        phases=(
            PromptPhase("raises both hands", 0.0, dur / 2),
            PromptPhase("points at chart", dur / 2, dur),
        ),
        duration=dur,
    )
    return {
        "frames": frames,
        "audio": (0.3 * np.sin(2 * np.pi * (200 + 20 * i) * t)).astype(np.float32),
        "caption": "A person speaking",
        "prompt": prompt,
    }


class OnTheFlyDataset(CachedClipDataset):
    """Same samples, but every item re-encodes its clip with the frozen VAE / umT5 / Wav2Vec2."""

    def __init__(
        self, cached: CachedClipDataset, raw: dict[str, dict[str, Any]], encoders: dict[str, Any]
    ):
        self.__dict__.update(cached.__dict__)
        self.raw, self.encoders_ = raw, encoders

    def load(self, sample_id: str) -> dict[str, torch.Tensor]:
        r = self.raw[sample_id]
        return encode_clip(
            self.encoders_,
            r["frames"],
            r["audio"],
            r["caption"],
            r["prompt"],
            fps=FPS,
            text_len=TEXT_LEN,
            max_phases=4,
        )


def build_cache(root: Path, encoders: dict[str, Any]) -> dict[str, dict[str, Any]]:
    raw = {}
    with CacheWriter(
        root / "cache", shard_size=4, encoders=encoder_signature(encoders, "preset:tiny")
    ) as w:
        for i in range(CLIPS):
            sid = f"clip{i:03d}"
            raw[sid] = r = raw_clip(i)
            t = encode_clip(
                encoders,
                r["frames"],
                r["audio"],
                r["caption"],
                r["prompt"],
                fps=FPS,
                text_len=TEXT_LEN,
                max_phases=4,
            )
            w.add(sid, t, {"latent_shape": list(t["latents"].shape), "stage2": True, "motion": 0.1})
    return raw


def run_variant(
    root: Path,
    adapter: Path,
    raw: dict,
    encoders: dict,
    checkpointing: bool,
    cached: bool,
    steps: int,
) -> dict[str, Any]:
    from generator.train import CONFIG_DIR

    out = root / f"run-{int(checkpointing)}{int(cached)}"
    cfg = load_config(CONFIG_DIR / "tiny-stage2.yaml", [
        f"output_dir={out}", f"data.dataset={root}", f"model.adapter={adapter}", f"data.text_len={TEXT_LEN}",
        f"model.gradient_checkpointing={str(checkpointing).lower()}", f"train.max_steps={steps + 2}",
        "data.batch_size=2", "train.resume=never",
    ])  # fmt: skip
    tr = Trainer(cfg, echo=False).setup()
    if not cached:
        tr.dataset = OnTheFlyDataset(tr.dataset, raw, encoders)
    it = iter(tr.make_dataloader(0, steps + 2))
    step_times, waits = [], []
    for k in range(steps + 2):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        tr.training_step([batch])
        t2 = time.perf_counter()
        if k >= 2:
            waits.append(t1 - t0)
            step_times.append(t2 - t0)
    med = statistics.median(step_times)
    return {
        "gradient_checkpointing": checkpointing,
        "latent_cache": cached,
        "steps_per_s": round(1.0 / med, 2),
        "step_ms": round(med * 1e3, 1),
        "data_wait_ms": round(statistics.median(waits) * 1e3, 2),
        "data_wait_share": round(sum(waits) / sum(step_times), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed steps")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    steps = 5 if args.quick else 15
    torch.set_num_threads(os.cpu_count() or 1)
    base = resolve_base("preset:tiny")
    encoders = load_encoders(base)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        raw = build_cache(root, encoders)
        from generator.train.models import load_transformer

        adapter = root / "adapter.safetensors"
        load_transformer(base).save_audio_adapter(adapter)
        rows = [
            run_variant(root, adapter, raw, encoders, gc, cached, steps)
            for cached in (True, False)
            for gc in (False, True)
        ]
    result = {
        "clips": CLIPS,
        "frames": FRAMES,
        "size": SIZE,
        "global_batch": 2,
        "threads": torch.get_num_threads(),
        "timed_steps": steps,
        "variants": rows,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(
        f"tiny preset, stage 2, {FRAMES}x{SIZE}x{SIZE} clips, batch 2, {result['threads']} threads, "
        f"median of {steps} steps"
    )
    print(
        f"{'checkpointing':>13} {'cache':>6} {'steps/s':>8} {'step ms':>8} {'wait ms':>8} {'wait %':>7}"
    )
    for r in rows:
        print(
            f"{str(r['gradient_checkpointing']):>13} {str(r['latent_cache']):>6} {r['steps_per_s']:>8} "
            f"{r['step_ms']:>8} {r['data_wait_ms']:>8} {100 * r['data_wait_share']:>6.1f}%"
        )


if __name__ == "__main__":
    main()
