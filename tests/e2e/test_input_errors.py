"""One failure rule: every input error the code can raise reaches the terminal as one line
(`error: FILE[:LINE]: field 'F': reason`), exit code 2, no traceback — whether it is found by
the checks before the run or inside a Prefect task (a recorded audio file that is pure silence);
the SDK raises the same line and a batch report records it."""

import json
import math
import struct
import subprocess
import sys
import wave
from pathlib import Path

import pytest
from PIL import Image
from support import EXAMPLES, REPO, write_script
from typer.testing import CliRunner

from flows.runtime.settings import get_settings
from orchestrator.cli import app


def _wav(path: Path, seconds: float, amplitude: float = 0.3, rate: int = 16000) -> Path:
    n = int(seconds * rate)
    samples = (int(amplitude * 32767 * math.sin(2 * math.pi * 220 * i / rate)) for i in range(n))
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return path


def _checkpoint(folder: Path, rope_max_seq_len: int = 32) -> Path:
    """The config files of a saved pipeline (what the input checks read; no weights)."""
    (folder / "transformer").mkdir(parents=True)
    (folder / "vae").mkdir()
    (folder / "model_index.json").write_text("{}")
    (folder / "transformer" / "config.json").write_text(
        json.dumps({"rope_max_seq_len": rope_max_seq_len, "patch_size": [1, 2, 2]})
    )
    (folder / "vae" / "config.json").write_text(
        json.dumps({"scale_factor_spatial": 16, "scale_factor_temporal": 4})
    )
    return folder


def _files(tmp: Path) -> dict[str, Path]:
    small = tmp / "small.png"
    Image.new("RGB", (200, 180)).save(small)
    (tmp / "text.png").write_text("not an image")
    (tmp / "talk.xyz").write_bytes(b"\0" * 100)
    (tmp / "broken.wav").write_bytes(b"RIFF garbage")
    return {
        "small": small,
        "short": _wav(tmp / "short.wav", 0.1),
        "two": _wav(tmp / "two.wav", 2.0),
        "ckpt": _checkpoint(tmp / "ckpt"),
    }


