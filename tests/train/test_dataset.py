"""The build-dataset flow on short talking videos the test makes (moving shapes + Piper voice)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

SPEECH = [
    "Hello and welcome. First, look at this chart here. It is really important. "
    "Second, we count two, three, four. Thank you.",
    "Hi there, everyone. This is the key point, and it is very crucial. Look here and see this "
    "detail. Now let me explain it slowly, one step at a time. Goodbye.",
]


def make_talking_video(
    folder: Path, name: str, text: str, size: tuple[int, int], seed: int
) -> Path:
    """A moving-square video at 25 fps whose length follows the Piper speech, muxed to AAC."""
    from flows.video.media import encode_frames, ffmpeg_exe
    from flows.video.speech import read_wav, synthesize_piper

    wav = synthesize_piper(text, folder / f"{name}.wav")
    samples, rate = read_wav(wav)
    seconds = len(samples) / rate
    n = int(seconds * 25)
    w, h = size
    rng = np.random.RandomState(seed)
    frames = np.empty((n, h, w, 3), dtype=np.uint8)
    y, x, vy, vx = h // 3, w // 3, 2, 3
    for i in range(n):
        if not 0 <= y + vy <= h - 20:
            vy = -vy
        if not 0 <= x + vx <= w - 20:
            vx = -vx
        y, x = y + vy, x + vx
        frames[i] = (30, 60, 90)
        frames[i, y : y + 20, x : x + 20] = rng.randint(150, 255, size=3)
    silent = encode_frames(frames, 25, folder / f"{name}-silent.mp4")
    out = folder / f"{name}.mp4"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(silent),
            "-i",
            str(wav),
            "-c:v",
            "copy",
            "-c:a",
            "aac",
            "-shortest",
            str(out),
        ],
        check=True,
    )
    silent.unlink()
    wav.unlink()
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    make_talking_video(folder, "talk-a", SPEECH[0], (96, 64), 0)
    make_talking_video(folder, "talk-b", SPEECH[1], (64, 64), 1)
    (folder / "notes.txt").write_text("not a video")
    return folder


@pytest.mark.slow
def test_build_dataset_twice(videos, tmp_path, fresh_home, monkeypatch, stage1_adapter):
    from sqlmodel import select

    from flows.runtime.settings import get_settings
    from flows.training.dataset import build_dataset
    from flows.training.options import DatasetOptions
    from flows.video.media import probe
    from generator.train.data import CachedClipDataset, read_index
    from storage import Clip, session_scope

    assert all(6 <= probe(v).duration <= 12 for v in videos.glob("*.mp4"))
    out = tmp_path / "ds"
    kwargs = dict(
        videos=str(videos),
        options=DatasetOptions(
            out=str(out),
            planner="rule",
            motion_threshold=0.005,
            encoders="preset:tiny",
            buckets=[[64, 64], [64, 96]],
            text_len=256,
            max_phases=8,
        ),
    )
    report = build_dataset(**kwargs)
    assert report["videos"] == 2 and report["videos_skipped"] == 0
    assert report["clips"] >= 2 and report["clips_new"] == report["clips"] == report["clips_cached"]
    assert report["transcribed"] == 2

    index = read_index(out / "cache")
    shapes = {tuple(m["latent_shape"]) for m in index["samples"].values()}
    assert shapes == {(48, 32, 4, 6), (48, 32, 4, 4)}  # 125 frames -> 32 latent frames; two buckets
    clip_dirs = sorted((out / "clips").iterdir())
    assert len(clip_dirs) == report["clips"]
    meta = json.loads((clip_dirs[0] / "clip.json").read_text())
    assert meta["num_frames"] == 125 and meta["fps"] == 25 and meta["caption"]
    assert meta["annotation"]["base"] and meta["words"], meta
    assert all(0.0 <= w["start"] <= w["end"] <= 5.0 for w in meta["words"])
    assert meta["motion"] > 0.005 and meta["motion_method"] == "frame-diff"
    assert (clip_dirs[0] / "first.png").is_file() and (clip_dirs[0] / "audio.wav").is_file()
    # stage 2 keeps clips with motion above the threshold and at least one phase
    stage2 = [m for m in index["samples"].values() if m["stage2"]]
    assert stage2 and report["stage2_clips"] == len(stage2)
    ds = CachedClipDataset(out, stage="stage2")
    item = ds[0]
    assert item["latents"].shape[1] == 32 and item["audio"].shape[:2] == (125, 2)
    assert int(item["phase_ids"].max()) >= 1  # structured prompt with at least one phase block

    with session_scope(get_settings().db_url) as s:
        rows = s.exec(select(Clip)).all()
    assert len(rows) == report["clips"] and all(r.cached for r in rows)
    assert {r.id for r in rows} == set(index["samples"])

    # second run: nothing is decoded, transcribed, annotated or encoded
    import flows.training.builder as ds_mod

    def boom(*a, **k):
        raise AssertionError("second run did work")

    monkeypatch.setattr(ds_mod, "decode_audio16k", boom)
    monkeypatch.setattr(ds_mod, "decode_frames", boom)
    again = build_dataset(**kwargs)
    assert again["clips_new"] == 0 and again["clips_cached"] == 0 and again["transcribed"] == 0
    assert again["videos_done_before"] == 2
    assert again["data_hash"] == report["data_hash"]
    assert read_index(out / "cache")["shards"] == index["shards"]

    # the built dataset trains (stage 2, 125-frame clips) and feeds the sample renders
    from generator.train import CONFIG_DIR
    from generator.train.config import load_config
    from generator.train.trainer import Trainer

    run = tmp_path / "run"
    cfg = load_config(CONFIG_DIR / "tiny-stage2.yaml", [
        f"output_dir={run}", f"data.dataset={out}", f"model.adapter={stage1_adapter}",
        "train.max_steps=1", "train.sample_every=1", "train.sample_steps=2", "data.text_len=256",
        "data.batch_size=1",
    ])  # fmt: skip
    summary = Trainer(cfg, echo=False).train()
    assert summary["finished"] and summary["loss"] > 0
    (sheet,) = (run / "samples").glob("step-0000001-*.png")
    from PIL import Image

    img = Image.open(sheet)
    assert img.height in (64,) and img.width in (4 * 64, 4 * 96)


def test_dataset_input_errors(tmp_path):
    from flows.runtime.errors import InputError
    from flows.training.builder import prepare
    from flows.training.decode import pick_bucket, scan_videos
    from flows.training.options import DatasetOptions

    with pytest.raises(InputError, match="folder not found"):
        scan_videos(tmp_path / "missing")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match="no videos"):
        scan_videos(tmp_path)
    with pytest.raises(InputError, match="4k\\+1") as e:
        DatasetOptions.parse(clip_frames=100)
    assert e.value.field == "clip_frames"
    with pytest.raises(InputError, match="multiples of 32") as e:
        DatasetOptions.parse(buckets=["704x1279"])
    assert e.value.field == "buckets"
    with pytest.raises(InputError, match="unknown planner 'gpt'") as e:
        DatasetOptions.parse(planner="gpt")
    with pytest.raises(InputError, match="unknown option 'max_phase'") as e:
        DatasetOptions.parse(max_phase=4)
    assert DatasetOptions.parse(buckets=["704x1280", [64, 96]]).buckets == [[704, 1280], [64, 96]]
    (tmp_path / "v.mp4").write_bytes(b"x")
    with pytest.raises(InputError, match="DWPose model not found") as e:
        prepare(str(tmp_path), DatasetOptions(dwpose=str(tmp_path / "no.onnx")))
    assert e.value.field == "dwpose"
    assert pick_bucket(1920, 1080, [[704, 1280], [1280, 704], [960, 960]]) == (704, 1280)
    assert pick_bucket(720, 1280, [[704, 1280], [1280, 704], [960, 960]]) == (1280, 704)
    assert pick_bucket(500, 480, [[704, 1280], [1280, 704], [960, 960]]) == (960, 960)


def test_motion_energy_orders_static_below_moving():
    from flows.training.motion import motion_energy

    static = np.full((9, 64, 64, 3), 100, dtype=np.uint8)
    moving = static.copy()
    for i in range(9):
        moving[i, :, 4 * i : 4 * i + 16] = 250
    assert motion_energy(static) == 0.0
    assert motion_energy(moving) > 0.01


def test_cut_key_is_unchanged_by_the_options_model():
    """Datasets built before the options became one model resume (same clip ids and cut key);
    options that do not change the clips leave the key alone."""
    from flows.training.options import DatasetOptions

    assert DatasetOptions().cut_key() == "aefe64a6202e0bdb"
    custom = DatasetOptions(
        fps=24,
        clip_frames=121,
        buckets=[[64, 64], [64, 96]],
        motion_threshold=0.005,
        text_len=256,
        dwpose="/x.onnx",
        wav2vec="/w",
    )
    assert custom.cut_key() == "c5ddb91a93a642e6"
    same = DatasetOptions(out="/elsewhere", planner="mllm", shard_size=8, annotate_frames=2)
    assert same.cut_key() == DatasetOptions().cut_key()
    assert DatasetOptions(max_phases=4).cut_key() != DatasetOptions().cut_key()
