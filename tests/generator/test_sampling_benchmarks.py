"""benchmarks/sampling.py and benchmarks/gpu.py at the tiny size: the printed figures have the
promised structure, and the arithmetic behind them holds (evaluations, FLOPs, projections)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_sampling_benchmark_tiny(tmp_path):
    from generator.sampling import candidate_options

    out = tmp_path / "sampling.json"
    text = _run(
        "sampling.py", "--size", "tiny", "--repeats", "1", "--threads", "1", "--json", str(out)
    )
    res = json.loads(out.read_text())
    rows = res["rows"]
    options = candidate_options(None)
    assert set(options) < set(rows) and {"cache-40", "unipc-20+cache"} < set(rows)
    for name, opt in options.items():  # counted by the pipeline = what the options promise
        assert rows[name]["evaluations"] == opt.evaluations(), name
    assert rows["teacher"]["evaluations"] == 120 and rows["one-forward-4"]["evaluations"] == 4
    cache = rows["cache-40"]
    assert cache["evaluations"] + cache["cache_skipped"] == 120 and cache["cache_skipped"] > 0
    # the 5B forward is the 579 TFLOP of GENERATOR.md section 5; projections are FLOPs / (u peak)
    assert res["forward_tflop_5b"] == pytest.approx(579, rel=0.01)
    teacher = rows["teacher"]["projected"]
    assert teacher["H100 SXM 40%"] == pytest.approx(
        120 * res["forward_tflop_5b"] * 1e12 / (0.4 * 989e12)
    )
    assert teacher["H200 SXM 60%"] == pytest.approx(teacher["H100 SXM 40%"] * 0.4 / 0.6)
    for r in rows.values():
        assert r["seconds"] > 0 and r["noise"] >= 0 and r["verdict_source"] in ("bench", "proxy")
    fastest = res["fastest_within_noise"]
    assert rows[fastest]["within_noise"]
    assert all(r["seconds"] >= rows[fastest]["seconds"] for r in rows.values() if r["within_noise"])
    ref = res["reference"]
    assert ref == ("best-teacher" if res["best_teacher_row"] else "teacher")
    assert res["speedup"] == pytest.approx(rows[ref]["seconds"] / rows[fastest]["seconds"])
    m = re.search(r"ratio teacher \((.+)\) / fastest within noise \((.+)\) = ([0-9.]+)x", text)
    assert (
        m
        and (m.group(1), m.group(2)) == (ref, fastest)
        and float(m.group(3)) == pytest.approx(res["speedup"], abs=0.006)
    )
    for name in rows:  # one printed line per option
        assert re.search(rf"^{re.escape(name)}\s+\d+\s+[0-9.]+ ±", text, re.M), name


def test_gpu_benchmark_tiny_and_real_problem_size(tmp_path):
    from generator.presets import WAN22_TI2V_5B_TRANSFORMER_CONFIG

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu
    finally:
        sys.path.pop(0)
    size = gpu.problem_size(WAN22_TI2V_5B_TRANSFORMER_CONFIG, 121, 704, 1280)
    assert size == {"latent_frames": 31, "latent_height": 44, "latent_width": 80, "tokens": 27280}

    out = tmp_path / "gpu.json"
    text = _run("gpu.py", "--tiny", "--repeats", "1", "--json", str(out))
    res = json.loads(out.read_text())
    assert res["device"].startswith("CPU") and res["tokens"] == 3 * 2 * 3
    s = res["settings"]
    assert list(s) == ["teacher", "student-40", "student-8", "student-4"]
    assert s["teacher"]["batch"] == 3 and s["teacher"]["evaluations_per_clip"] == 120
    assert [s[k]["evaluations_per_clip"] for k in ("student-40", "student-8", "student-4")] == [
        40,
        8,
        4,
    ]
    for v in s.values():
        assert v["seconds"] > 0 and v["peak_gib"] >= 0
        assert v["seconds_per_clip"] == pytest.approx(v["steps"] * v["seconds"])
    assert res["parameters"] > 0
    assert "teacher / student-8 per clip =" in text and "18 video tokens" in text


def test_benchmark_reads_the_best_teacher_and_its_verdicts():
    """The benchmark's reference and verdicts come from the committed issue-21 study: the best
    teacher's scale and interval become the `best-*` options; a one-forward option is within
    noise when any student of that step count is."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import sampling as bench
    finally:
        sys.path.pop(0)
    study = {
        "best_row": "teacher s=3 [0, 0.9]",
        "best": {"guidance_scale": 3.0, "audio_guidance_scale": 3.0, "guidance_interval": [0, 0.9]},
        "options": {
            "teacher s=3 [0, 0.9]": {"within_noise": True, "evaluations": 90},
            "teacher s=5 full": {"within_noise": False, "evaluations": 120},
            "trajectory student 8": {"within_noise": False, "evaluations": 8},
            "trajectory student 8 + identity": {"within_noise": True, "evaluations": 8},
            "trajectory student 4": {"within_noise": False, "evaluations": 4},
        },
    }
    opts = bench.best_options(study)
    assert opts["best-teacher"].guidance_scale == 3.0
    assert opts["best-teacher"].guidance_interval == (0, 0.9)
    assert opts["best-unipc-8"].steps == 8 and opts["best-unipc-8"].evaluations() < 24
    v = bench.committed_verdicts(study)
    assert v == {
        "teacher": False,
        "one-forward-8": True,
        "one-forward-4": False,
        "best-teacher": True,
    }
