"""The issue-12 study (generator.sampling_eval) end to end at quick budgets: every row is
sampled with the pipeline's loop, evaluations are what the options promise, and the report,
plot and sampling.json are written."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest


@pytest.mark.slow
def test_quick_study_writes_table_plot_and_calibration(tmp_path):
    from generator.sampling import read_sampling_file, step_cache_from_file
    from generator.sampling_eval import ROWS, StudyConfig, run_study

    keep = {
        "teacher (unipc 40, guided)",
        "unipc 8",
        "interval [0, 0.9] 12",
        "step cache 40",
        "guidance student 8",
        "trajectory student 4",
    }
    cfg = replace(StudyConfig.make(quick=True), rows=tuple(r for r in ROWS if r.name in keep))
    res = run_study(cfg, tmp_path / "out", log=lambda line: None, work=tmp_path / "work")
    table = res["summary"]["table"]
    assert list(table) == [r.name for r in ROWS if r.name in keep]
    evals = {name: row["evaluations"] for name, row in table.items()}
    assert evals["teacher (unipc 40, guided)"] == 120 and evals["unipc 8"] == 24
    assert evals["guidance student 8"] == 8 and evals["trajectory student 4"] == 4
    assert 12 < evals["interval [0, 0.9] 12"] < 36
    assert evals["step cache 40"] < 120
    teacher = table["teacher (unipc 40, guided)"]
    assert teacher["within_noise"] and teacher["distance"]["mean"] == 0.0
    assert all(len(runs) == len(cfg.seeds) for runs in res["runs"].values())
    for name, row in table.items():
        if name != "teacher (unipc 40, guided)":
            assert row["distance"]["mean"] > 0, name  # a different sampler really ran
    out = tmp_path / "out"
    assert (out / "quality_vs_evaluations.png").stat().st_size > 10_000
    text = (out / "README.md").read_text()
    assert "QUICK MODE" in text and "| trajectory student 4 | 4 |" in text
    saved = json.loads((out / "results.json").read_text())
    assert saved["options"]["unipc 8"]["evaluations"] == 24
    cache = step_cache_from_file(read_sampling_file(out))
    assert cache is not None and cache.threshold == res["step_cache"]["threshold"]
    assert len(cache.mag_ratios) == 40
    assert read_sampling_file(tmp_path / "work" / "teacher")["step_cache"]["threshold"] == (
        cache.threshold
    )
