"""Helpers for the trainer tests: a tiny synthetic latent cache (no videos needed).

Clips are moving squares with a tone, encoded with the tiny preset's own VAE / umT5 / Wav2Vec2
through `generator.train.cache.encode_clip`, so the cache has exactly the layout the dataset
builder writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FPS = 25


def moving_square(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.RandomState(seed)
    frames = np.zeros((num_frames, height, width, 3), dtype=np.uint8)
    frames[:] = rng.randint(40, 90, size=3)
    y, x = rng.randint(0, height - 16), rng.randint(0, width - 16)
    vy, vx = rng.choice([-3, 3]), rng.choice([-4, 4])
    for f in range(num_frames):
        y = int(np.clip(y + vy, 0, height - 16))
        x = int(np.clip(x + vx, 0, width - 16))
        frames[f, y : y + 16, x : x + 16] = (230, 200, 40)
    return frames


def tone(num_frames: int, seed: int) -> np.ndarray:
    t = np.arange(int(num_frames / FPS * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * (180 + 40 * seed) * t)).astype(np.float32)


def build_synthetic_cache(root: Path, clips: list[tuple[int, int]], num_frames: int = 9) -> Path:
    from generator.render_types import PromptPhase, StructuredPrompt
    from generator.train.cache import encode_clip, encoder_signature
    from generator.train.data import CacheWriter
    from generator.train.models import load_encoders, resolve_base

    encoders = load_encoders(resolve_base("preset:tiny"))
    cache = root / "cache"
    with CacheWriter(cache, shard_size=4, encoders=encoder_signature(encoders, "preset:tiny")) as w:
        for i, (h, wd) in enumerate(clips):
            dur = num_frames / FPS
            prompt = StructuredPrompt(
                base="A person speaking to the camera in an office",
                phases=(
                    PromptPhase("raises both hands", 0.0, dur / 2),
                    PromptPhase("points at chart", dur / 2, dur),
                ),
                duration=dur,
            )
            tensors = encode_clip(
                encoders,
                moving_square(num_frames, h, wd, i),
                tone(num_frames, i),
                "A person speaking",
                prompt,
                fps=FPS,
                text_len=64,
                max_phases=4,
            )
            shape = list(tensors["latents"].shape)
            w.add(
                f"clip{i:03d}",
                tensors,
                {
                    "latent_shape": shape,
                    "motion": 0.1 * i,
                    "stage2": True,
                    "num_frames": num_frames,
                    "height": h,
                    "width": wd,
                    "fps": FPS,
                },
            )
    return root


def tiny_config(tmp: Path, stage: str, dataset: Path, **overrides):
    """The repo's tiny YAML config with test overrides (`train.max_steps=3`, ...)."""
    from generator.train import CONFIG_DIR
    from generator.train.config import load_config

    sets = [f"output_dir={tmp / stage}", f"data.dataset={dataset}"]
    sets += [f"{k.replace('__', '.')}={v}" for k, v in overrides.items()]
    return load_config(CONFIG_DIR / f"tiny-{stage}.yaml", sets)
