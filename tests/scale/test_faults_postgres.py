"""The PostgreSQL job database is lost in the middle of rendering (its connections killed and
new ones refused, as when the server goes away): the run fails with one line, the work done so
far stays on disk, and once the database is back a re-run renders only what is missing and
leaves complete records (every segment, the assets, the job done)."""

from pathlib import Path

import psycopg
import pytest
from fault_support import at, counting_renderer, run_cli, short_script
from sqlmodel import select

from flows.runtime.settings import get_settings
from storage import Asset, Job, Segment, get_engine, session_scope, sha256_file

pytestmark = pytest.mark.slow


@pytest.fixture
def counting(monkeypatch):
    return counting_renderer(monkeypatch)


def test_postgres_lost_mid_job_keeps_the_work_and_a_rerun_completes_the_records(
    fresh_home, tmp_path, monkeypatch, pg_url, postgres_server, counting
):
    monkeypatch.setenv("AVATAR_FLOW_DATABASE_URL", pg_url)
    get_settings(refresh=True)
    name = pg_url.rsplit("/", 1)[1]
    admin_dsn = postgres_server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    admin = psycopg.connect(admin_dsn, autocommit=True)

    def lose_the_database() -> None:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )

    script, out = short_script(tmp_path), tmp_path / "out"
    first = counting()
    with at("render", 2, lose_the_database):
        result, lines = run_cli(str(script), "--out", str(out))
    assert result.exit_code == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"failed: DatabaseUnavailable: the database {pg_url}")
    assert first.calls == [0, 1, 2]  # segment 2 rendered, then its record could not be written
    stored = sorted((fresh_home / "assets").rglob("*.mp4"))
    assert len(stored) == 3 and all(sha256_file(p) == p.stem for p in stored)  # kept, whole

    admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    admin.close()
    get_engine(pg_url).dispose()  # the pool's connections were killed
    again = counting()
    result, lines = run_cli(str(script), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    with session_scope(pg_url) as s:
        job = s.exec(select(Job)).one()
        segs = s.exec(select(Segment).order_by(Segment.index)).all()
        kinds = {a.kind for a in s.exec(select(Asset).where(Asset.job_id == job.id)).all()}
    assert again.calls == list(range(3, len(segs)))  # only what was never rendered
    assert job.status == "done" and job.error is None and job.segments_rendered == len(segs)
    assert [s.status for s in segs] == ["cached"] * 3 + ["rendered"] * (len(segs) - 3)
    assert all(sha256_file(Path(s.video_path)) == s.video_sha256 for s in segs)
    assert {"video", "audio", "words", "plan", "captions_srt", "timeline"} <= kinds
