"""The bench report of a part run on its own and of a merge that extends a committed report."""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "eval" / "synthetic" / "attribution"


def test_report_of_a_controls_only_part(tmp_path):
    """A part that runs only the oracle (`--rows "oracle routing"`) has no rows: its report
    plots the control's attention and states the oracle line (it failed with IndexError)."""
    from generator.eval.report import write_report

    results = json.loads((COMMITTED / "results.json").read_text())
    last = list(results["runs"])[-1]
    example = results["runs"][last][0]  # the committed run that keeps example_probs
    assert "example_probs" in example
    results["controls"] = {"oracle routing": [example]}
    results["runs"] = {}
    write_report(results, tmp_path)
    text = (tmp_path / "README.md").read_text()
    h, iou = example["metrics"]["hit_rate"], example["metrics"]["temporal_iou"]
    assert f"| oracle routing | {h:.3f} | {iou:.3f} |" in text
    assert f"Positive control (oracle routing, trained with the Trainer): H@S {h:.3f}" in text
    assert (tmp_path / "phase_focus.png").stat().st_size > 10_000


def test_merge_extends_a_merged_report(tmp_path):
    """A committed (merged) report merged with a new part keeps every earlier part's time,
    so the report's per-part time stays complete when runs are added later."""
    from generator.eval.bench import merge_runs

    committed = COMMITTED
    old = json.loads((committed / "results.json").read_text())
    new = json.loads((committed / "results.json").read_text())
    new.pop("parts")
    row = "+PACA (27x)"  # a row the committed report does not have, on a second seed
    new["runs"] = {row: [dict(old["runs"]["+PACA"][0], seed=1)]}  # without the attention map
    new["controls"] = {}
    new["config"]["seeds"], new["config"]["rows"] = [1], [row]
    new["seconds"], new["cpu_seconds"] = 100.0, 50.0
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "results.json").write_text(json.dumps(new))
    m = merge_runs([committed, tmp_path / "new"], tmp_path / "merged")
    assert len(m["parts"]) == len(old["parts"]) + 1
    assert m["parts"][:-1] == old["parts"]
    assert m["parts"][-1] == {
        "dir": str(tmp_path / "new"),
        "seeds": [1],
        "rows": [row],
        "seconds": 100.0,
        "cpu_seconds": 50.0,
    }
    assert m["cpu_seconds"] == pytest.approx(old["cpu_seconds"] + 50.0)
    assert [r["seed"] for r in m["runs"][row]] == [1]
    for name, runs in old["runs"].items():  # the committed rows are kept, in seed order
        assert [r["seed"] for r in m["runs"][name]] == [r["seed"] for r in runs]
