"""`avatar-flow run --renderer actavatar --checkpoint DIR` with a tiny saved ActAvatar pipeline:
the real diffusion path end to end (segments chained by their tails), at toy size on CPU."""

import json
from pathlib import Path

import pytest
from support import EXAMPLES, write_script
from test_produce import _run_cli

from flows.video.media import probe

pytestmark = pytest.mark.slow


def test_actavatar_renderer_end_to_end(tmp_path):
    from generator.presets import build_tiny_pipeline

    ckpt = tmp_path / "tiny-pipeline"
    build_tiny_pipeline(ckpt)
    assert (ckpt / "model_index.json").is_file()
    script = write_script(
        tmp_path,
        "Hello there! [[waves hello with the right hand]] This is a tiny "
        "model, rendering two short segments.",
        avatar=str(EXAMPLES / "presenter.png"),
        resolution="128x128",
        segment_seconds=1.5,
    )
    home, out = tmp_path / "home", tmp_path / "out"
    args = [
        "run",
        str(script),
        "--out",
        str(out),
        "--renderer",
        "actavatar",
        "--checkpoint",
        str(ckpt),
        "--steps",
        "2",
        "--json",
    ]
    proc = _run_cli(home, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["segments"] >= 2 and report["segments_rendered"] == report["segments"]
    info, audio = probe(out / "video.mp4"), probe(out / "audio.wav")
    assert (info.width, info.height) == (128, 128) and info.has_audio
    assert abs(info.video_frames / info.fps - audio.duration) <= 1 / info.fps + 1e-6
    # the tiny preset has no time-aware phases: the job says once that the windows were dropped
    from generator.transformer_actavatar import PHASE_WINDOWS_WARNING

    assert report["warnings"] == [PHASE_WINDOWS_WARNING]
    assert proc.stderr.count("warning:") == 1 and "ignores the phase windows" in proc.stderr
    assert json.loads((out / "report.json").read_text())["warnings"] == [PHASE_WINDOWS_WARNING]
    shown = _run_cli(home, "jobs", "show", report["job_id"])
    assert shown.returncode == 0 and shown.stdout.count("ignores the phase windows") == 1
    again = json.loads(_run_cli(home, *args).stdout)
    assert again["segments_rendered"] == 0
    assert again["warnings"] == [PHASE_WINDOWS_WARNING]  # cached segments still say it

    # Continuing from 5 tail frames (2 clean latents) instead of 1: more overlap, same length.
    proc = _run_cli(
        home, *args[:-1], "--continuity", "5", "--out", str(tmp_path / "out5"), "--json"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    five = json.loads(proc.stdout)
    # Only the first segment can be reused: it has no predecessor, so continuity cannot change it.
    assert five["segments"] >= 2 and five["segments_rendered"] >= five["segments"] - 1
    info5 = probe(tmp_path / "out5" / "video.mp4")
    assert abs(info5.video_frames / info5.fps - audio.duration) <= 1 / info5.fps + 1e-6

    # Latent continuity is the default: each segment after the first started from the previous
    # one's tail latents (its continuity record in the segment cache names the file).
    assert report["continuity"] == {"mode": "latent", "frames": 1, "color_anchor": False}
    cache = home / "cache" / "segments"
    latent_records = [json.loads(p.read_text()) for p in cache.glob("*/continuity.json")]
    assert {r["mode"] for r in latent_records} == {"latent"}
    assert all(
        [Path(i["path"]).name for i in r["input"]] == ["tail_latents.safetensors"]
        for r in latent_records
        if r["segment"] > 0
    )

    # Pixels mode still works: the decoded tail as PNGs, encoded again; a new render key.
    proc = _run_cli(
        home, *args[:-1], "--continuity-mode", "pixels", "--out", str(tmp_path / "px"), "--json"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    pixels = json.loads(proc.stdout)
    assert pixels["continuity"]["mode"] == "pixels"
    assert pixels["segments_rendered"] == pixels["segments"]  # the mode is in every render key
    records = [json.loads(p.read_text()) for p in cache.glob("*/continuity.json")]
    later = [r for r in records if r["mode"] == "pixels" and r["segment"] > 0]
    assert later and all(
        [Path(i["path"]).name for i in r["input"]] == ["tail_0.png"] for r in later
    )
    info_px = probe(tmp_path / "px" / "video.mp4")
    assert info_px.video_frames == info.video_frames  # the same cuts, the same length
    assert json.loads((tmp_path / "px" / "report.json").read_text())["continuity"] == {
        "mode": "pixels",
        "frames": 1,
        "color_anchor": False,
    }

    bad = write_script(tmp_path, "Hello there.", name="bad.md", resolution="144x144")
    proc = _run_cli(home, "run", str(bad), "--renderer", "actavatar", "--checkpoint", str(ckpt))
    assert proc.returncode == 2 and "multiples of 32" in proc.stderr


def test_a_checkpoint_too_small_for_the_script_is_refused_before_speech(tmp_path):
    """The tiny preset's RoPE table (rope_max_seq_len 32, patch 2, VAE stride 16) positions at
    most 1024 pixels per side: a 1280x704 script is one line naming the checkpoint and its limit,
    exit 2, before any speech is synthesised (issue 10, defect 5)."""
    from generator.presets import build_tiny_pipeline

    ckpt = tmp_path / "tiny-pipeline"
    build_tiny_pipeline(ckpt)
    script = write_script(tmp_path, "Hello there, this is too wide.", resolution="1280x704")
    home = tmp_path / "home"
    proc = _run_cli(home, "run", str(script), "--renderer", "actavatar", "--checkpoint", str(ckpt))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert str(ckpt) in lines[0] and "width 1280 > 1024" in lines[0]
    assert "at most 1024x1024 pixels" in lines[0] and "field 'checkpoint'" in lines[0]
    assert not (home / "cache" / "speech").exists()  # refused before speech synthesis
