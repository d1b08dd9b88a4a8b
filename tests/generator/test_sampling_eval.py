"""The issue-21 study (generator.sampling_eval): the best-teacher rule and the paired verdicts on
known numbers, and the whole study end to end at quick budgets (every row sampled with the
pipeline's loop, students distilled from the best teacher's own sampler via a pool)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest


def _m(hit=1.0, iou=0.99, lip=0.98, ident=0.2, lag=0.0):
    return {
        "hit_rate": hit,
        "temporal_iou": iou,
        "lip_corr": lip,
        "identity_err": ident,
        "lip_abs_lag": lag,
        "distance": 0.0,
    }


def test_best_teacher_rule_takes_the_lowest_identity_error_among_the_eligible():
    from generator.sampling_eval import band_mde, choose_best

    seeds = range(5)
    jitter = [0.0, 0.002, -0.002, 0.001, -0.001]
    sweep = {
        # best timing, worst identity
        "s=5": {s: _m(iou=0.99 + jitter[s], ident=0.20 + jitter[s]) for s in seeds},
        # timing within the selection MDE of the best, better identity: the choice
        "s=3": {s: _m(iou=0.988 + jitter[s], ident=0.15 + jitter[s]) for s in seeds},
        # best identity but timing far outside the MDE: not eligible
        "s=1": {s: _m(iou=0.94 + jitter[s], ident=0.10 + jitter[s]) for s in seeds},
    }
    sel = choose_best(sweep, {"s=5": 120, "s=3": 120, "s=1": 40})
    assert sel["best"] == "s=3" and sel["eligible"] == ["s=5", "s=3"]
    sd = float(np.std(jitter, ddof=1))
    assert sel["selection_mde"]["temporal_iou"] == pytest.approx(band_mde(sd, 5))
    # (t_0.975,4 + t_0.8,4) sqrt(2/5) = (2.776 + 0.941) x 0.632
    assert band_mde(1.0, 5) == pytest.approx(2.3511, abs=1e-3)


def test_verdicts_are_paired_differences_against_the_best_teachers_band():
    from generator.sampling_eval import band_mde, summarise

    ident = [0.20, 0.22, 0.18, 0.21, 0.19]
    runs = {
        "best": {
            s: {"metrics": _m(ident=v), "evaluations": 90, "cpu_s": 1.0}
            for s, v in enumerate(ident)
        },
        # +0.005 on every teacher: a tiny, consistent difference, within the band
        "close": {
            s: {"metrics": _m(ident=v + 0.005), "evaluations": 8, "cpu_s": 0.1}
            for s, v in enumerate(ident)
        },
        # +0.05: worse than the band on identity only
        "far": {
            s: {"metrics": _m(ident=v + 0.05), "evaluations": 4, "cpu_s": 0.05}
            for s, v in enumerate(ident)
        },
    }
    s = summarise({"runs": runs, "best_row": "best"})
    mde = band_mde(float(np.std(ident, ddof=1)), 5)
    assert s["band"]["identity_err"]["mde"] == pytest.approx(mde)
    close, far = s["table"]["close"], s["table"]["far"]
    assert close["identity_err"]["diff"] == pytest.approx(0.005)
    assert close["identity_err"]["diff_se"] == pytest.approx(0.0, abs=1e-12)  # paired
    assert close["within_noise"] and not far["within_noise"]
    assert far["worse_than_best"] == ["identity_err +0.050"]
    assert s["table"]["best"]["within_noise"] and far["evaluations"] == 4


@pytest.mark.slow
def test_quick_study_end_to_end(tmp_path):
    from generator.sampling_eval import StudyConfig, run_study

    cfg = StudyConfig.make(quick=True)
    res = run_study(cfg, tmp_path / "out", log=lambda line: None, work=tmp_path / "work")
    table = res["summary"]["table"]
    evals = {name: row["evaluations"] for name, row in table.items()}
    assert evals["teacher unguided (unipc 40)"] == 40 and evals["teacher s=5 full"] == 120
    assert 40 < evals["teacher s=5 [0, 0.9]"] < 120
    assert evals["trajectory student 8 + identity"] == 8 and evals["trajectory student 4"] == 4
    best = res["best_row"]
    assert best in res["selection"]["eligible"] and best in res["sweep_rows"]
    assert table[best]["distance"]["mean"] == 0.0 and table[best]["within_noise"]
    for name, row in table.items():
        assert row["teachers"] == 2, name
        if name != best:
            assert row["distance"]["mean"] > 0, name  # a different sampler really ran
    # the students learned the best teacher's own sampler (the pool records it)
    pool = next((tmp_path / "work" / "seed-0").glob("pool-*.safetensors"))
    from generator.train.distill import read_trajectory_pool

    sampler = read_trajectory_pool(pool)["sampler"]
    assert sampler["steps"] == 40 and sampler["guidance_scale"] == res["best"]["guidance_scale"]
    assert sampler["guidance_interval"] == res["best"]["guidance_interval"]
    out = tmp_path / "out"
    assert (out / "quality_vs_evaluations.png").stat().st_size > 10_000
    text = (out / "README.md").read_text()
    assert "QUICK MODE" in text and "| trajectory student 4 + identity | 4 |" in text
    assert f"**Best teacher: {best}**" in text
    saved = json.loads((out / "results.json").read_text())
    assert saved["options"]["trajectory student 8"]["evaluations"] == 8
    # a study row's verdict recorded into a student's sampling.json (what --fast ranks by)
    from generator.sampling import read_sampling_file, write_sampling_file
    from generator.sampling_eval import main

    student = tmp_path / "student"
    student.mkdir()
    write_sampling_file(student, {"student": {"mode": "trajectory", "steps": 8}})
    row = "trajectory student 8 + identity"
    assert (
        main(["--record", str(student), "--row", row, "--results", str(out / "results.json")]) == 0
    )
    measured = read_sampling_file(student)["student"]["measured"]
    assert measured["within_noise"] == table[row]["within_noise"] and measured["row"] == row
    assert measured["worse"] == table[row]["worse_than_best"] and "QUICK" in measured["source"]
    # a second run on the same work folder re-uses every unit (nothing retrained)
    again = run_study(cfg, tmp_path / "out2", log=lambda line: None, work=tmp_path / "work")
    assert again["summary"]["table"] == table
    # judged against another sweep row (--best): new pools, students and student rows
    other = next(r for r in res["sweep_rows"] if r != best)
    alt = run_study(
        replace(cfg, best_override=other), tmp_path / "alt", lambda line: None, tmp_path / "work"
    )
    assert alt["best_row"] == other and alt["selection"]["best"] == best
    assert alt["summary"]["table"][other]["distance"]["mean"] == 0.0
    for name in ("trajectory student 8", "trajectory student 4 + identity"):
        assert alt["runs"][name]["0"]["metrics"] != res["runs"][name]["0"]["metrics"], name
