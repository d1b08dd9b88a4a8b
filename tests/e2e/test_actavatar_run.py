"""`avatar-flow run --renderer actavatar --checkpoint DIR` with a tiny saved ActAvatar pipeline:
the real diffusion path end to end (segments chained by their tails), at toy size on CPU."""

import json

import pytest
from support import EXAMPLES, write_script
from test_produce import _run_cli

from flows.media import probe

pytestmark = pytest.mark.slow


def test_actavatar_renderer_end_to_end(tmp_path):
    from generator.presets import build_tiny_pipeline

    ckpt = tmp_path / "tiny-pipeline"
    build_tiny_pipeline(ckpt)
    assert (ckpt / "model_index.json").is_file()
    script = write_script(tmp_path, "Hello there! [[waves hello with the right hand]] This is a tiny "
                          "model, rendering two short segments.", avatar=str(EXAMPLES / "presenter.png"),
                          resolution="128x128", segment_seconds=1.5)
    home, out = tmp_path / "home", tmp_path / "out"
    args = ["run", str(script), "--out", str(out), "--renderer", "actavatar", "--checkpoint",
            str(ckpt), "--steps", "2", "--json"]
    proc = _run_cli(home, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["segments"] >= 2 and report["segments_rendered"] == report["segments"]
    info, audio = probe(out / "video.mp4"), probe(out / "audio.wav")
    assert (info.width, info.height) == (128, 128) and info.has_audio
    assert abs(info.video_frames / info.fps - audio.duration) <= 1 / info.fps + 1e-6
    again = json.loads(_run_cli(home, *args).stdout)
    assert again["segments_rendered"] == 0

    bad = write_script(tmp_path, "Hello there.", name="bad.md", resolution="144x144")
    proc = _run_cli(home, "run", str(bad), "--renderer", "actavatar", "--checkpoint", str(ckpt))
    assert proc.returncode == 2 and "multiples of 32" in proc.stderr
