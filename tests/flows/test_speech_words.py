"""Speech and word timing with the real bundled models (Piper joe, Whisper tiny.en)."""

import subprocess
import wave

import numpy as np
import pytest

from flows.runtime.errors import InputError
from flows.video.media import ffmpeg_exe
from flows.video.speech import (
    ANALYSIS_RATE,
    parse_voice,
    prepare_speech,
    probe_audio,
    read_wav,
)
from flows.video.words import TimedWord, match_known_words, transcribe

TEXT = "Hello and welcome to avatar-flow. Today I will show you 3 things. Thank you."


@pytest.fixture(scope="module")
def tts(tmp_path_factory):
    work = tmp_path_factory.mktemp("tts")
    return prepare_speech(text=TEXT, voice="piper", audio=None, work_dir=work, max_seconds=600)


def rms_dbfs(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(x**2)) + 1e-12)


def test_piper_gives_two_normalised_tracks(tts):
    full, rate = read_wav(tts.full)
    ana, arate = read_wav(tts.analysis)
    assert rate == 22050 and tts.sample_rate == 22050 and arate == ANALYSIS_RATE
    assert tts.source == "piper:en_US-joe-medium"
    assert 3.0 < tts.duration < 8.0
    assert len(full) / rate == pytest.approx(tts.duration, abs=0.02)
    assert np.abs(full).max() <= 10 ** (-1.0 / 20)  # true-peak ceiling of loudnorm (-1.5 dBTP)
    assert -26 < rms_dbfs(ana) < -12  # loudness normalised around -18 LUFS


def test_recorded_mp3_is_decoded_and_normalised(tts, tmp_path):
    mp3 = tmp_path / "talk.mp3"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(tts.full),
            "-filter:a",
            "volume=0.2",
            "-c:a",
            "libmp3lame",
            str(mp3),
        ],
        check=True,
    )
    tracks = prepare_speech(
        text="", voice="piper", audio=mp3, work_dir=tmp_path / "w", max_seconds=600
    )
    assert tracks.source == "file:talk.mp3"
    assert tracks.duration == pytest.approx(tts.duration, abs=0.1)
    quiet, _ = read_wav(tts.analysis)
    loud, _ = read_wav(tracks.analysis)
    assert abs(rms_dbfs(loud) - rms_dbfs(quiet)) < 3  # the -14 dB quieter file was brought back up


def _write_wav(path, samples, rate=16000):
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def test_bad_audio_is_refused_before_heavy_work(tmp_path):
    silent = tmp_path / "silent.wav"
    _write_wav(silent, np.zeros(16000 * 2))
    with pytest.raises(InputError, match="silent") as e:
        prepare_speech(
            text="", voice="piper", audio=silent, work_dir=tmp_path / "w", max_seconds=60
        )
    assert e.value.field == "audio"
    long = tmp_path / "long.wav"
    _write_wav(long, 0.1 * np.sin(np.arange(16000 * 12) / 5))
    with pytest.raises(InputError, match="over the limit of 10 s"):
        probe_audio(long, max_seconds=10)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(InputError, match="not readable audio"):
        probe_audio(junk, max_seconds=10)
    with pytest.raises(InputError, match="not found"):
        probe_audio(tmp_path / "missing.wav", max_seconds=10)
    with pytest.raises(InputError, match="unsupported audio type"):
        probe_audio(tmp_path / "notes.txt", max_seconds=10) if (tmp_path / "notes.txt").write_text(
            "x"
        ) else None


def test_voice_names_are_checked():
    assert str(parse_voice("piper")) == "piper:en_US-joe-medium"
    assert str(parse_voice("openai:nova")) == "openai:nova"
    for bad, frag in [
        ("openai:robot", "unknown OpenAI voice"),
        ("espeak", "unknown voice"),
        ("piper:xx", "unknown Piper voice"),
    ]:
        with pytest.raises(InputError, match=frag) as e:
            parse_voice(bad, file="s.md")
        assert e.value.field == "voice"


def test_known_text_gets_real_word_times(tts):
    audio, _ = read_wav(tts.analysis)
    words = TEXT.split()
    tr = transcribe(audio, known_words=words)
    assert tr.aligner == "faster-whisper:tiny.en"
    assert [w.word for w in tr.words] == words
    timed = [w for w in tr.words if not w.interpolated]
    assert len(timed) >= 0.9 * len(words) - 1  # "3" is spoken "three": interpolated, flagged
    three = tr.words[words.index("3")]
    assert three.interpolated
    assert (
        tr.words[words.index("3") - 1].end
        <= three.start
        <= three.end
        <= tr.words[words.index("3") + 1].start
    )
    for a, b in zip(tr.words, tr.words[1:]):
        assert a.start <= a.end <= b.start
    assert tr.words[-1].end <= tr.duration
    assert tr.words[0].start < 0.5


def test_audio_only_is_transcribed(tts):
    audio, _ = read_wav(tts.analysis)
    tr = transcribe(audio, known_words=None)
    got = [w.word.lower().strip(".,!") for w in tr.words]
    assert got[:3] == ["hello", "and", "welcome"]
    assert "thank" in got and all(not w.interpolated for w in tr.words)


def test_matching_maps_split_words_and_interpolates_the_rest():
    timed = [
        TimedWord("Hi", 0.0, 0.2),
        TimedWord("Avatar", 0.3, 0.6),
        TimedWord("Flow.", 0.6, 0.9),
        TimedWord("two", 1.0, 1.2),
        TimedWord("cats", 1.3, 1.6),
    ]
    words = match_known_words(["Hi", "avatar-flow.", "2", "cats"], timed, 2.0)
    assert [(w.word, w.start, w.end, w.interpolated) for w in words] == [
        ("Hi", 0.0, 0.2, False),
        ("avatar-flow.", 0.3, 0.9, False),
        ("2", 0.9, 1.3, True),
        ("cats", 1.3, 1.6, False),
    ]
