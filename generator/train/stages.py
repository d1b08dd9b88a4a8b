"""Which trainer runs a config: `Trainer` for stages 1 and 2, `DistillTrainer` for `distill`.

A module of its own so that `trainer` and `distill` do not import each other.
"""

from __future__ import annotations

from typing import Any

from generator.train.config import TrainConfig
from generator.train.distill import DistillTrainer
from generator.train.trainer import Trainer

__all__ = ["trainer_for"]


def trainer_for(config: TrainConfig, **kwargs: Any) -> Trainer:
    """The trainer of a config's stage (`distill` has its own model setup and loss)."""
    if config.stage == "distill":
        return DistillTrainer(config, **kwargs)
    return Trainer(config, **kwargs)
