"""Latent continuity over a minute (issue 20): `avatar-flow run` of a 64-s talk with a tiny
ActAvatar checkpoint hands latents between every pair of segments (read from the segment
cache), resumes after SIGKILL with only the missing segments, and makes the same video bytes
as an uninterrupted run.

The CLI runs as a real process against the session's Prefect server and is stopped through
the test hook AVATAR_FLOW_TEST_PAUSE_AT (flows.runtime.progress), as in test_faults_signals.
Toy size on CPU (128x128, one step, one thread: renders are deterministic).
"""

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scale_support import REPO, clean_env
from support import EXAMPLES, write_script

from flows.video.render import load_tail_latents, tail_latents_handoff
from flows.video.segments import latent_handoff
from flows.video.steps import CONTINUITY_RECORD

pytestmark = pytest.mark.slow

# About 64 s of speech, no sentence repeated (Whisper falls back to sampling, which is not
# reproducible, on text that compresses too well).
TALK = (
    "Welcome to a longer talk about how our studio turns a written script into a video. "
    "First we read the script, then a voice speaks every line, and an aligner finds when "
    "each word starts and ends. A planner chooses gestures for the speaker, such as a wave "
    "at the start or a count on the fingers when a list begins. The timeline is cut into "
    "short pieces of at most five seconds, always in a pause, never inside a word. Each "
    "piece is painted by a diffusion model, and the next piece starts where the last one "
    "stopped, so the face, the light and the colours carry on without a jump. Early versions "
    "passed decoded pictures across every seam, and after a minute the skin slowly turned "
    "orange. Today the model hands its own latent frames to the next piece instead. If the "
    "machine stops halfway, nothing is lost: the finished pieces wait in a cache on disk, "
    "and the next run paints only what is missing. Reviewers open a preview in their "
    "browser. They drag an action along the timeline. Then they press render once more. "
    "Music plays softly under the voice. A logo sits in one corner. Captions may be burned "
    "into the picture. "
    "Thank you for listening, and see you in the next episode of our small production diary."
)
KILL_AFTER = 6  # segments rendered before the kill


def _cli(env: dict[str, str], script: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", str(script), "--out", str(out)]
    return subprocess.Popen(
        [*cmd, "--json", *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _recording(dest: Path) -> Path:
    """The talk read by Piper without its sampling noise: the same samples on every run (a
    voice sampled afresh could make the aligner lose a sentence and the job refuse a word
    longer than a segment)."""
    import wave

    from piper import SynthesisConfig

    from flows.video.speech import PIPER_VOICES, load_piper

    with wave.open(str(dest), "wb") as wf:
        load_piper(PIPER_VOICES[0]).synthesize_wav(
            TALK, wf, syn_config=SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
        )
    return dest


def _segments(home: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(home / "avatar-flow.db") as conn:
        return conn.execute(
            'select "index", status, cache_key from segment order by "index"'
        ).fetchall()


def test_a_minute_hands_latents_on_and_resumes_to_the_same_bytes(tmp_path, prefect_server):
    from generator.presets import build_tiny_pipeline

    ckpt = tmp_path / "tiny"
    build_tiny_pipeline(ckpt)
    script = write_script(
        tmp_path,
        TALK,
        audio=str(_recording(tmp_path / "talk.wav")),
        name="minute.md",
        title=f"minute {tmp_path.name}",
        avatar=str(EXAMPLES / "presenter.png"),
        resolution="128x128",
        fps=12,
    )
    home, out, flag = tmp_path / "home", tmp_path / "out", tmp_path / "pause"
    env = clean_env(
        AVATAR_FLOW_HOME=str(home),
        PREFECT_API_URL=prefect_server,
        PREFECT_HOME=str(tmp_path / "prefect-client"),
        PYTHONPATH=str(REPO),
        OMP_NUM_THREADS="1",
    )
    args = ("--renderer", "actavatar", "--checkpoint", str(ckpt), "--steps", "1")

    # 1. Killed (SIGKILL: no handler runs) after KILL_AFTER segments.
    proc = _cli(
        {
            **env,
            "AVATAR_FLOW_TEST_PAUSE_AT": f"render:{KILL_AFTER}",
            "AVATAR_FLOW_TEST_PAUSE_FILE": str(flag),
        },
        script,
        out,
        *args,
    )
    deadline = time.monotonic() + 400
    while not flag.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"never paused: {proc.communicate()[1][-3000:]}")
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    statuses = [s for _, s, _ in _segments(home)]
    assert statuses[:KILL_AFTER] == ["rendered"] * KILL_AFTER
    assert set(statuses[KILL_AFTER:]) == {"pending"} and not (out / "video.mp4").exists()

    # 2. Resumed: only the missing segments render, from the cached latents.
    proc = _cli(env, script, out, *args)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    report = json.loads(stdout)
    total = report["segments"]
    assert report["duration"] >= 60 and total >= 13
    assert (
        report["segments_cached"] == KILL_AFTER
        and report["segments_rendered"] == total - KILL_AFTER
    )
    assert report["continuity"] == {"mode": "latent", "frames": 1, "color_anchor": False}
    assert json.loads((out / "report.json").read_text())["continuity"]["mode"] == "latent"

    # 3. The segment cache: every segment after the first started from the previous one's
    # tail latents file (the same bytes), whose latents end on a shown frame.
    cache = home / "cache" / "segments"
    rows = _segments(home)
    assert [s for _, s, _ in rows] == ["cached"] * KILL_AFTER + ["rendered"] * (total - KILL_AFTER)
    records = [json.loads((cache / key / CONTINUITY_RECORD).read_text()) for _, _, key in rows]
    assert records[0]["input"] == [] and {r["mode"] for r in records} == {"latent"}
    for (_, _, prev_key), rec in zip(rows, records[1:], strict=False):
        tail = cache / prev_key / "tail_latents.safetensors"
        assert [i["path"] for i in rec["input"]] == [str(tail)], rec
        meta, shape = tail_latents_handoff(tail), load_tail_latents(tail).shape
        h = latent_handoff(meta["shown_frames"], 1)
        assert shape[1] == h.count == 1 and meta["first_latent"] == h.first
        assert rec["overlap"] == h.overlap == meta["next_overlap"]
        assert not list((cache / prev_key).glob("tail/*.png"))  # no decoded hand-off
    # `jobs show` says which mode ran
    shown = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "jobs", "show", report["job_id"]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0 and "continuity: latent (1 frames)" in shown.stdout

    # 4. An uninterrupted render of every segment (its records and cache folders removed;
    # speech, words and plan stay cached, so the inputs are the same) makes the same video.
    for record in (tmp_path / "prefect-client" / "storage").glob("render-segment-*"):
        record.unlink()
    for _, _, key in rows:
        shutil.rmtree(cache / key)
    proc = _cli(env, script, out, *args)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    fresh = json.loads(stdout)
    assert fresh["segments_rendered"] == total and fresh["sha256"] == report["sha256"]
