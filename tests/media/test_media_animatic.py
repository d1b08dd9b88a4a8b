"""The animatic preview: shape, determinism, and that each overlay follows its input."""

import numpy as np
import pytest
from PIL import Image

from generator.animatic import AnimaticRenderer, _layout, audio_levels, caption_lines
from generator.render_types import CaptionWord, PromptPhase, RenderRequest, StructuredPrompt

FPS, RATE = 25, 16000


def request(num_frames: int = 25, width: int = 320, height: int = 176, audio=None, **kw):
    seconds = num_frames / FPS
    if audio is None:
        audio = np.zeros(int(seconds * RATE), dtype=np.float32)
    avatar = Image.fromarray(
        np.stack(np.mgrid[0:100, 0:60], axis=-1)
        .sum(-1, keepdims=True)
        .repeat(3, -1)
        .astype(np.uint8)
    )  # portrait 60x100: exercises cover + centre crop
    defaults = dict(
        index=0, num_frames=num_frames, fps=FPS, width=width, height=height, audio=audio,
        prompt=StructuredPrompt("a presenter", (PromptPhase("waves hello", 0.2, 0.6),), seconds),
        image=avatar,
        captions=[CaptionWord("hello", 0.0, 0.4), CaptionWord("world", 0.4, 0.8)],
        segment_start=2.0, total_duration=10.0,
        timeline_phases=[PromptPhase("waves hello", 2.2, 2.6)], timeline_cuts=[5.0],
    )  # fmt: skip
    defaults.update(kw)
    return RenderRequest(**defaults)


def test_shape_dtype_and_protocol_fields():
    r = AnimaticRenderer()
    frames = r.render(request(num_frames=9, width=160, height=90))
    assert frames.shape == (9, 90, 160, 3)
    assert frames.dtype == np.uint8
    assert r.name == "animatic" and r.context_frames == 0


def test_deterministic():
    req = request()
    a = AnimaticRenderer().render(req)
    b = AnimaticRenderer().render(req)
    assert np.array_equal(a, b)


def test_progress_reports_completion():
    seen = []
    AnimaticRenderer().render(request(num_frames=13), progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (13, 13)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_caption_highlight_follows_the_spoken_word():
    req = request()
    lay = _layout(req.width, req.height)
    frames = AnimaticRenderer().render(req)
    band = frames[:, lay.band_y0 : lay.bar_y0]
    # frames 2 and 7 are both inside "hello" (0-0.4 s); frame 12 is inside "world".
    assert np.array_equal(band[2], band[7])
    assert not np.array_equal(band[2], band[12])
    # the highlight is yellow: strongly yellow pixels exist while a word is spoken
    yellow = (band[..., 0] > 200) & (band[..., 1] > 180) & (band[..., 2] < 80)
    assert yellow[2].sum() > 20 and yellow[12].sum() > 20
    # and it moved to the right (second word)
    assert np.nonzero(yellow[12])[1].mean() > np.nonzero(yellow[2])[1].mean()


def test_caption_lines_break_at_sentences_and_length():
    words = [CaptionWord(w, i * 0.3, i * 0.3 + 0.2) for i, w in enumerate(
        ["one", "two", "three.", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"])]  # fmt: skip
    lines = caption_lines(words, max_words=7)
    assert lines == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9, 10]]


def test_mouth_indicator_follows_audio_energy():
    n = 25
    audio = np.zeros(int(n / FPS * RATE), dtype=np.float32)
    t = np.arange(audio.size) / RATE
    loud = t >= 0.5
    audio[loud] = 0.5 * np.sin(2 * np.pi * 220 * t[loud])
    req = request(num_frames=n, audio=audio)
    lay = _layout(req.width, req.height)
    frames = AnimaticRenderer().render(req)
    x0, y0, x1, y1 = lay.mouth_box
    mouth = frames[:, y0:y1, x0:x1]
    assert np.array_equal(mouth[2], mouth[5])  # silent, silent
    assert not np.array_equal(mouth[2], mouth[20])  # silent vs loud
    levels = audio_levels(audio, RATE, FPS, n)
    assert levels[2] == 0.0 and levels[20] > 0.9


def test_audio_levels_empty_audio():
    assert audio_levels(np.zeros(0, np.float32), RATE, FPS, 5).tolist() == [0.0] * 5


def test_timeline_playhead_moves_right():
    req = request(
        num_frames=25,
        segment_start=0.0,
        total_duration=1.0,
        timeline_cuts=[0.5],
        timeline_phases=[],
    )
    lay = _layout(req.width, req.height)
    frames = AnimaticRenderer().render(req)
    bar = frames[:, lay.bar_y0 + 1 :]
    white = (bar == 255).all(axis=-1).all(axis=1)  # columns fully white = playhead
    positions = [np.nonzero(white[i])[0].mean() for i in (0, 12, 24)]
    assert positions[0] < positions[1] < positions[2]
    assert positions[2] == pytest.approx(24 / 25 * (req.width - 1), abs=3)


def test_phase_label_only_while_phase_active():
    req = request()
    lay = _layout(req.width, req.height)
    frames = AnimaticRenderer().render(req)
    x0, y0, x1, y1 = lay.label_box
    label = frames[:, y0:y1, x0:x1]
    # phase 0.2-0.6 s = frames 5..14
    assert np.array_equal(label[0], label[20])
    assert not np.array_equal(label[0], label[10])


def test_avatar_fills_frame_with_reference_image_preferred():
    red = Image.new("RGB", (50, 50), (200, 0, 0))
    blue = Image.new("RGB", (50, 50), (0, 0, 200))
    req = request(image=blue, reference_image=red, captions=[], timeline_phases=[],
                  prompt=StructuredPrompt("x"))  # fmt: skip
    frame = AnimaticRenderer().render(req)[0]
    assert tuple(frame[req.height // 2, req.width // 2]) == (200, 0, 0)
