"""Two CPU processes (gloo, torchrun + accelerate) give the gradients of one process on the same
global batch: the trainer is the same script at any process count."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from generator.train import CONFIG_DIR


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path, tiny_cache, stage1_adapter):
    from safetensors.torch import load_file

    from generator.train.logs import read_log

    def sets(out: Path, per_device: int) -> list[str]:
        return [
            "--set", f"output_dir={out}", "--set", f"data.dataset={tiny_cache}",
            "--set", f"model.adapter={stage1_adapter}", "--set", "train.max_steps=2",
            "--set", f"data.batch_size={per_device}", "--set", "debug.dump_grads_step=0",
            "--set", "train.checkpoint_every=100",
        ]  # fmt: skip

    config = str(CONFIG_DIR / "tiny-stage2.yaml")
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    _run([sys.executable, "-m", "generator.train", config, *sets(single, 4)], tmp_path)
    # torchrun sets RANK/WORLD_SIZE; accelerate picks them up (MULTI_CPU, gloo backend).
    # (`accelerate launch` itself needs mpirun for multi-CPU, which this box lacks.)
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "generator.train",
    ]
    _run([*launch, config, *sets(ddp, 2)], tmp_path)

    start_s, start_d = (
        read_log(single / "log.jsonl", "start")[0],
        read_log(ddp / "log.jsonl", "start")[0],
    )
    assert start_s["processes"] == 1 and start_d["processes"] == 2
    assert start_s["global_batch"] == start_d["global_batch"] == 4

    g1 = load_file(str(single / "grads-step-0.safetensors"))
    g2 = load_file(str(ddp / "grads-step-0.safetensors"))
    assert g1.keys() == g2.keys() and len(g1) > 50
    groups = {k.split(".")[0] for k in g1}
    assert {"blocks", "audio_proj", "phase_embedding"} <= groups
    for k in g1:
        assert torch.allclose(g1[k], g2[k], rtol=1e-4, atol=1e-6), (k, (g1[k] - g2[k]).abs().max())
    assert any(float(g.abs().max()) > 0 for g in g1.values())
    l1 = {r["step"]: r["loss"] for r in read_log(single / "log.jsonl")}
    l2 = {r["step"]: r["loss"] for r in read_log(ddp / "log.jsonl")}
    assert l1[1] == pytest.approx(l2[1], rel=1e-5) and l1[2] == pytest.approx(l2[2], rel=1e-4)
