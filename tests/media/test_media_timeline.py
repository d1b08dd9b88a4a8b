"""The timeline picture: a valid PNG of the expected size, written atomically."""

import sys

from PIL import Image

from flows.video.timeline import draw_timeline, timeline_size
from planners.schema import Phase, Word


def test_timeline_png(tmp_path):
    ws = [Word(word=f"w{i}", start=i * 0.4, end=i * 0.4 + 0.3) for i in range(25)]
    phases = [
        Phase(action="waves hello with the right hand", first_word=0, last_word=3, start=0.0, end=1.5),
        Phase(action="counts on the fingers of one hand while smiling warmly at everyone",
              first_word=10, last_word=14, start=4.0, end=5.9),
    ]  # fmt: skip
    out = draw_timeline(ws, phases, [5.0], 10.0, tmp_path / "timeline.png", title="Demo")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as im:
        im.verify()
    with Image.open(out) as im:
        assert im.size == timeline_size(10.0) == (800, 400)
        assert im.convert("L").getextrema()[0] < 100  # something dark was drawn
    assert [p.name for p in tmp_path.iterdir()] == ["timeline.png"]


def test_width_grows_with_duration_and_is_capped():
    assert timeline_size(30.0)[0] == 2000
    assert timeline_size(30.0)[0] > timeline_size(10.0)[0]
    assert timeline_size(3600.0) == (4800, 400)


def test_many_words_and_no_phases(tmp_path):
    ws = [Word(word="word", start=i * 0.25, end=i * 0.25 + 0.2) for i in range(1200)]
    out = draw_timeline(ws, [], [], 300.0, tmp_path / "long.png")
    with Image.open(out) as im:
        assert im.size == (4800, 400)


def test_matplotlib_is_imported_lazily():
    import importlib

    sys.modules.pop("flows.video.timeline", None)
    loaded = "matplotlib" in sys.modules
    importlib.import_module("flows.video.timeline")
    assert ("matplotlib" in sys.modules) == loaded
