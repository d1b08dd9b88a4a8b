"""Background music under the speech, ducked while the speaker talks.

The word timings the pipeline already has say exactly when someone speaks, so the ducking needs
no sidechain detector: words closer than `hold` seconds are one speech region, and the music's
gain follows a ramp in dB that starts falling `attack` seconds before a region's first word (it
is fully down when the word starts) and comes back over `release` seconds after its last word.
Ramps, not a hard gate: no clicks and no pumping between words.

pydub does the decoding (any format ffmpeg reads), looping, fades, level and the mix.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flows.video.media import run_ffmpeg

with warnings.catch_warnings():  # pydub warns at import when no ffmpeg is on PATH: we set ours
    warnings.simplefilter("ignore", RuntimeWarning)
    from pydub import AudioSegment

DEFAULT_VOLUME_DB = -8.0  # music in the pauses, relative to the speech's level
DEFAULT_DUCK_DB = 15.0  # how much further down the music goes under words
DEFAULT_FADE_S = 1.5
ATTACK_S = 0.15
RELEASE_S = 0.45
HOLD_S = 0.6  # words closer than this stay one ducked region


@dataclass(frozen=True)
class Ducking:
    duck_db: float = DEFAULT_DUCK_DB
    attack: float = ATTACK_S
    release: float = RELEASE_S
    hold: float = HOLD_S


def load_audio(path: Path, rate: int | None = None, channels: int | None = None) -> AudioSegment:
    """Any audio ffmpeg reads (the first audio stream of any file), as a 16-bit pydub segment,
    resampled by ffmpeg to `rate` / `channels` when given.

    ffmpeg decodes to PCM first: pydub's own `from_file` would look for an ffprobe binary,
    which imageio-ffmpeg does not ship, and ffmpeg's resampler is better than pydub's."""
    convert = [*(["-ar", str(rate)] if rate else []), *(["-ac", str(channels)] if channels else [])]
    with tempfile.TemporaryDirectory(prefix="avatar-flow-audio-") as tmp:
        wav = Path(tmp) / "decoded.wav"
        run_ffmpeg(
            ["-i", str(path), "-map", "0:a:0", *convert, "-c:a", "pcm_s16le", "-f", "wav", str(wav)]
        )
        return AudioSegment.from_wav(str(wav))


def speech_regions(
    words: Sequence[tuple[float, float]], hold: float = HOLD_S
) -> list[tuple[float, float]]:
    """(start, end) of each stretch of speech: words with gaps under `hold` merged."""
    regions: list[list[float]] = []
    for start, end in sorted(words):
        if regions and start - regions[-1][1] < hold:
            regions[-1][1] = max(regions[-1][1], end)
        else:
            regions.append([start, end])
    return [(a, b) for a, b in regions]


def duck_gain_db(
    times: np.ndarray, regions: Sequence[tuple[float, float]], ducking: Ducking = Ducking()
) -> np.ndarray:
    """The music's gain in dB at `times` (seconds): 0 in pauses, -duck_db under speech, with
    linear dB ramps of `attack` before and `release` after each region."""
    gain = np.zeros_like(times, dtype=np.float64)
    d = ducking
    for start, end in regions:
        down = np.interp(
            times,
            [start - d.attack, start, end, end + d.release],
            [0.0, -d.duck_db, -d.duck_db, 0.0],
            left=0.0,
            right=0.0,
        )
        gain = np.minimum(gain, down)
    return gain


def _apply_gain_curve(seg: AudioSegment, gain_db: np.ndarray) -> AudioSegment:
    samples = np.array(seg.get_array_of_samples(), dtype=np.float64)
    channels = seg.channels
    frames = samples.reshape(-1, channels)
    n = min(len(frames), len(gain_db))
    frames[:n] *= (10.0 ** (gain_db[:n] / 20.0))[:, None]
    limit = float(2 ** (8 * seg.sample_width - 1) - 1)
    out = np.clip(np.round(frames), -limit - 1, limit).astype(
        np.int16 if seg.sample_width == 2 else np.int32
    )
    return seg._spawn(out.tobytes())


def active_level_dbfs(seg: AudioSegment, regions: Sequence[tuple[float, float]]) -> float:
    """RMS level (dBFS) of `seg` inside `regions` only: the speech's level, pauses left out."""
    parts = [seg[int(a * 1000) : int(b * 1000)] for a, b in regions if b > a]
    joined = sum(parts[1:], parts[0]) if parts else seg
    return joined.dBFS if joined.rms else -math.inf


def bed(
    music: AudioSegment,
    *,
    duration: float,
    rate: int,
    channels: int,
    level_dbfs: float,
    fade: float = DEFAULT_FADE_S,
) -> AudioSegment:
    """The music looped (crossfaded) or cut to `duration`, at `level_dbfs` RMS, faded in/out."""
    music = music.set_frame_rate(rate).set_channels(channels).set_sample_width(2)
    if music.rms == 0:
        raise ValueError("the music file is silent")
    want_ms = int(math.ceil(duration * 1000))
    loop = music
    xfade = min(500, len(music) // 4)
    while len(loop) < want_ms:
        loop = loop.append(music, crossfade=xfade) if xfade > 0 else loop + music
    loop = loop[:want_ms]
    loop = loop.apply_gain(level_dbfs - loop.dBFS)
    fade_ms = int(min(fade, duration / 4) * 1000)
    if fade_ms > 0:
        loop = loop.fade_in(fade_ms).fade_out(fade_ms)
    return loop


def mix_music(
    speech: AudioSegment,
    music: AudioSegment,
    words: Sequence[tuple[float, float]],
    *,
    volume_db: float = DEFAULT_VOLUME_DB,
    fade: float = DEFAULT_FADE_S,
    ducking: Ducking = Ducking(),
) -> tuple[AudioSegment, dict]:
    """Speech with the music mixed under it and ducked by the word timings.

    Returns the mix (the speech's rate, sample width and length) and what was done: the music's
    level in the pauses and under words relative to the speech, for the run report.
    """
    speech = speech.set_sample_width(2)
    regions = speech_regions(words, ducking.hold)
    speech_db = active_level_dbfs(speech, regions)
    if not math.isfinite(speech_db):
        speech_db = -20.0
    duration = len(speech) / 1000.0
    music_bed = bed(
        music,
        duration=duration,
        rate=speech.frame_rate,
        channels=speech.channels,
        level_dbfs=speech_db + volume_db,
        fade=fade,
    )
    times = np.arange(int(music_bed.frame_count())) / speech.frame_rate
    ducked = _apply_gain_curve(music_bed, duck_gain_db(times, regions, ducking))
    mixed = speech.overlay(ducked)
    return mixed, {
        "music_volume_db": volume_db,
        "duck_db": ducking.duck_db,
        "attack_s": ducking.attack,
        "release_s": ducking.release,
        "speech_regions": len(regions),
    }
