"""Faults injected into a real job (animatic renderer, in-process runs of the CLI):

- a cached segment truncated or altered after it was recorded is found by its recorded sha256
  and rendered again, never stitched;
- the disk fills while rendering and while stitching (a small tmpfs, filled at a known step):
  one line naming the folder, the job failed, no partial file under a final name, and after the
  space is freed a re-run renders only what is missing;
- the database is unreachable at the start (one line before any work) or locked by another
  connection mid-job (the job waits for it and its records are complete).

Signals at each step and a PostgreSQL server lost mid-job are in tests/scale/test_faults_*.py.
A step is reached by a progress listener (the events the CLI's bars draw), so nothing sleeps.
"""

import errno
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fault_support import at, counting_renderer, run_cli, short_script
from sqlmodel import select

from flows.runtime.settings import get_settings
from storage import Job, Segment, session_scope, sha256_file

pytestmark = pytest.mark.slow


@pytest.fixture
def counting(monkeypatch):
    return counting_renderer(monkeypatch)


def job_and_segments() -> tuple[Job, list[Segment]]:
    with session_scope(get_settings().db_url) as s:
        job = s.exec(select(Job)).one()
        segs = s.exec(select(Segment).order_by(Segment.index)).all()
    return job, list(segs)


def assert_records_complete(total: int) -> None:
    """The job is done and every segment row points at a file with its recorded hash."""
    job, segs = job_and_segments()
    assert job.status == "done" and job.error is None and job.segments_rendered == total
    assert [s.index for s in segs] == list(range(total))
    for s in segs:
        assert s.status in ("rendered", "cached")
        assert sha256_file(Path(s.video_path)) == s.video_sha256


# --- a damaged cache ---------------------------------------------------------------------------


