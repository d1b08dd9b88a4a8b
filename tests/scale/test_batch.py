"""Batch manifests: validation errors (exit 2), a bad row that does not stop the others, re-runs
that skip what is done, and the SDK on PostgreSQL with two jobs at once."""

import json
import subprocess
import sys

import pytest
from scale_support import REPO, clean_env

from flows.runtime.errors import InputError
from flows.video.batch import load_manifest

EXAMPLES = REPO / "examples"
TEMPLATE = EXAMPLES / "batch" / "template.md"
CLI = [sys.executable, "-m", "orchestrator.cli"]


def _csv(path, text: str):
    path.write_text(text.strip() + "\n")
    return path


@pytest.mark.parametrize("name", ["products.csv", "products.jsonl", "products.yaml"])
def test_example_manifests_load(name):
    tmpl = None if name.endswith("yaml") else str(TEMPLATE)
    rows = load_manifest(EXAMPLES / "batch" / name, template=tmpl, out_root="/tmp/o")
    assert [r.id for r in rows][:2] == ["anna-notes", "ben-tasks"]
    assert rows[0].variables == {"product": "Notes Pro", "name": "Anna", "language": "en"}
    assert rows[0].out == "/tmp/o/anna-notes"


def test_unknown_column_names_file_row_and_field(tmp_path):
    m = _csv(tmp_path / "m.csv", "name,product,language,colour\nAnna,Notes,en,red")
    with pytest.raises(InputError) as err:
        load_manifest(m, template=str(TEMPLATE))
    assert err.value.field == "colour" and err.value.file == str(m)
    assert "row 1" in str(err.value) and "unknown column 'colour'" in str(err.value)


def test_missing_placeholder_and_bad_number(tmp_path):
    m = _csv(tmp_path / "m.csv", "name,product,language\nAnna,Notes,en\nBen,,en")
    with pytest.raises(InputError, match=r"row 2: the template needs a value for '\{product\}'"):
        load_manifest(m, template=str(TEMPLATE))
    m2 = _csv(tmp_path / "n.csv", "name,product,language,steps\nAnna,Notes,en,many")
    with pytest.raises(InputError) as err:
        load_manifest(m2, template=str(TEMPLATE))
    assert err.value.field == "steps"


def test_cli_rejects_a_bad_manifest_with_one_line_and_exit_2(tmp_path):
    m = _csv(tmp_path / "m.csv", "name,prodct,language\nAnna,Notes,en")
    proc = subprocess.run(
        [*CLI, "batch", str(m), "--template", str(TEMPLATE)],
        cwd=REPO,
        env=clean_env(AVATAR_FLOW_HOME=str(tmp_path / "h")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert str(m) in proc.stderr and "'prodct'" in proc.stderr


def test_bad_cron_in_deployments_yaml_is_exit_2(tmp_path):
    cfg = tmp_path / "d.yaml"
    cfg.write_text("deployments:\n  produce-video:\n    schedules:\n      - cron: '61 * * * *'\n")
    proc = subprocess.run(
        [*CLI, "serve", "--config", str(cfg)],
        cwd=REPO,
        env=clean_env(AVATAR_FLOW_HOME=str(tmp_path / "h")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "deployments.produce-video.schedules[0].cron" in proc.stderr and str(cfg) in proc.stderr


@pytest.mark.slow
def test_bad_row_fails_alone_and_a_rerun_does_only_it(tmp_path):
    m = _csv(
        tmp_path / "m.csv",
        """
id,name,product,language,voice
anna,Anna,Notes Pro,en,
bad,Ben,Tasks,en,openai:alloy
cleo,Cleo,Calendar,en,
""",
    )
    out = tmp_path / "out"
    env = clean_env(AVATAR_FLOW_HOME=str(tmp_path / "home"))
    env.pop("OPENAI_API_KEY", None)  # the bad row's voice needs a key only its own job checks
    cmd = [*CLI, "batch", str(m), "--template", str(TEMPLATE), "--out", str(out), "--json"]
    first = subprocess.run(
        [*cmd, "--concurrency", "2"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 1, first.stderr[-3000:]
    report = json.loads((out / "batch.json").read_text())
    status = {r["id"]: r["status"] for r in report["rows"]}
    assert status == {"anna": "done", "bad": "failed", "cleo": "done"}
    bad = next(r for r in report["rows"] if r["id"] == "bad")
    assert "field 'voice'" in bad["error"] and "OPENAI_API_KEY" in bad["error"]
    assert report["summary"] == {"done": 2, "skipped": 0, "failed": 1, "total": 3}
    mtimes = {k: (out / k / "video.mp4").stat().st_mtime_ns for k in ("anna", "cleo")}
    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 1
    again = json.loads((out / "batch.json").read_text())
    assert {r["id"]: r["status"] for r in again["rows"]} == {
        "anna": "skipped",
        "bad": "failed",
        "cleo": "skipped",
    }
    assert {k: (out / k / "video.mp4").stat().st_mtime_ns for k in ("anna", "cleo")} == mtimes


@pytest.mark.slow
def test_studio_batch_on_postgresql_two_jobs_at_once(tmp_path, pg_url, monkeypatch):
    """One end-to-end batch against the real PostgreSQL server: two jobs write concurrently."""
    from sqlmodel import select

    from orchestrator import Studio
    from storage import Asset, Job, Segment, session_scope
    from storage.migrations import current, head, upgrade

    upgrade(pg_url)
    monkeypatch.setenv("AVATAR_FLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AVATAR_FLOW_DATABASE_URL", pg_url)
    try:
        studio = Studio(home=tmp_path / "home", database_url=pg_url)
        rows = [
            {"id": "anna", "name": "Anna", "product": "Notes", "language": "en"},
            {"id": "ben", "name": "Ben", "product": "Tasks", "language": "en"},
        ]
        results = studio.produce_batch(
            rows, template=TEMPLATE, out_root=tmp_path / "out", concurrency=2
        )
        assert [(r.ok, r.report["status"]) for r in results] == [(True, "done")] * 2, results
        assert all(r.video.is_file() for r in results)
        with session_scope(pg_url) as s:
            jobs = s.exec(select(Job)).all()
            assert sorted(j.status for j in jobs) == ["done", "done"]
            assert all(j.segments_rendered == j.segments_total > 0 for j in jobs)
            assert all(j.gpu_seconds == 0.0 for j in jobs)
            segs = s.exec(select(Segment)).all()
            assert len(segs) == sum(j.segments_total for j in jobs)
            assert len(s.exec(select(Asset).where(Asset.kind == "video")).all()) == 2
        assert current(pg_url) == head()
        again = studio.produce_batch(rows, template=TEMPLATE, out_root=tmp_path / "out")
        assert [r.report["status"] for r in again] == ["skipped", "skipped"]
        legacy = studio.produce_batch([EXAMPLES / "missing.md"], out_root=tmp_path / "legacy")
        assert not legacy[0].ok and "missing.md" in legacy[0].error
    finally:
        from flows.runtime.settings import get_settings

        monkeypatch.undo()
        get_settings(refresh=True)
