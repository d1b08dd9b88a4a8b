"""Templates, music ducking and loudness, measured on the files they produce."""

import math

import numpy as np
import pytest
import soundfile as sf
from bs1770 import integrated_loudness, true_peak_dbtp
from scipy.signal import resample_poly

from flows.runtime.errors import InputError
from flows.video.finish.loudness import PRESETS, measure, normalise, parse_target
from flows.video.finish.music import load_audio, mix_music
from flows.video.finish.template import render_template, template_variables

RATE = 22050


# ------------------------------------------------------------------------------------ templates
TEMPLATE = "---\ntitle: Hi {{ name }}\n---\nHello {{ name }}, welcome to {{ product }}.\n"


def test_template_fills_every_placeholder():
    text = render_template(TEMPLATE, {"name": "Ada", "product": "Notes Pro"})
    assert text == "---\ntitle: Hi Ada\n---\nHello Ada, welcome to Notes Pro.\n"
    assert template_variables(TEMPLATE) == ["name", "product"]


@pytest.mark.parametrize(
    ("values", "where", "message"),
    [
        ({"name": "Ada"}, "--var", "--var: the template needs a value for 'product'"),
        ({"name": "Ada", "product": "X", "extra": "1"}, "row 3", "row 3: unknown variable 'extra'"),
        ({"name": " ", "product": "X"}, "row 2", "row 2: variable 'name' is empty"),
        ({"name": "a\nb", "product": "X"}, "--var", "--var: variable 'name' must be one line"),
    ],
)
def test_template_bad_values_are_one_line_naming_source_and_variable(values, where, message):
    with pytest.raises(InputError) as e:
        render_template(TEMPLATE, values, file="t.md", where=where)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_template_is_sandboxed():
    evil = "{{ name.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(InputError, match="cannot fill the template"):
        render_template(evil, {"name": "Ada"})


def test_plain_script_is_untouched_and_refuses_variables():
    assert render_template("Hello there.\n", None) == "Hello there.\n"
    with pytest.raises(InputError, match="unknown variable 'name'"):
        render_template("Hello there.\n", {"name": "Ada"})


# ------------------------------------------------------------------------------------ music
def _speech_and_words(tmp_path):
    """A 'speaker': 3 sentences of tone-burst words with 1.6 s pauses between them."""
    words, t = [], 0.5
    for _sentence in range(3):
        for _w in range(4):
            words.append((t, t + 0.3))
            t += 0.38
        t += 1.6
    total = t + 0.5
    n = int(total * RATE)
    x = np.zeros(n)
    tt = np.arange(n) / RATE
    for a, b in words:
        m = (tt >= a) & (tt < b)
        x[m] = 0.3 * np.sin(2 * np.pi * 180 * tt[m])
    path = tmp_path / "speech.wav"
    sf.write(path, x.astype(np.float32), RATE, subtype="PCM_16")
    return path, words


def _music(tmp_path, seconds=4.0):
    rng = np.random.default_rng(0)
    tt = np.arange(int(seconds * 44100)) / 44100
    x = 0.2 * np.sin(2 * np.pi * 330 * tt) + 0.2 * np.sin(2 * np.pi * 440 * tt)
    x += 0.02 * rng.standard_normal(len(tt))
    path = tmp_path / "music.wav"
    sf.write(path, np.stack([x, x], 1).astype(np.float32), 44100, subtype="PCM_16")
    return path


def _rms_db(x):
    return 20 * math.log10(np.sqrt(np.mean(x**2)) + 1e-12)


def test_music_is_ducked_at_least_10_db_under_words(tmp_path):
    speech_path, words = _speech_and_words(tmp_path)
    speech = load_audio(speech_path)
    mixed, info = mix_music(speech, load_audio(_music(tmp_path)), words, fade=0.2)
    assert mixed.frame_rate == RATE and abs(len(mixed) - len(speech)) <= 1
    mix = np.array(mixed.get_array_of_samples(), dtype=np.float64) / 32768
    sp = np.array(speech.get_array_of_samples(), dtype=np.float64) / 32768
    music = mix - sp  # what was added under the speech
    under = np.concatenate([music[int(a * RATE) : int(b * RATE)] for a, b in words])
    # the middle of each pause between sentences (away from the ramps)
    ends = [words[i][1] for i in (3, 7)]
    pauses = np.concatenate([music[int((e + 0.6) * RATE) : int((e + 1.0) * RATE)] for e in ends])
    depth = _rms_db(pauses) - _rms_db(under)
    assert depth >= 10.0, depth
    assert info["speech_regions"] == 3
    # the music in the pauses sits near the requested level under the speech
    assert (
        abs(
            (
                _rms_db(pauses)
                - _rms_db(np.concatenate([sp[int(a * RATE) : int(b * RATE)] for a, b in words]))
            )
            - info["music_volume_db"]
        )
        < 1.5
    )


def test_ducking_ramps_instead_of_gating(tmp_path):
    from flows.video.finish.music import duck_gain_db

    t = np.arange(0, 3, 0.01)
    g = duck_gain_db(t, [(1.0, 2.0)])
    steps = np.abs(np.diff(g))
    assert g.min() == pytest.approx(-15.0) and g[0] == 0.0
    assert steps.max() < 2.0  # at most 2 dB per 10 ms: a ramp, not a switch


# ------------------------------------------------------------------------------------ loudness
def test_loudness_presets_and_bad_values():
    assert parse_target("web") == -16.0 and parse_target("streaming") == -14.0
    assert parse_target("broadcast") == -23.0 and parse_target("-18") == -18.0
    assert parse_target("off") is None
    with pytest.raises(ValueError, match="loudness must be one of"):
        parse_target("loud")


@pytest.mark.parametrize("preset", ["web", "streaming", "broadcast"])
def test_normalised_within_1_lu_and_under_the_true_peak_ceiling(tmp_path, preset):
    speech_path, _ = _speech_and_words(tmp_path)
    x, _rate = sf.read(speech_path)
    x *= 10 ** ((PRESETS[preset] - 12 - measure(speech_path).integrated) / 20)  # 12 dB too quiet
    x[int(2.0 * RATE) : int(2.0 * RATE) + 40] = 0.9  # a transient: the gain alone would clip it
    sf.write(speech_path, x, RATE, subtype="PCM_16")
    before = measure(speech_path)
    assert before.true_peak + (PRESETS[preset] - before.integrated) > -1.0  # the ceiling matters
    out = tmp_path / "out.wav"
    result = normalise(speech_path, out, target=PRESETS[preset], ceiling=-1.0, rate=RATE)
    again = measure(out)
    assert abs(again.integrated - PRESETS[preset]) <= 1.0, (before, again)
    assert again.true_peak <= -1.0
    assert result == again
    assert sf.info(out).samplerate == RATE
    # an independent BS.1770 meter (not ffmpeg's) agrees
    pcm = resample_poly(sf.read(out)[0], 320, 147)  # 22050 -> 48000 Hz
    assert abs(integrated_loudness(pcm) - PRESETS[preset]) <= 1.0
    assert true_peak_dbtp(pcm) <= -1.0
