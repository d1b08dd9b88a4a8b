"""End to end on the short example: real Piper voice, real Whisper tiny.en, the animatic,
Prefect's ephemeral API, SQLite records."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import EXAMPLES, REPO

from flows.video.media import probe
from flows.video.script import parse_script
from storage import sha256_file

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "orchestrator.cli"]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AVATAR_FLOW_"))}
    env.update(
        AVATAR_FLOW_HOME=str(home),
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return env


def _run_cli(
    home: Path, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        cwd=REPO,
        env={**_env(home), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e")
    out = home / "out"
    proc = _run_cli(home, "run", str(EXAMPLES / "hello.md"), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return home, out, json.loads(proc.stdout)


def _norm(w: str) -> str:
    return re.sub(r"\W", "", w.lower())


def test_outputs_exist_with_exact_names(first_run):
    _home, out, report = first_run
    names = {
        "video.mp4",
        "audio.wav",
        "words.json",
        "plan.json",
        "captions.srt",
        "captions.vtt",
        "timeline.png",
        "poster.png",  # finishing (no chapters.txt: hello.md has no headings)
    }
    assert names <= {p.name for p in out.iterdir()}
    # Written with the umask's mode (a web server or a colleague may read them), not 0600.
    from storage.assets import current_umask

    for name in names:
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~current_umask(), name
    assert {Path(p).name for p in report["outputs"].values()} == names
    assert report["segments"] >= 2 and report["segments_rendered"] == report["segments"]


def test_video_has_both_streams_and_lasts_as_long_as_the_audio(first_run):
    _home, out, _report = first_run
    info = probe(out / "video.mp4")
    assert info.has_video and info.has_audio
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert (info.width, info.height) == (1280, 704)
    audio = probe(out / "audio.wav")
    assert abs(info.video_frames / info.fps - audio.duration) <= 1 / info.fps + 1e-6


def test_words_are_recovered_in_order_and_phases_sit_on_word_boundaries(first_run):
    _home, out, _report = first_run
    words = json.loads((out / "words.json").read_text())
    script_words = parse_script(EXAMPLES / "hello.md").words
    assert [_norm(w["word"]) for w in words] == [_norm(w) for w in script_words]
    timed = [w for w in words if not w["interpolated"]]
    assert len(timed) >= 0.9 * len(script_words)
    assert all(w["timing"].startswith("faster-whisper:") for w in timed)
    for a, b in zip(words, words[1:]):
        assert a["start"] <= a["end"] <= b["start"]
    plan = json.loads((out / "plan.json").read_text())
    starts, ends = {w["start"] for w in words}, {w["end"] for w in words}
    assert plan["phases"], "the example has a cue and greeting/closing words"
    assert any(p["source"] == "cue" for p in plan["phases"])
    for p in plan["phases"]:
        assert p["start"] in starts and p["end"] in ends
        assert (
            p["start"] == words[p["first_word"]]["start"]
            and p["end"] == words[p["last_word"]]["end"]
        )


def test_segments_and_records_match_the_files(first_run):
    home, out, report = first_run
    db = home / "avatar-flow.db"
    import sqlite3

    con = sqlite3.connect(db)
    segs = con.execute(
        'SELECT start, end, num_frames, status FROM segment WHERE job_id=? ORDER BY "index"',
        (report["job_id"],),
    ).fetchall()
    words = json.loads((out / "words.json").read_text())
    assert len(segs) == report["segments"]
    for start, end, frames, status in segs:
        assert end - start <= 5.0 + 1e-9 and frames <= 125 and status == "rendered"
        for w in words:
            assert not (w["start"] < end < w["end"]), f"cut at {end} inside {w}"
    assets = con.execute(
        "SELECT kind, path, sha256, bytes FROM asset WHERE job_id=?", (report["job_id"],)
    ).fetchall()
    assert len(assets) == 8
    for _kind, path, sha, size in assets:
        assert sha256_file(Path(path)) == sha and Path(path).stat().st_size == size
    (status,) = con.execute("SELECT status FROM job WHERE id=?", (report["job_id"],)).fetchone()
    assert status == "done"


def test_second_run_renders_nothing(first_run):
    home, out, report = first_run
    before = sha256_file(out / "video.mp4")
    proc = _run_cli(home, "run", str(EXAMPLES / "hello.md"), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads(proc.stdout)
    assert again["job_id"] == report["job_id"]
    assert again["segments_rendered"] == 0 and again["segments_cached"] == report["segments"]
    assert sha256_file(out / "video.mp4") == before


def test_jobs_and_doctor_commands(first_run):
    home, _out, report = first_run
    proc = _run_cli(home, "jobs", "--json")
    jobs = json.loads(proc.stdout)
    assert [(j["id"], j["status"]) for j in jobs] == [(report["job_id"], "done")]
    proc = _run_cli(home, "jobs")
    assert proc.returncode == 0 and report["job_id"] in proc.stdout
    proc = _run_cli(home, "jobs", "show", report["job_id"], "--json")
    details = json.loads(proc.stdout)
    assert details["job"]["status"] == "done" and len(details["assets"]) == 8
    proc = _run_cli(home, "jobs", "show", "nope")
    assert proc.returncode == 2 and "no job" in proc.stderr
    proc = _run_cli(home, "doctor", "--json")
    doc = json.loads(proc.stdout)
    assert doc["models"]["whisper (ASR)"].startswith("tiny.en")
    assert "en_US-joe-medium" in doc["models"]["piper voice"]
    assert doc["hardware"]["gpu"].startswith("none")


def test_bad_input_exits_2_with_one_line_and_leaves_no_job(tmp_path):
    script = tmp_path / "s.md"
    script.write_text("---\navatr: x.png\n---\nHello there.\n")
    proc = _run_cli(tmp_path / "home", "run", str(script), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "did you mean 'avatar'" in lines[0] and "s.md" in lines[0]
    assert not (tmp_path / "home" / "avatar-flow.db").exists()
    assert not (tmp_path / "o").exists()
