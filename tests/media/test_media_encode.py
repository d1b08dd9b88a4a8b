"""Encoding, concatenation by stream copy, audio mux and probing, on real files."""

import wave
from pathlib import Path

import av
import numpy as np
import pytest

from flows.video import media
from flows.video.media import MediaError, concat_and_mux, encode_frames, probe

FPS = 25


def frames(n: int, seed: int, width: int = 96, height: int = 64) -> np.ndarray:
    base = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return np.stack([np.roll(base, 2 * i, axis=1) for i in range(n)])


def write_wav(path: Path, seconds: float, rate: int = 44100) -> Path:
    t = np.arange(int(round(seconds * rate))) / rate
    pcm = (0.2 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def without_parameter_sets(packet: bytes) -> bytes:
    """Drop SPS/PPS NAL units (types 7, 8) from a length-prefixed (avcC) H.264 packet."""
    out, i = b"", 0
    while i + 4 <= len(packet):
        size = int.from_bytes(packet[i : i + 4], "big")
        nal = packet[i : i + 4 + size]
        if nal[4] & 0x1F not in (7, 8):
            out += nal
        i += 4 + size
    return out


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_encode_probe_round_trip(tmp_path):
    out = encode_frames(frames(17, 0), FPS, tmp_path / "a.mp4")
    info = probe(out)
    assert out == tmp_path / "a.mp4"
    assert (info.video_frames, info.fps, info.width, info.height) == (17, 25.0, 96, 64)
    assert info.video_codec == "h264" and info.has_video and not info.has_audio
    assert info.duration == pytest.approx(17 / FPS, abs=1e-3)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]  # no temporary left behind


def test_encode_accepts_an_iterator(tmp_path):
    out = encode_frames(iter(list(frames(5, 1))), FPS, tmp_path / "it.mp4")
    assert probe(out).video_frames == 5


def test_encode_rejects_odd_sizes_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="even"):
        encode_frames(np.zeros((3, 63, 96, 3), np.uint8), FPS, tmp_path / "odd.mp4")
    with pytest.raises(ValueError, match="no frames"):
        encode_frames([], FPS, tmp_path / "empty.mp4")
    assert list(tmp_path.iterdir()) == []


def test_concat_copies_video_and_muxes_audio(tmp_path, monkeypatch):
    a = encode_frames(frames(33, 0), FPS, tmp_path / "a.mp4")
    b = encode_frames(frames(52, 1), FPS, tmp_path / "b.mp4")
    total = 33 + 52
    audio = write_wav(tmp_path / "voice.wav", total / FPS + 0.013)  # sums to round(d * fps)
    calls = []
    real_run = media.run_ffmpeg
    monkeypatch.setattr(media, "run_ffmpeg", lambda args: (calls.append(args), real_run(args)))
    out_dir = tmp_path / "out dir"  # spaces and quotes survive the concat list
    out = concat_and_mux([a, b], audio, out_dir / "it's final.mp4")

    (args,) = calls
    assert args[args.index("-c:v") + 1] == "copy"
    info = probe(out)
    assert info.video_frames == total and info.fps == 25.0
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert info.audio_sample_rate == 44100
    assert info.duration == pytest.approx(total / FPS + 0.013, abs=1 / FPS)
    assert info.audio_duration == pytest.approx(total / FPS + 0.013, abs=1 / FPS)
    # No re-encode: the compressed packets are the inputs' (the first packet of each
    # segment may gain in-band SPS/PPS), and the pictures are bit-identical.
    got, want = packets(out), packets(a) + packets(b)
    assert len(got) == len(want)
    assert [without_parameter_sets(g) for g in got] == want
    assert sum(g != w for g, w in zip(got, want)) <= 2
    assert all(np.array_equal(x, y) for x, y in zip(decoded(out), decoded(a) + decoded(b)))
    assert sorted(p.name for p in out_dir.iterdir()) == ["it's final.mp4"]


def test_concat_failure_reports_ffmpeg_stderr(tmp_path):
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"not a video at all")
    audio = write_wav(tmp_path / "v.wav", 0.5)
    with pytest.raises(MediaError, match="ffmpeg failed") as err:
        concat_and_mux([bogus], audio, tmp_path / "out.mp4")
    assert len(str(err.value)) > len("ffmpeg failed (exit 1): ")
    assert not (tmp_path / "out.mp4").exists()


def test_concat_missing_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        concat_and_mux([tmp_path / "nope.mp4"], tmp_path / "a.wav", tmp_path / "o.mp4")


def test_ffmpeg_exe_exists():
    assert Path(media.ffmpeg_exe()).is_file()
