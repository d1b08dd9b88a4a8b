"""Brand kit, joins, captions, chapters and poster, measured on the finished file."""

import av
import numpy as np
import pytest
import soundfile as sf
import yaml
from bs1770 import integrated_loudness, true_peak_dbtp
from PIL import Image

from flows.runtime.errors import InputError
from flows.video.finish.assemble import RATE, FinishSpec, finish_video
from flows.video.finish.brand import load_brand, logo_box
from flows.video.finish.chapters import read_chapters, scene_chapters
from flows.video.finish.loudness import measure
from flows.video.media import encode_frames, probe, run_ffmpeg
from planners.schema import Scene, Word

W, H, FPS = 320, 176, 25
FLASH_AT = 0.52  # seconds into a clip: a white frame and a click at the same moment


def _clip(tmp_path, name, *, fps, size, rate, channels, seconds=1.2):
    """A clip with its own size, frame rate and audio rate: dark frames, one white flash and a
    click at FLASH_AT."""
    n = round(seconds * fps)
    frames = np.full((n, size[1], size[0], 3), 30, np.uint8)
    flash = round(FLASH_AT * fps)
    frames[flash : flash + 2] = 255
    pic = encode_frames(frames, fps, tmp_path / f"{name}-v.mp4")
    audio = np.zeros((round(seconds * rate), channels), np.float32)
    a = round(flash / fps * rate)
    audio[a : a + rate // 50] = (
        0.8 * np.sin(np.arange(rate // 50) * 2 * np.pi * 1000 / rate)[:, None]
    )
    wav = tmp_path / f"{name}.wav"
    sf.write(wav, audio, rate, subtype="PCM_16")
    out = tmp_path / f"{name}.mp4"
    run_ffmpeg(["-i", str(pic), "-i", str(wav), "-c:v", "copy", "-c:a", "aac", str(out)])
    return out, flash / fps


def _body(tmp_path, seconds=3.0):
    n = round(seconds * FPS)
    frames = np.full((n, H, W, 3), 90, np.uint8)
    video = encode_frames(frames, FPS, tmp_path / "body.mp4")
    tt = np.arange(round(seconds * 22050)) / 22050
    words = [Word(word=w, start=0.3 + i * 0.5, end=0.6 + i * 0.5) for i, w in enumerate(
        ["Hello", "there", "friends", "this", "is", "Ada"])]  # fmt: skip
    x = np.zeros_like(tt)
    for w in words:
        m = (tt >= w.start) & (tt < w.end)
        x[m] = 0.2 * np.sin(2 * np.pi * 200 * tt[m])
    speech = tmp_path / "speech.wav"
    sf.write(speech, x.astype(np.float32), 22050, subtype="PCM_16")
    return video, speech, words


def _kit(tmp_path, **extra):
    logo = Image.new("RGBA", (64, 32), (255, 0, 0, 255))
    logo.save(tmp_path / "logo.png")
    data = {"logo": {"file": "logo.png", "position": "top-right", "size": 0.2, "opacity": 1.0}}
    data.update(extra)
    path = tmp_path / "brand.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _frames(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def _audio(path):
    with av.open(str(path)) as c:
        chunks = [f.to_ndarray() for f in c.decode(c.streams.audio[0])]
    x = np.concatenate(chunks, axis=1)  # planar float: (channels, samples)
    return x.mean(axis=0)


def _audio_channels(path):
    with av.open(str(path)) as c:
        chunks = [f.to_ndarray() for f in c.decode(c.streams.audio[0])]
    return np.concatenate(chunks, axis=1).T  # (samples, channels)


def test_logo_pixels_are_where_the_kit_puts_them(tmp_path):
    video, speech, words = _body(tmp_path)
    kit = load_brand(_kit(tmp_path))
    spec = FinishSpec(
        video=video, speech=speech, words=words, width=W, height=H, fps=FPS, brand=kit
    )
    done = finish_video(spec, tmp_path / "out")
    frames = _frames(done.video)
    x, y, w, h = logo_box(kit.logo, W, H, (64, 32))
    assert (x + w, y) == (W - round(min(W, H) * 0.03), round(min(W, H) * 0.03))  # top right
    inside = frames[:, y + 2 : y + h - 2, x + 2 : x + w - 2].astype(int)
    assert (inside[..., 0] > 200).all() and (inside[..., 1] < 60).all()  # red
    outside = frames[:, y + h + 4 :, : x - 4].astype(int)
    assert abs(outside[..., 0] - 90).max() < 12  # the body untouched elsewhere
    poster = np.asarray(Image.open(done.poster))
    assert poster.shape == (H, W, 3) and poster[y + h // 2, x + w // 2, 0] > 200


def test_intro_body_outro_add_up_and_stay_in_sync_at_both_joins(tmp_path):
    video, speech, words = _body(tmp_path)
    intro, intro_flash = _clip(tmp_path, "intro", fps=30, size=(240, 240), rate=44100, channels=2)
    outro, outro_flash = _clip(tmp_path, "outro", fps=24, size=(640, 360), rate=16000, channels=1)
    kit = load_brand(_kit(tmp_path, intro="intro.mp4", outro="outro.mp4"))
    spec = FinishSpec(
        video=video, speech=speech, words=words, width=W, height=H, fps=FPS, brand=kit
    )
    done = finish_video(spec, tmp_path / "out")
    info = probe(done.video)
    assert (info.width, info.height, round(info.fps)) == (W, H, FPS)
    assert info.audio_sample_rate == RATE
    parts = done.parts
    assert (
        abs(info.video_frames / FPS - (parts["intro"] + parts["body"] + parts["outro"])) < 1 / FPS
    )
    assert abs(parts["intro"] - 1.2) < 1 / FPS and abs(parts["outro"] - 1.2) < 1 / FPS
    assert abs(info.audio_duration - info.video_frames / FPS) < 1 / FPS
    frames = _frames(done.video)
    bright = frames[:, H // 2, W // 2].mean(axis=1) > 200  # the letterboxed clip's centre
    audio = _audio(done.video)
    offsets = []
    for expected in (intro_flash, parts["intro"] + parts["body"] + outro_flash):
        window = slice(int((expected - 0.3) * FPS), int((expected + 0.3) * FPS))
        flash_t = (window.start + int(np.argmax(bright[window]))) / FPS
        a0 = int((expected - 0.3) * RATE)
        seg = np.abs(audio[a0 : a0 + int(0.6 * RATE)])
        click_t = (a0 + int(np.argmax(seg > 0.1 * seg.max()))) / RATE
        offsets.append(click_t - flash_t)
        assert abs(flash_t - expected) < 1 / FPS + 1e-6
    assert all(abs(o) < 1 / FPS for o in offsets), offsets  # within a frame at both joins
    print("sync offsets (s):", offsets)


def test_chapters_are_read_back_from_the_file(tmp_path):
    video, speech, words = _body(tmp_path)
    scenes = [Scene(title="Welcome", first_word=0, last_word=2),
              Scene(title="About Ada", first_word=3, last_word=5)]  # fmt: skip
    chapters = scene_chapters(scenes, words, duration=3.0)
    spec = FinishSpec(video=video, speech=speech, words=words, width=W, height=H, fps=FPS,
                      chapters=chapters, burn_captions="words", title="Demo")  # fmt: skip
    done = finish_video(spec, tmp_path / "out")
    back = read_chapters(done.video)
    assert [c.title for c in back] == ["Welcome", "About Ada"]
    assert back[0].start == 0 and abs(back[1].start - words[3].start) < 0.01
    assert done.chapters.read_text() == "00:00 Welcome\n00:01 About Ada\n"
    # captions burned in the lower part of the frame while words are spoken
    frames = _frames(done.video)
    lower = frames[int(0.5 * FPS), int(H * 0.6) :].astype(int)
    assert (lower.max(axis=-1) > 240).any()  # white caption text
    loud = measure(done.video)
    assert abs(loud.integrated + 16) <= 1.0 and loud.true_peak <= -1.0
    # the same numbers from an independent BS.1770 meter (not ffmpeg's), on the decoded AAC
    pcm = _audio_channels(done.video)
    assert abs(integrated_loudness(pcm) + 16) <= 1.0, integrated_loudness(pcm)
    assert true_peak_dbtp(pcm) <= -1.0
    assert abs(integrated_loudness(pcm) - loud.integrated) < 0.3


@pytest.mark.parametrize(
    ("kit", "field", "message"),
    [
        ({"logo": "nope.png"}, "logo.file", "no such file"),
        ({"logo": "notes.txt"}, "logo.file", "is not an image"),
        ({"logo": "tiny.png"}, "logo.file", "too small"),
        ({"intro": "notes.txt"}, "intro", "not a video"),
        ({"logo": {"file": "tiny.png", "position": "middle"}}, "logo.position", "expected one of"),
        ({"colour": 1}, "colour", "unknown key"),
    ],
)
def test_bad_brand_kits_fail_before_rendering(tmp_path, kit, field, message):
    (tmp_path / "notes.txt").write_text("hello")
    Image.new("RGB", (8, 8)).save(tmp_path / "tiny.png")
    path = tmp_path / "brand.yaml"
    path.write_text(yaml.safe_dump(kit))
    with pytest.raises(InputError) as e:
        load_brand(path)
    assert e.value.field == field and message in str(e.value)
    assert str(path) in str(e.value)