# (id, front matter, body, extra CLI args, environment, expected fragment, field)
CASES = [
    ("yaml", None, "---\ntitle: ok\nstyle: [unclosed\n---\nHi.\n", [], {}, "bad YAML", None),
    ("unclosed", None, "---\ntitle: ok\nHi.\n", [], {}, "never closed", None),
    ("mapping", None, "---\n- a\n---\nHi.\n", [], {}, "must be a mapping", None),
    ("unknown-key", {"avatr": "a.png"}, "Hi.", [], {}, "did you mean 'avatar'", "avatr"),
    ("resolution", {"resolution": "big"}, "Hi.", [], {}, "WIDTHxHEIGHT", "resolution"),
    ("res-16", {"resolution": "1000x701"}, "Hi.", [], {}, "multiples of 16", "resolution"),
    ("fps", {"fps": "fast"}, "Hi.", [], {}, "whole number", "fps"),
    ("seed", {"seed": "-1"}, "Hi.", [], {}, "non-negative", "seed"),
    ("seg", {"segment_seconds": "30"}, "Hi.", [], {}, "between 1 and 10", "segment_seconds"),
    ("title", {"title": "[a, b]"}, "Hi.", [], {}, "expected text", "title"),
    ("path", {"avatar": "[1, 2]"}, "Hi.", [], {}, "expected a file path", "avatar"),
    ("voice-type", {"voice": "3"}, "Hi.", [], {}, "expected a voice name", "voice"),
    ("both", {"voice": "piper", "audio": "two.wav"}, "Hi.", [], {}, "not both", "voice"),
    ("nothing", {}, "# Only a heading\n", [], {}, "nothing to say", None),
    ("empty-cue", {}, "Hi [[ ]] there.", [], {}, "empty cue", "cue"),
    ("unbalanced", {}, "Hi [[waves there.", [], {}, "unbalanced cue", "cue"),
    ("cue-text", {}, "Hello there [[points to the chart]]", [], {}, "[[points to the chart]]", "cue"),
    ("avatar-missing", {"avatar": "none.png"}, "Hi.", [], {}, "avatar image not found", "avatar"),
    ("avatar-small", {"avatar": "small.png"}, "Hi.", [], {}, "at least 256 px", "avatar"),
    ("avatar-text", {"avatar": "text.png"}, "Hi.", [], {}, "not an image", "avatar"),
    ("audio-missing", {"audio": "none.wav"}, "", [], {}, "audio file not found", "audio"),
    ("audio-type", {"audio": "talk.xyz"}, "", [], {}, "unsupported audio type", "audio"),
    ("audio-broken", {"audio": "broken.wav"}, "", [], {}, "not readable audio", "audio"),
    ("audio-short", {"audio": "short.wav"}, "", [], {}, "too short", "audio"),
    ("audio-long", {"audio": "two.wav"}, "", [], {"MAX_AUDIO_SECONDS": "1"}, "over the limit", "audio"),
    ("words-long", {}, "one two three four five six seven eight nine ten.", [],
     {"MAX_AUDIO_SECONDS": "1"}, "would take at least", "text"),
    ("voice", {"voice": "klingon"}, "Hi.", [], {}, "unknown voice", "voice"),
    ("piper-voice", {"voice": "piper:nobody"}, "Hi.", [], {}, "unknown Piper voice", "voice"),
    ("openai-key", {}, "Hi.", ["--voice", "openai:nova"], {}, "OPENAI_API_KEY", "voice"),
    ("renderer", {}, "Hi.", ["--renderer", "magic"], {}, "unknown renderer", "renderer"),
    ("planner", {}, "Hi.", ["--planner", "oracle"], {}, "unknown planner", "planner"),
    ("mllm", {}, "Hi.", ["--planner", "mllm"], {}, "AVATAR_FLOW_LLM_BASE_URL", "planner"),
    ("continuity", {}, "Hi.", ["--continuity", "4"], {}, "0 or 1, 5, 9", "continuity"),
    ("steps", {}, "Hi.", ["--steps", "0"], {}, "between 1 and 200", "steps"),
    ("segment", {}, "Hi.", ["--segment-seconds", "0"], {}, "above 0", "segment_seconds"),
    ("webhook", {}, "Hi.", ["--webhook", "ftp://x"], {}, "http", "webhook"),
    ("no-ckpt", {}, "Hi.", ["--renderer", "actavatar"], {}, "model_index.json", "checkpoint"),
    ("res-32", {"resolution": "144x144"}, "Hi.", ["--renderer", "actavatar", "--checkpoint", "{ckpt}"],
     {}, "multiples of 32", "resolution"),
    ("ckpt-size", {"resolution": "1280x704"}, "Hi.", ["--renderer", "actavatar", "--checkpoint", "{ckpt}"],
     {}, "at most 1024x1024 pixels", "checkpoint"),
    ("ckpt-frames", {"resolution": "256x256", "segment_seconds": "6"}, "Hi.",
     ["--renderer", "actavatar", "--checkpoint", "{ckpt}"], {}, "149 frames > 125", "checkpoint"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("front", "body", "args", "env", "fragment", "field"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_every_input_error_is_one_line_exit_2(
    tmp_path, fresh_home, monkeypatch, front, body, args, env, fragment, field
):
    files = _files(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(f"AVATAR_FLOW_{key}", value)
    get_settings(refresh=True)
    if front is None:
        script = tmp_path / "script.md"
        script.write_text(body)
    else:
        script = write_script(tmp_path, body, **front)
    args = [a.format(**files) for a in args]
    result = CliRunner().invoke(app, ["run", str(script), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: ") and fragment in line, line
    assert "Traceback" not in result.stderr and result.stdout == ""
    if field:
        assert f"field '{field}'" in line
    assert not (tmp_path / "o").exists()  # nothing written before the inputs are good


def test_missing_script_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["run", str(tmp_path / "nope.md")])
    assert result.exit_code == 2 and result.stderr.strip().endswith("script not found")


@pytest.mark.slow
def test_an_input_error_inside_a_task_is_the_same_line_for_cli_sdk_and_batch(tmp_path):
    """Pure silence passes the cheap checks (readable, long enough) and is found by the speech
    task: the CLI prints its one line (exit 2), the task's traceback goes to the job's log."""
    silent = _wav(tmp_path / "silence.wav", 2.0, amplitude=0.0)
    script = write_script(tmp_path, "", name="quiet.md", audio=str(silent))
    out = tmp_path / "o"
    env = {
        k: v for k, v in __import__("os").environ.items() if not k.startswith("AVATAR_FLOW_")
    } | {"AVATAR_FLOW_HOME": str(tmp_path / "home"), "PREFECT_HOME": str(tmp_path / "prefect")}
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", str(script), "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = lines[0]
    assert line.startswith(f"error: {script}: field 'audio': silence.wav: the audio is silent")
    log = (out / "job.log").read_text()
    assert "Traceback" in log and "the audio is silent" in log

    # The SDK raises the same line; the batch report records it.
    import os

    from flows.runtime.errors import InputError
    from orchestrator import Studio

    old = {k: os.environ.get(k) for k in ("AVATAR_FLOW_HOME",)}
    try:
        studio = Studio(home=tmp_path / "home2")
        with pytest.raises(InputError) as e:
            studio.produce(script, out=tmp_path / "o2")
        assert f"error: {e.value}" == line
        (row,) = studio.produce_batch([script], out_root=tmp_path / "b")
        assert not row.ok and f"error: {row.error}" == line
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings(refresh=True)


def test_example_scripts_pass_the_checks(fresh_home):
    """The fixtures above are errors, not the checks being too strict."""
    result = CliRunner().invoke(app, ["plan", "--help"])
    assert result.exit_code == 0
    from flows.video.inputs import prepare_inputs
    from flows.video.options import JobOptions

    assert prepare_inputs(EXAMPLES / "hello.md", JobOptions(), get_settings()).input_key
