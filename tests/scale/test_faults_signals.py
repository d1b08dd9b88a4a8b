"""`avatar-flow run` stopped by a signal at each step (speech, words, plan, render, stitch).

- SIGTERM and Ctrl-C (SIGINT): one `cancelled:` line, exit 128+signal, the job marked
  cancelled, what finished kept; the next run resumes from there.
- SIGKILL (no handler runs at all): the next run resumes with only the missing work, and the
  final video is the one an uninterrupted run makes (the same bytes as a `--force` re-run).

The CLI runs as a real process against the session's Prefect server (no ephemeral server to
start or to leave behind). It stops at a step through the test hook
AVATAR_FLOW_TEST_PAUSE_AT (flows.runtime.progress), which waits while the pause file exists.
"""

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_support import TEXT
from scale_support import REPO, clean_env
from support import write_script

pytestmark = pytest.mark.slow

STEPS = ("speech", "words", "plan", "render:2", "stitch")


def _interruptible() -> None:
    """The child starts with SIGINT at its default, as a foreground command whose terminal
    sends Ctrl-C: a suite started in the background (`cmd &` in a script, some CI runners)
    ignores SIGINT, children inherit that, and Python then installs no KeyboardInterrupt
    handler — the run would never see the Ctrl-C this test sends (seen: paused at `words`,
    300 s after SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Runner:
    """`avatar-flow run` of one script into one home and output folder, as a process."""

    def __init__(self, root: Path, prefect_url: str, name: str, **front: str) -> None:
        self.home, self.out, self.flag = root / f"{name}-home", root / f"{name}-out", root / "p"
        self.script = write_script(
            root,
            TEXT,
            name=f"{name}.md",
            title=f"{name} {root.name}",  # no other test's cached renders
            resolution="256x144",
            fps=25,
            segment_seconds=1.5,
            **front,
        )
        self.env = clean_env(
            AVATAR_FLOW_HOME=str(self.home),
            PREFECT_API_URL=prefect_url,
            PREFECT_HOME=str(root / "prefect-client"),
            PYTHONPATH=str(REPO),
            PYTHONFAULTHANDLER="1",
        )

    def start(self, *extra: str, pause: str | None = None) -> subprocess.Popen:
        env = dict(self.env)
        if pause:
            self.flag.unlink(missing_ok=True)
            env.update(AVATAR_FLOW_TEST_PAUSE_AT=pause, AVATAR_FLOW_TEST_PAUSE_FILE=str(self.flag))
        cmd = [sys.executable, "-m", "orchestrator.cli", "run", str(self.script)]
        return subprocess.Popen(
            [*cmd, "--out", str(self.out), "--json", *extra],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_interruptible,
        )

    def stop_at(self, step: str, sig: int) -> tuple[int, str]:
        """Run until `step`, send `sig`; (exit code, stderr)."""
        proc = self.start(pause=step)
        deadline = time.monotonic() + 300
        while not self.flag.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                _out, err = proc.communicate()
                pytest.fail(f"never paused at {step}: {err[-2000:]}")
            time.sleep(0.05)
        assert self.flag.read_text().strip() == (step if ":" in step else f"{step}:0")
        proc.send_signal(sig)
        try:
            # the flow's cancellation hooks talk to the session's Prefect server, which a busy
            # suite can slow down: a generous limit, and a stack dump when even that passes
            _out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack
            _out, err = proc.communicate(timeout=60)
            pytest.fail(
                f"{signal.Signals(sig).name} at {step}: still running after 300 s\n{err[-6000:]}"
            )
        return proc.returncode, err

    def finish(self, *extra: str) -> dict:
        proc = self.start(*extra)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        return json.loads(out)

    def db(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.home / "avatar-flow.db") as conn:
            return conn.execute(sql).fetchall()

    def job(self) -> tuple[str, str | None]:
        (row,) = self.db("select status, error from job")
        return row

    def segments(self) -> list[str]:
        return [s for (s,) in self.db('select status from segment order by "index"')]

    def speech_files(self) -> dict[str, float]:
        return {str(p): p.stat().st_mtime_ns for p in (self.home / "cache" / "speech").rglob("*")}


def test_sigterm_and_ctrl_c_at_each_step_cancel_the_job_and_keep_its_work(tmp_path, prefect_server):
    run = Runner(tmp_path, prefect_server, "cancel")
    signals = [signal.SIGTERM, signal.SIGINT] * 3
    for step, sig in zip(STEPS, signals, strict=False):
        code, err = run.stop_at(step, sig)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 128 + sig, (step, code, err[-3000:])
        assert len(lines) == 1 and lines[0].startswith(f"cancelled: {sig.name}"), (step, err)
        assert run.job() == ("cancelled", f"cancelled by {sig.name}"), step
        if step == "render:2":
            assert run.segments()[:3] == ["rendered", "rendered", "pending"]
        if step == "stitch":  # every segment was kept; no video under its final name
            assert set(run.segments()) <= {"rendered", "cached"}
            assert not (run.out / "video.mp4").exists()
    report = run.finish()
    assert report["segments_rendered"] == 0  # everything but the stitch was done and kept
    assert run.job() == ("done", None)


def test_sigkill_at_each_step_resumes_with_only_the_missing_work(tmp_path, prefect_server):
    # Recorded speech: Piper samples its voice afresh on every synthesis, so only a given
    # recording makes an uninterrupted run's video comparable byte for byte.
    from flows.video.speech import synthesize_piper

    recording = synthesize_piper(TEXT, tmp_path / "talk.wav")
    run = Runner(tmp_path, prefect_server, "kill", audio=str(recording))
    speech: dict[str, float] = {}
    for step in STEPS:
        code, _err = run.stop_at(step, signal.SIGKILL)
        assert code == -signal.SIGKILL
        if step == "words":  # speech finished in this run: later runs must not redo it
            speech = run.speech_files()
        if step == "render:2":
            assert run.segments()[:3] == ["rendered", "rendered", "pending"]
        if step == "stitch":  # this run rendered the rest, reusing the first two
            segments = run.segments()
            assert segments[:2] == ["cached", "cached"]
            assert set(segments[2:]) == {"rendered"}
            assert not (run.out / "video.mp4").exists()
    report = run.finish()
    assert report["segments_rendered"] == 0 and report["segments_cached"] == report["segments"]
    assert speech and run.speech_files() == speech
    assert run.job() == ("done", None)
    resumed = report["sha256"]["video"]
    fresh = run.finish("--force")  # every step again from the recording
    assert fresh["segments_rendered"] == fresh["segments"]
    assert fresh["sha256"]["video"] == resumed
