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
    assert time.time() - t0 < 120  # wall time on a shared machine, with start-up
    text = (out / "README.md").read_text()
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")]
    variants = ["base", "+PACA", "+progressive", "+two-stage", "+time-aware"]
    controls = [
        "text-blind (+two-stage)",
        "shuffled ids (+PACA)",
        "shuffled ids (+time-aware)",
        "wrong anchors (+two-stage)",
        "wrong anchors (+time-aware)",
        "oracle routing",
    ]
    refs = ["*reference: chance*", "*reference: anchor-blind*", "*reference: anchor-blind modal*"]
    assert rows[1:] == variants + controls + refs  # after the header
    assert "QUICK MODE" in text and "generator.train.Trainer" in text
    assert "Temporal IoU (timing)" in text and "MDE" in text and "Positive control" in text
    for png in ("phase_focus.png", "loss_curves.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f"]({png})" in text
    results = json.loads((out / "results.json").read_text())
    assert results["seconds"] < 60  # --quick is a plumbing check under a minute
    runs, ctrl = results["runs"], results["controls"]
    assert list(runs) == variants and set(ctrl) == set(controls)
    assert list(runs["+two-stage"][0]["curves"]) == ["stage1", "stage2"]
    # stage 1 is extra: +two-stage gets the same 8 stage-2 steps as every other row
    assert len(runs["+two-stage"][0]["curves"]["stage1"]) == 3
    assert len(runs["+two-stage"][0]["curves"]["stage2"]) == 8
    assert len(runs["base"][0]["curves"]["train"]) == 8
    assert len(ctrl["oracle routing"][0]["curves"]["train"]) == 8
    assert results["config"]["stage1_steps"] == 3 and results["config"]["steps"] == 8
    for name in variants:  # per-layer contrast and probes in every row
        assert len(runs[name][0]["contrast"]) == 4 and len(runs[name][0]["frame_time_r2"]) == 4
        assert 0.0 <= runs[name][0]["metrics"]["key_probe_acc"] <= 1.0
    assert set(results["references"]) == {"chance", "anchor-blind", "anchor-blind modal"}
