import threading

import pytest
from sqlalchemy import text
from sqlmodel import select

from storage import (
    Asset,
    AssetStore,
    Job,
    Segment,
    atomic_path,
    atomic_write_text,
    get_engine,
    session_scope,
    sha256_bytes,
    sqlite_url,
)


@pytest.fixture
def db(tmp_path) -> str:
    return sqlite_url(tmp_path / "t.db")


def test_sqlite_runs_in_wal_mode_with_foreign_keys(db):
    with get_engine(db).connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_transaction_rolls_back_on_error(db):
    with pytest.raises(RuntimeError), session_scope(db) as s:
        s.add(Job(id="j1", title="half"))
        s.flush()
        raise RuntimeError("boom")
    with session_scope(db) as s:
        assert s.get(Job, "j1") is None


def test_segments_cascade_with_their_job(db):
    with session_scope(db) as s:
        s.add(Job(id="j2"))
        s.flush()
        s.add(Segment(job_id="j2", index=0, start=0, end=1, num_frames=25, render_frames=25))
    with session_scope(db) as s:
        s.delete(s.get(Job, "j2"))
    with session_scope(db) as s:
        assert s.exec(select(Segment)).all() == []


def test_two_writers_at_once_lose_nothing(db):
    with session_scope(db) as s:
        s.add(Job(id="j3"))
    errors = []

    def write(offset: int) -> None:
        try:
            for i in range(25):
                with session_scope(db) as s:
                    s.add(Asset(job_id="j3", kind=f"k{offset + i}", path="p", sha256="x", bytes=i))
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k * 100,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with session_scope(db) as s:
        assert len(s.exec(select(Asset).where(Asset.job_id == "j3")).all()) == 50


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    dest = tmp_path / "out" / "video.mp4"
    atomic_write_text(dest, "old")
    with pytest.raises(ValueError), atomic_path(dest) as tmp:
        tmp.write_text("partial")
        raise ValueError("crash mid-write")
    assert dest.read_text() == "old"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["video.mp4"]


def test_asset_store_is_content_addressed_and_idempotent(tmp_path):
    store = AssetStore(tmp_path / "cas")
    sha, path = store.put_bytes(b"frames", ".mp4")
    assert sha == sha256_bytes(b"frames")
    assert path == tmp_path / "cas" / sha[:2] / f"{sha}.mp4"
    mtime = path.stat().st_mtime_ns
    assert store.put_bytes(b"frames", ".mp4") == (sha, path)
    assert path.stat().st_mtime_ns == mtime
    src = tmp_path / "clip.mp4"
    src.write_bytes(b"frames")
    assert store.put_file(src) == (sha, path)
    assert store.verify(sha, ".mp4")
    path.write_bytes(b"tampered")
    assert not store.verify(sha, ".mp4")


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_get_the_umask_mode_not_0600(tmp_path, umask):
    import os

    from storage import AssetStore, atomic_copy, atomic_write_text

    old = os.umask(umask)
    try:
        text = atomic_write_text(tmp_path / "a" / "plan.json", "{}\n")
        copy = atomic_copy(text, tmp_path / "video.mp4")
        _sha, stored = AssetStore(tmp_path / "assets").put_bytes(b"clip", ".mp4")
    finally:
        os.umask(old)
    for path in (text, copy, stored):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, (path, oct(path.stat().st_mode))
