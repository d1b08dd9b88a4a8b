"""Finishing one video: the stitched body plus the brand kit, the music, the loudness target,
burned-in captions, chapters and a poster frame.

The program is built in three parts, intro + body + outro, each with exactly
`frames / fps` seconds of audio, so the joins stay in sync by construction: clips of any size,
frame rate and audio rate are conformed (letterboxed to the job's size, frames picked by time
for the job's fps, audio resampled and cut or padded to the picture's length). Music goes under
the body's speech only (the intro and outro keep their own sound); the loudness target applies
to the whole program. The video is re-encoded only when something is drawn on it or clips are
joined; otherwise the stitched picture is copied and only the audio is new.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import av
import numpy as np
from PIL import Image

from flows.video.finish import loudness as ln
from flows.video.finish.brand import BrandKit, logo_overlay, lower_third_overlay
from flows.video.finish.burn import Overlay, captions_overlay, draw_overlays
from flows.video.finish.chapters import Chapter, ffmetadata, shift_chapters, youtube_list
from flows.video.finish.music import AudioSegment, Ducking, load_audio, mix_music
from flows.video.media import encode_frames, run_ffmpeg
from planners.schema import Word
from storage import atomic_path, atomic_write_text

RATE = 48000  # the finished video's audio rate
CHANNELS = 2
AAC_HEADROOM_DB = 0.5  # AAC's decoder can overshoot a PCM true peak slightly
POSTER_AT = 1.0  # seconds into the body


@dataclass(frozen=True)
class FinishSpec:
    """Everything finishing reads (the cache key is made from the same values)."""

    video: Path  # the stitched body (picture)
    speech: Path  # the full-rate speech track
    words: Sequence[Word]
    width: int
    height: int
    fps: int
    title: str = ""
    brand: BrandKit | None = None
    music: Path | None = None
    music_volume: float = -8.0
    ducking: Ducking = field(default_factory=Ducking)
    loudness: float | None = -16.0  # LUFS; None: leave the level alone
    ceiling: float = ln.TRUE_PEAK_CEILING
    burn_captions: str = "off"
    chapters: Sequence[Chapter] = ()


@dataclass(frozen=True)
class Finished:
    video: Path
    poster: Path
    chapters: Path | None
    loudness: dict[str, float]  # measured on the finished file
    parts: dict[str, float]  # seconds of intro / body / outro
    music: dict | None

    def report(self) -> dict:
        return {
            "loudness": self.loudness,
            "parts": self.parts,
            "music": self.music,
        }


# ------------------------------------------------------------------------------------ clips
def _letterbox(img: Image.Image, width: int, height: int) -> np.ndarray:
    """Scale to fit width x height, keep the aspect ratio, pad with black."""
    scale = min(width / img.width, height / img.height)
    w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    canvas = Image.new("RGB", (width, height))
    canvas.paste(
        img.resize((w, h), Image.Resampling.BILINEAR), ((width - w) // 2, (height - h) // 2)
    )
    return np.asarray(canvas)


def clip_frame_count(path: Path, fps: int) -> int:
    """How many frames of the job's fps a clip becomes: its picture's length, rounded."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        last_end = 0.0
        for frame in c.decode(v):
            t = float(frame.pts * v.time_base) if frame.pts is not None else 0.0
            rate = float(v.average_rate or v.guessed_rate or 25)
            last_end = max(last_end, t + 1.0 / rate)
        start = float(v.start_time * v.time_base) if v.start_time is not None else 0.0
    return max(1, round((last_end - start) * fps))


def conform_frames(
    path: Path, width: int, height: int, fps: int, count: int
) -> Iterator[np.ndarray]:
    """Exactly `count` frames at `fps`: frame i shows what the clip shows at i / fps."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        start = float(v.start_time * v.time_base) if v.start_time is not None else 0.0
        i, current = 0, None
        for frame in c.decode(v):
            t = float(frame.pts * v.time_base) - start if frame.pts is not None else 0.0
            while current is not None and i < count and (i + 0.5) / fps <= t:
                yield current
                i += 1
            current = _letterbox(frame.to_image(), width, height)
        while current is not None and i < count:
            yield current
            i += 1


def _segment_samples(seg: AudioSegment) -> np.ndarray:
    return np.array(seg.get_array_of_samples(), dtype=np.int16).reshape(-1, seg.channels)


def _exact(samples: np.ndarray, n: int) -> np.ndarray:
    if len(samples) >= n:
        return samples[:n]
    return np.concatenate([samples, np.zeros((n - len(samples), samples.shape[1]), samples.dtype)])


def conform_audio(path: Path, frames: int, fps: int) -> np.ndarray:
    """The clip's sound at RATE/CHANNELS, exactly frames / fps seconds long (silence if none)."""
    n = round(frames * RATE / fps)
    with av.open(str(path)) as c:
        has_audio = bool(c.streams.audio)
    if not has_audio:
        return np.zeros((n, CHANNELS), np.int16)
    return _exact(_segment_samples(load_audio(path, RATE, CHANNELS)), n)


# ------------------------------------------------------------------------------------ body
def _body_frames(path: Path) -> Iterator[np.ndarray]:
    with av.open(str(path)) as c:
        for frame in c.decode(c.streams.video[0]):
            yield frame.to_ndarray(format="rgb24")


def _body_count(path: Path) -> int:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return v.frames or sum(1 for p in c.demux(v) if p.size)


