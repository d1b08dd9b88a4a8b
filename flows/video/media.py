"""Video files: encode segment frames, stitch segments with the audio, inspect results.

Every segment is encoded with the same fixed H.264 settings so the stitch can concatenate
them without re-encoding (fast, lossless). Encoding uses PyAV (FFmpeg libraries in the
wheel); concatenation and muxing use the ffmpeg binary that imageio-ffmpeg ships, since
the concat demuxer does exactly this job. Files appear complete or not at all.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from storage import atomic_path

VIDEO_CODEC = "libx264"
PIX_FMT = "yuv420p"
# Fixed for every segment: concatenation by stream copy needs identical parameter sets.
X264_PROFILE = "high"
STDERR_TAIL = 2000


class MediaError(RuntimeError):
    """ffmpeg failed; the message carries the tail of its stderr."""


@dataclass(frozen=True)
class MediaInfo:
    """What a media file contains (durations in seconds; 0 / "" when absent)."""

    duration: float
    has_video: bool
    has_audio: bool
    video_frames: int
    fps: float
    width: int
    height: int
    video_codec: str
    audio_codec: str
    audio_duration: float
    audio_sample_rate: int


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (there is no system ffmpeg)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _check_frame(frame: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(
            f"frames must be uint8 (height, width, 3), got {frame.dtype} {frame.shape}"
        )
    if shape is not None and frame.shape != shape:
        raise ValueError(f"frame size changed within a clip: {frame.shape} after {shape}")
    h, w = frame.shape[:2]
    if h % 2 or w % 2 or h == 0 or w == 0:
        raise ValueError(f"H.264 yuv420p needs even, non-zero width and height, got {w}x{h}")
    return np.ascontiguousarray(frame)


def encode_frames(
    frames: np.ndarray | Iterable[np.ndarray],
    fps: int,
    path: Path,
    *,
    crf: int = 20,
    preset: str = "veryfast",
) -> Path:
    """Encode RGB frames to an H.264 yuv420p MP4 at exactly `fps` (one frame per 1/fps)."""
    if int(fps) != fps or fps <= 0:
        raise ValueError(f"fps must be a positive integer, got {fps}")
    path = Path(path)
    count = 0
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = None
        shape: tuple[int, ...] | None = None
        for frame in frames:
            frame = _check_frame(frame, shape)
            if stream is None:
                shape = frame.shape
                stream = container.add_stream(VIDEO_CODEC, rate=int(fps))
                stream.width, stream.height = frame.shape[1], frame.shape[0]
                stream.pix_fmt = PIX_FMT
                stream.codec_context.time_base = Fraction(1, int(fps))
                stream.options = {"crf": str(crf), "preset": preset, "profile": X264_PROFILE}
            video = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video.pts = count
            count += 1
            container.mux(stream.encode(video))
        if stream is None:
            raise ValueError("no frames to encode")
        container.mux(stream.encode(None))
    return path


def _concat_line(path: Path) -> str:
    """One concat-demuxer entry, quoted so any path (spaces, quotes) is read verbatim."""
    text = str(path.resolve())
    if "\n" in text or "\r" in text:
        raise ValueError(f"cannot concatenate a file whose path has a line break: {text!r}")
    return "file '" + text.replace("'", "'\\''") + "'\n"


def run_ffmpeg(args: list[str]) -> None:
    """Run ffmpeg; on failure raise MediaError with the tail of its stderr."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        tail = proc.stderr.strip()[-STDERR_TAIL:] or "(no output)"
        raise MediaError(f"ffmpeg failed (exit {proc.returncode}): {tail}")


def concat_and_mux(
    segments: list[Path], audio: Path, out: Path, *, audio_bitrate: str = "160k"
) -> Path:
    """Join segment MP4s by stream copy (no re-encode) and add the audio as AAC."""
    if not segments:
        raise ValueError("no segments to concatenate")
    for p in [*segments, audio]:
        if not Path(p).is_file():
            raise FileNotFoundError(f"missing media file: {p}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".concat-", dir=out.parent) as work:
        listing = Path(work) / "segments.txt"
        listing.write_text("".join(_concat_line(Path(p)) for p in segments), encoding="utf-8")
        with atomic_path(out) as tmp:
            run_ffmpeg(
                [
                    "-f", "concat", "-safe", "0", "-i", str(listing),
                    "-i", str(Path(audio).resolve()),
                    "-map", "0:v:0", "-map", "1:a:0",
                    "-c:v", "copy",
                    "-c:a", "aac", "-b:a", audio_bitrate,
                    "-movflags", "+faststart",
                    "-f", "mp4", str(tmp),
                ]
            )  # fmt: skip
    return out


def _seconds(value: int | None, time_base: Fraction | None) -> float:
    return float(value * time_base) if value is not None and time_base is not None else 0.0


def probe(path: Path) -> MediaInfo:
    """Streams, sizes and durations of a media file (video frames counted from packets)."""
    with av.open(str(path)) as container:
        v = container.streams.video[0] if container.streams.video else None
        a = container.streams.audio[0] if container.streams.audio else None
        duration = container.duration / av.time_base if container.duration else 0.0
        frames = 0
        if v is not None:
            frames = v.frames
            if not frames:  # not in the header (e.g. some containers): count packets
                frames = sum(1 for p in container.demux(v) if p.size)
        rate = (v.average_rate or v.guessed_rate) if v is not None else None
        return MediaInfo(
            duration=duration,
            has_video=v is not None,
            has_audio=a is not None,
            video_frames=int(frames),
            fps=float(rate) if rate else 0.0,
            width=v.codec_context.width if v is not None else 0,
            height=v.codec_context.height if v is not None else 0,
            video_codec=v.codec_context.name if v is not None else "",
            audio_codec=a.codec_context.name if a is not None else "",
            audio_duration=_seconds(a.duration, a.time_base) if a is not None else 0.0,
            audio_sample_rate=a.codec_context.sample_rate if a is not None else 0,
        )