def test_a_truncated_or_altered_segment_is_rendered_again_never_stitched(
    fresh_home, tmp_path, counting
):
    script, out = short_script(tmp_path), tmp_path / "out"
    result, lines = run_cli(str(script), "--out", str(out))
    assert result.exit_code == 0, result.output
    video = sha256_file(out / "video.mp4")
    _job, segs = job_and_segments()
    total = len(segs)
    assert total >= 4
    truncated, altered = Path(segs[1].video_path), Path(segs[2].video_path)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    data = bytearray(altered.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    altered.write_bytes(bytes(data))

    renderer = counting()
    result, lines = run_cli(str(script), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert renderer.calls == [1, 2]  # only the two damaged segments
    assert sha256_file(out / "video.mp4") == video  # stitched from intact segments only
    assert_records_complete(total)
    assert sha256_file(truncated) == segs[1].video_sha256  # the store holds good copies again


# --- a full disk -------------------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path) -> Iterator[Callable[[str, str], Path]]:
    """Mount a small tmpfs (root can) under the test folder; unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True
        )
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Write a filler file until the device is full; returns it (delete it to free space)."""
    filler = folder / "filler.bin"
    chunk = b"\0" * (64 << 10)
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def partial_files(folder: Path) -> list[Path]:
    """Temporary names of atomic writes left behind (there must be none)."""
    return [p for p in folder.rglob("*") if ".part" in p.name or p.name.startswith(".concat-")]


@pytest.fixture
def db_outside(fresh_home, tmp_path, monkeypatch) -> None:
    """The job database on another disk than the one that fills (as a server database is):
    the failure must still be recorded."""
    monkeypatch.setenv("AVATAR_FLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'jobs.db'}")
    get_settings(refresh=True)


def test_disk_full_while_rendering(tmp_path, monkeypatch, tmpfs, db_outside, counting):
    home = tmpfs("home", "24m")
    monkeypatch.setenv("AVATAR_FLOW_HOME", str(home))
    get_settings(refresh=True)
    script, out = short_script(tmp_path), tmp_path / "out"
    filler: list[Path] = []
    with at("render", 2, lambda: filler.append(fill(home))):
        result, lines = run_cli(str(script), "--out", str(out))
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"failed: DiskFull: no space left on the device of {home}")
    job, segs = job_and_segments()
    assert job.status == "failed" and f"no space left on the device of {home}" in job.error
    assert [s.status for s in segs[:2]] == ["rendered", "rendered"]
    assert {s.status for s in segs[2:]} == {"pending"}
    assert not (out / "video.mp4").exists() and partial_files(home) == []
    for blob in (home / "assets").rglob("*.mp4"):  # every stored segment is whole
        assert sha256_file(blob) == blob.stem

    filler[0].unlink()  # space freed: the re-run renders only what is missing
    renderer = counting()
    result, lines = run_cli(str(script), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert renderer.calls == list(range(2, len(segs)))
    assert_records_complete(len(segs))


def test_disk_full_while_stitching(tmp_path, tmpfs, db_outside, counting):
    out = tmpfs("out", "4m")
    script = short_script(tmp_path)
    filler: list[Path] = []
    with at("stitch", 0, lambda: filler.append(fill(out))):
        result, lines = run_cli(str(script), "--out", str(out))
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"failed: DiskFull: no space left on the device of {out}")
    job, segs = job_and_segments()
    assert job.status == "failed" and str(out) in job.error
    assert {s.status for s in segs} == {"rendered"}  # every segment is kept
    assert not (out / "video.mp4").exists() and partial_files(out) == []

    filler[0].unlink()
    renderer = counting()
    result, lines = run_cli(str(script), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert renderer.calls == []  # nothing rendered again: only the stitch was missing
    assert_records_complete(len(segs))
    assert (out / "video.mp4").stat().st_size > 0


# --- the database ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://avatar:secret@127.0.0.1:1/jobs", "sqlite:////proc/no-such-dir/jobs.db"],
    ids=["postgres-refused", "sqlite-unopenable"],
)
def test_an_unreachable_database_is_one_line_before_any_work(
    fresh_home, tmp_path, monkeypatch, url
):
    monkeypatch.setenv("AVATAR_FLOW_DATABASE_URL", url)
    get_settings(refresh=True)
    out = tmp_path / "out"
    result, lines = run_cli(str(short_script(tmp_path)), "--out", str(out))
    assert result.exit_code == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("failed: DatabaseUnavailable: cannot open the database ")
    assert "secret" not in result.stderr  # the password is never printed
    assert url.replace(":secret", ":***") in lines[0]
    assert not out.exists() and not (fresh_home / "cache").exists()  # no work was done


def test_a_database_locked_mid_job_is_waited_for(fresh_home, tmp_path, counting):
    """Another connection holds SQLite's write lock for a while during rendering: the job
    waits for it (busy timeout) instead of failing, and its records end complete."""
    db = Path(get_settings().db_url.removeprefix("sqlite:///"))
    held = threading.Event()
    hold_seconds = 2.0

    def lock_for_a_while() -> None:
        conn = sqlite3.connect(db, timeout=30, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        held.set()
        time.sleep(hold_seconds)
        conn.execute("COMMIT")
        conn.close()

    def start_lock() -> None:
        threading.Thread(target=lock_for_a_while, daemon=True).start()
        assert held.wait(10)

    script, out = short_script(tmp_path), tmp_path / "out"
    renderer = counting()
    start = time.monotonic()
    with at("render", 2, start_lock):
        result, _lines = run_cli(str(script), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert time.monotonic() - start >= hold_seconds
    _job, segs = job_and_segments()
    assert renderer.calls == list(range(len(segs)))  # each segment rendered once
    assert_records_complete(len(segs))


# --- signals, in-process ------------------------------------------------------------------------

STEPS = (("speech", 0), ("words", 0), ("plan", 0), ("render", 2), ("stitch", 0))


def ctrl_c() -> None:
    raise KeyboardInterrupt  # what Python's SIGINT handler raises in the main thread


def sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # Prefect's handler (then the CLI's) turns it around


@pytest.mark.parametrize(
    ("sig", "send", "extra"),
    [(signal.SIGINT, ctrl_c, " Press control C."), (signal.SIGTERM, sigterm, " Then terminate.")],
    ids=["ctrl-c", "sigterm"],
)
def test_each_signal_at_each_step_cancels_the_job_and_a_rerun_resumes(
    fresh_home, tmp_path, counting, sig, send, extra
):
    """Every step, both signals (tests/scale/test_faults_signals.py sends them from outside to
    a real process, one per step): one `cancelled:` line, exit 128+signal, the job cancelled
    with what finished kept, and the next run goes on from there."""
    script, out = short_script(tmp_path, extra), tmp_path / "out"
    for stage, done in STEPS:
        renderer = counting()
        with at(stage, done, send):
            result, lines = run_cli(str(script), "--out", str(out))
        assert result.exit_code == 128 + sig, (stage, result.output)
        assert len(lines) == 1 and lines[0].startswith(f"cancelled: {sig.name}"), result.stderr
        job, segs = job_and_segments()
        assert (job.status, job.error) == ("cancelled", f"cancelled by {sig.name}"), stage
        if stage == "render":
            assert renderer.calls == [0, 1] and [s.status for s in segs[:2]] == ["rendered"] * 2
        if stage == "stitch":
            assert renderer.calls == list(range(2, len(segs)))  # the rest, the first two kept
            assert not (out / "video.mp4").exists()
    renderer = counting()
    result, _lines = run_cli(str(script), "--out", str(out))
    assert result.exit_code == 0 and renderer.calls == [], result.output
    assert_records_complete(len(segs))