def body_overlays(spec: FinishSpec) -> list[Overlay]:
    overlays: list[Overlay] = []
    kit = spec.brand
    if kit and kit.logo:
        overlays.append(logo_overlay(kit.logo, spec.width, spec.height))
    if kit and kit.lower_third:
        overlays.append(lower_third_overlay(kit.lower_third, spec.width, spec.height))
    if spec.burn_captions != "off" and spec.words:
        highlight = spec.burn_captions == "words"
        overlays.append(captions_overlay(spec.words, spec.width, spec.height, highlight=highlight))
    return overlays


def body_audio(spec: FinishSpec, frames: int) -> tuple[np.ndarray, dict | None]:
    """The speech (music mixed under it, if any), exactly as long as the body's picture."""
    speech = load_audio(spec.speech, RATE, CHANNELS)
    info = None
    music = spec.music or (spec.brand.music if spec.brand else None)
    if music is not None:
        timings = [(w.start, w.end) for w in spec.words]
        bed = load_audio(music, RATE, CHANNELS)
        speech, info = mix_music(
            speech, bed, timings, volume_db=spec.music_volume, ducking=spec.ducking
        )
        info["file"] = Path(music).name
    return _exact(_segment_samples(speech), round(frames * RATE / spec.fps)), info


def _write_wav(path: Path, samples: np.ndarray) -> Path:
    seg = AudioSegment(samples.astype(np.int16).tobytes(), frame_rate=RATE, sample_width=2,
                       channels=samples.shape[1])  # fmt: skip
    with atomic_path(path) as tmp:
        seg.export(str(tmp), format="wav")
    return path


# ------------------------------------------------------------------------------------ finishing
def finish_video(spec: FinishSpec, work: Path) -> Finished:
    """Write the finished video, its poster and chapter list into `work`."""
    work.mkdir(parents=True, exist_ok=True)
    kit = spec.brand
    clips = {k: getattr(kit, k) for k in ("intro", "outro") if kit and getattr(kit, k)}
    counts = {k: clip_frame_count(p, spec.fps) for k, p in clips.items()}
    body_n = _body_count(spec.video)
    overlays = body_overlays(spec)
    redraw = bool(overlays or clips)

    # Audio: intro + body (+ music) + outro, each exactly its picture's length.
    audio_parts = []
    if "intro" in clips:
        audio_parts.append(conform_audio(clips["intro"], counts["intro"], spec.fps))
    body, music_info = body_audio(spec, body_n)
    audio_parts.append(body)
    if "outro" in clips:
        audio_parts.append(conform_audio(clips["outro"], counts["outro"], spec.fps))
    program = _write_wav(work / "program.wav", np.concatenate(audio_parts))
    mixed = work / "mixed.wav"
    if spec.loudness is not None:
        ln.normalise(program, mixed, target=spec.loudness,
                     ceiling=spec.ceiling - AAC_HEADROOM_DB, rate=RATE)  # fmt: skip
    else:
        mixed = program

    # Picture: re-encoded only when something is drawn or joined.
    poster = work / "poster.png"
    poster_index = min(body_n - 1, round(POSTER_AT * spec.fps))
    picture = spec.video
    if redraw:

        def body_frames() -> Iterator[np.ndarray]:
            for i, frame in enumerate(draw_overlays(_body_frames(spec.video), overlays, spec.fps)):
                if i == poster_index:
                    Image.fromarray(frame).save(poster)
                yield frame

        parts = []
        if "intro" in clips:
            parts.append(
                conform_frames(clips["intro"], spec.width, spec.height, spec.fps, counts["intro"])
            )
        parts.append(body_frames())
        if "outro" in clips:
            parts.append(
                conform_frames(clips["outro"], spec.width, spec.height, spec.fps, counts["outro"])
            )
        picture = encode_frames(chain(*parts), spec.fps, work / "picture.mp4")
    else:
        for i, frame in enumerate(_body_frames(spec.video)):
            if i == poster_index:
                Image.fromarray(frame).save(poster)
                break

    # Mux: picture (copied) + the program's audio + chapters (moved past the intro).
    intro_s = counts.get("intro", 0) / spec.fps
    outro_s = counts.get("outro", 0) / spec.fps
    chapters = shift_chapters(spec.chapters, intro_s, intro_s + body_n / spec.fps + outro_s)
    meta = atomic_write_text(work / "chapters.ffmetadata", ffmetadata(chapters, spec.title))
    out = work / "finished.mp4"
    with atomic_path(out) as tmp:
        run_ffmpeg(
            [
                "-i", str(picture), "-i", str(mixed), "-f", "ffmetadata", "-i", str(meta),
                "-map", "0:v:0", "-map", "1:a:0",
                "-map_metadata", "2", "-map_chapters", "2" if chapters else "-1",
                "-c:v", "copy", "-c:a", "aac", "-b:a", "192k",
                "-movflags", "+faststart", "-f", "mp4", str(tmp),
            ]
        )  # fmt: skip
    chapter_list = None
    if chapters:
        chapter_list = atomic_write_text(work / "chapters.txt", youtube_list(chapters))
    measured = ln.measure(out)
    for tmp_file in (work / "program.wav", work / "mixed.wav", work / "picture.mp4"):
        tmp_file.unlink(missing_ok=True)
    return Finished(
        video=out,
        poster=poster,
        chapters=chapter_list,
        loudness={**measured.as_dict(), "target_lufs": spec.loudness, "ceiling_dbtp": spec.ceiling},
        parts={"intro": intro_s, "body": body_n / spec.fps, "outro": outro_s},
        music=music_info,
    )
