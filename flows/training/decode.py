"""Reading training videos: find them, pick a resolution bucket, decode frames and sound.

ffmpeg (the binary in the imageio-ffmpeg wheel) scales and centre-crops to the bucket and resamples
to the clip frame rate, streaming raw RGB so a long video never sits in memory whole.
"""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from flows.runtime.errors import InputError
from flows.video.media import ffmpeg_exe

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


def scan_videos(folder: Path) -> list[Path]:
    """Video files directly in `folder` or below it, sorted; an InputError when there are none."""
    if not folder.exists():
        raise InputError(f"folder not found: {folder}", field="DIR")
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}", field="DIR")
    videos = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
    )
    if not videos:
        raise InputError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {folder}", field="DIR")
    return videos


def pick_bucket(width: int, height: int, buckets: list[list[int]]) -> tuple[int, int]:
    """The (height, width) bucket whose aspect ratio is closest (in log ratio) to the video's."""
    aspect = np.log(width / height)
    best = min(buckets, key=lambda b: abs(np.log(b[1] / b[0]) - aspect))
    return int(best[0]), int(best[1])


def decode_frames(path: Path, fps: int, height: int, width: int) -> Iterator[np.ndarray]:
    """RGB frames at exactly `fps`, scaled to cover (width, height) and centre-cropped."""
    vf = (
        f"fps={fps},scale={width}:{height}:force_original_aspect_ratio=increase:flags=bicubic,"
        f"crop={width}:{height}"
    )
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-i",
        str(path),
        "-vf",
        vf,
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]
    size = height * width * 3
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        while True:
            buf = proc.stdout.read(size)
            if len(buf) < size:
                break
            yield np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3)
        proc.stdout.close()
        proc.wait()


def decode_audio16k(path: Path) -> np.ndarray:
    """The sound track as 16 kHz mono float32."""
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-i",
        str(path),
        "-vn",
        "-ac",
        "1",
        "-ar",
        "16000",
        "-f",
        "s16le",
        "-",
    ]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"ffmpeg could not decode the audio of {path.name}: {proc.stderr[-300:]!r}"
        )
    return np.frombuffer(proc.stdout, dtype="<i2").astype(np.float32) / 32768.0


def clips_of(frames: Iterator[np.ndarray], clip_frames: int) -> Iterator[tuple[int, np.ndarray]]:
    """Non-overlapping (start frame, clip) pairs; the short tail is dropped."""
    buf: list[np.ndarray] = []
    start = 0
    for frame in frames:
        buf.append(frame)
        if len(buf) == clip_frames:
            yield start, np.stack(buf)
            start += clip_frames
            buf = []
