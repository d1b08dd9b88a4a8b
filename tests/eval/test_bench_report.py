"""The bench report of a part run on its own."""

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "eval" / "synthetic" / "attribution"


def test_report_of_a_controls_only_part(tmp_path):
    """A part that runs only the oracle (`--rows "oracle routing"`) has no rows: its report
    plots the control's attention and states the oracle line (it failed with IndexError)."""
    from generator.eval.report import write_report

    results = json.loads((COMMITTED / "results.json").read_text())
    example = results["runs"]["+PACA (3x)"][0]  # the committed run that keeps example_probs
    results["controls"] = {"oracle routing": [example]}
    results["runs"] = {}
    write_report(results, tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "| oracle routing | 0.280 | 0.173 |" in text
    assert "Positive control (oracle routing, trained with the Trainer): H@S 0.280" in text
    assert (tmp_path / "phase_focus.png").stat().st_size > 10_000
