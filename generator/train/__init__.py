"""Two-stage ActAvatar training (stage 1: audio adapter on a frozen backbone; stage 2: full
fine-tuning with PACA) and the distillation stage (few-evaluation students, `distill.py`), on
Hugging Face accelerate, reading a sharded latent cache.

Imports nothing of avatar-flow outside `generator/`. Entry point: `python -m generator.train
CONFIG` (or under `accelerate launch`). Exports are lazy so importing the package is cheap.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).with_name("configs")

_EXPORTS: dict[str, str] = {
    "TrainConfig": "generator.train.config",
    "ConfigError": "generator.train.config",
    "load_config": "generator.train.config",
    "config_from_dict": "generator.train.config",
    "config_hash": "generator.train.config",
    "Trainer": "generator.train.trainer",
    "trainer_for": "generator.train.stages",
    "DistillTrainer": "generator.train.distill",
    "find_checkpoints": "generator.train.trainer",
    "data_hash": "generator.train.trainer",
    "model_files_sha256": "generator.train.trainer",
    "param_group": "generator.train.trainer",
    "CacheWriter": "generator.train.data",
    "CachedClipDataset": "generator.train.data",
    "BucketBatchSampler": "generator.train.data",
    "encode_clip": "generator.train.cache",
    "encoder_signature": "generator.train.cache",
    "flow_matching_loss": "generator.train.losses",
    "resolve_base": "generator.train.models",
    "load_encoders": "generator.train.models",
    "export_pipeline": "generator.train.models",
    "plot_loss": "generator.train.logs",
}

__all__ = ["CONFIG_DIR", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'generator.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
