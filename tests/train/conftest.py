"""Fixtures for the trainer tests (tiny preset, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import build_synthetic_cache


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """Six clips in two resolution buckets (64x64 and 64x96), 9 frames each."""
    return build_synthetic_cache(
        tmp_path_factory.mktemp("tinydata"), [(64, 64)] * 4 + [(64, 96)] * 2
    )


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is several times faster on a shared 2-core box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def stage1_adapter(tmp_path_factory) -> Path:
    """An adapter file with non-zero output projections (as if trained in stage 1)."""
    import torch

    from generator.train.models import load_transformer, resolve_base

    model = load_transformer(resolve_base("preset:tiny"))
    torch.manual_seed(3)
    with torch.no_grad():
        for block in model.blocks:
            torch.nn.init.normal_(block.audio_attn.to_out[0].weight, std=0.2)
    path = tmp_path_factory.mktemp("adapter") / "audio_adapter.safetensors"
    model.save_audio_adapter(path)
    return path
