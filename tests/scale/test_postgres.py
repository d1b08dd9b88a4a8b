"""The storage tests again, on a real PostgreSQL server, plus migrations and concurrent jobs."""

import importlib.util
import threading

import pytest
from scale_support import REPO
from sqlalchemy import text
from sqlmodel import select

from storage import Job, Segment, get_engine, session_scope

pytestmark = pytest.mark.slow

_spec = importlib.util.spec_from_file_location(
    "storage_tests_on_sqlite", REPO / "tests" / "storage" / "test_storage.py"
)
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)

# Same test bodies as on SQLite (the WAL pragma test is SQLite-only and replaced below).
test_transaction_rolls_back_on_error = _base.test_transaction_rolls_back_on_error
test_segments_cascade_with_their_job = _base.test_segments_cascade_with_their_job
test_two_writers_at_once_lose_nothing = _base.test_two_writers_at_once_lose_nothing


@pytest.fixture
def db(pg_url) -> str:
    return pg_url


def test_engine_talks_to_postgresql(db):
    with get_engine(db).connect() as conn:
        assert conn.dialect.name == "postgresql"
        assert conn.execute(text("select 1")).scalar() == 1
        fks = conn.execute(
            text(
                "select count(*) from information_schema.table_constraints "
                "where constraint_type = 'FOREIGN KEY'"
            )
        ).scalar()
        # Every foreign key the models declare (segment, planrecord, asset, ...) exists.
        from sqlmodel import SQLModel

        declared = sum(len(t.foreign_key_constraints) for t in SQLModel.metadata.sorted_tables)
        assert fks == declared >= 4


def test_migrations_create_the_models_schema(postgres_server):
    from scale_support import create_database

    from storage.migrations import current, head, schema_diff, upgrade

    url = create_database(postgres_server)
    assert upgrade(url) == (None, head())
    assert current(url) == head()
    assert schema_diff(url) == []
    assert upgrade(url) == (head(), head())  # idempotent


def test_two_jobs_writing_at_once_lose_nothing(db):
    from flows.runtime.records import open_job, record_segment_done, record_segments, set_status
    from storage.migrations import upgrade

    upgrade(db)  # as in production: migrate before workers start (concurrent create_all races)
    n_segments, errors = 12, []

    def job(k: int) -> None:
        try:
            jid = open_job(db, input_key=f"key-{k}", out_dir=f"/out/{k}", title=f"job {k}")
            record_segments(
                db,
                jid,
                [
                    {"index": i, "start": i, "end": i + 1, "num_frames": 25, "render_frames": 25}
                    for i in range(n_segments)
                ],
            )
            for i in range(n_segments):
                record_segment_done(
                    db,
                    jid,
                    i,
                    status="rendered",
                    cache_key=f"c{i}",
                    path=f"/seg/{k}/{i}",
                    sha256=f"{k}{i}",
                    seconds=0.5,
                )
            set_status(db, jid, "done")
        except Exception as exc:  # pragma: no cover - reported by the assertion
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with session_scope(db) as s:
        jobs = s.exec(select(Job).order_by(Job.input_key)).all()
        assert [(j.status, j.segments_total, j.segments_rendered) for j in jobs] == [
            ("done", n_segments, n_segments)
        ] * 2
        assert all(abs(j.render_seconds - 0.5 * n_segments) < 1e-9 for j in jobs)
        assert (
            len(s.exec(select(Segment).where(Segment.status == "rendered")).all()) == 2 * n_segments
        )
