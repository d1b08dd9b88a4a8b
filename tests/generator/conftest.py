"""Shared tiny components for the generator tests (built offline once per session)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from generator.presets import build_tiny_pipeline

    path = tmp_path_factory.mktemp("tiny") / "pipeline"
    build_tiny_pipeline(path)
    return path


@pytest.fixture(scope="session")
def tiny_pipe(tiny_dir):
    from generator.pipeline_actavatar import ActAvatarPipeline

    pipe = ActAvatarPipeline.from_pretrained(tiny_dir, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def avatar() -> Image.Image:
    rng = np.random.RandomState(0)
    return Image.fromarray((rng.rand(80, 120, 3) * 255).astype(np.uint8))


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    t = np.arange(16000) / 16000
    rng = np.random.RandomState(1)
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (t < 0.5) + 0.05 * rng.randn(len(t))).astype(
        np.float32
    )
