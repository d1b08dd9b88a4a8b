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
    assert time.time() - t0 < 900  # a hang, not a speed target (the box is shared)
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
    # --quick is a plumbing check under a minute of one thread (the process's own CPU time:
    # wall time on this shared 2-core box depends on the other sessions' load)
    assert results["cpu_seconds"] < 60
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


def _cli(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "eval", "synthetic", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_eval_synthetic_quick_attribution_and_merge(tmp_path):
    """Issue 19's suite at quick budgets: every attribution row (real Trainer, config
    switches), the oracle trained with the Trainer, the budget curve and the jitter curve, one
    seed per process, merged into one report with paired verdicts."""
    parts = [tmp_path / "s0", tmp_path / "s1"]
    proc = _cli("--quick", "--suite", "attribution", "--seeds", "0", "--out", str(parts[0]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = "+PACA,+PACA +time-aware,+PACA (2x)"  # a second seed of some rows, as a split run
    proc = _cli(
        "--quick", "--suite", "attribution", "--seeds", "1", "--rows", rows, "--out", str(parts[1])
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((parts[0] / "results.json").read_text())
    assert res["cpu_seconds"] < 60  # a plumbing check: under a minute of one thread
    rows = [
        "+PACA",
        "+PACA +frame time",
        "+PACA +numeric anchors",
        "+PACA +frame time +numeric anchors",
        "+PACA +anchor tokens",
        "+PACA +time-aware",
    ]
    budget = [f"{n} (2x)" for n in ("+PACA", "+PACA +time-aware")]
    assert list(res["runs"])[: len(rows)] == rows
    assert list(res["runs"])[len(rows) : len(rows) + 2] == budget and len(res["runs"]) == 9
    assert len(res["runs"]["+PACA (2x)"][0]["curves"]["train"]) == 16  # 2 x 8 steps
    assert len(res["controls"]["oracle routing"][0]["curves"]["train"]) == 8
    assert set(res["runs"]["+PACA +anchor tokens"][0]["jitter"]) == {"0.0", "0.5"}
    merged = tmp_path / "merged"
    proc = _cli("--merge", f"{parts[0]},{parts[1]}", "--out", str(merged))
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((merged / "results.json").read_text())
    assert m["config"]["seeds"] == [0, 1] and len(m["parts"]) == 2
    for name in ("+PACA", "+PACA +time-aware", "+PACA (2x)"):
        assert [r["seed"] for r in m["runs"][name]] == [0, 1]
    assert [r["seed"] for r in m["runs"]["+PACA +anchor tokens"]] == [0]
    assert list(m["runs"])[:2] == ["+PACA", "+PACA +frame time"]  # the suite's row order
    text = (merged / "README.md").read_text()
    assert "timing attribution" in text and "95% CI" in text and "per seed" in text
    assert "±0.5 s" in text and "+PACA (2x) > +PACA" in text
    bad = _cli("--merge", f"{parts[0]},{tmp_path / 'nowhere'}", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "no results.json" in bad.stderr + bad.stdout
