"""`avatar-flow eval synthetic --quick --out DIR` end to end (real trainer, tiny budgets)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_eval_synthetic_quick(tmp_path):
    out = tmp_path / "report"
    t0 = time.time()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "eval",
            "synthetic",
            "--quick",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.time() - t0 < 180
    text = (out / "README.md").read_text()
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")]
    assert rows[1:] == ["base", "+PACA", "+progressive", "+two-stage"]  # after the header
    assert "QUICK MODE" in text and "generator.train.Trainer" in text
    for png in ("phase_focus.png", "loss_curves.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f"]({png})" in text
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    assert set(runs) == {"base", "+PACA", "+progressive", "+two-stage"}
    assert list(runs["+two-stage"][0]["curves"]) == ["stage1", "stage2"]
    # stage 1 is extra: +two-stage gets the same 12 stage-2 steps as every other row
    assert len(runs["+two-stage"][0]["curves"]["stage1"]) == 4
    assert len(runs["+two-stage"][0]["curves"]["stage2"]) == 12
    assert len(runs["base"][0]["curves"]["train"]) == 12
    assert len(runs["+progressive"][0]["curves"]["train"]) == 12
    assert results["config"]["stage1_steps"] == 4 and results["config"]["steps"] == 12
    assert "4 stage-1 steps" in text and "the same 12 stage-2 steps" in text
    # the ablation switches reached the model: constant vs (l/L)^1.5 audio scales
    assert runs["+PACA"][0]["audio_scales"] == [1.0, 1.0, 1.0, 1.0]
    assert runs["+progressive"][0]["audio_scales"] == pytest.approx(
        [(i / 4) ** 1.5 for i in range(1, 5)], abs=1e-4
    )  # results.json keeps 4 decimals
    assert len(runs["base"][0]["focus"]["focus_rel"]) == 4  # one value per layer
