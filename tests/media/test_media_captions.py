"""Caption grouping and exact SRT / WebVTT output."""

from flows.video.captions import Cue, caption_cues, srt_text, vtt_text, write_srt, write_vtt
from planners.schema import Word


def words(*items: tuple[str, float, float]) -> list[Word]:
    return [Word(word=w, start=s, end=e) for w, s, e in items]


SMALL = words(
    ("Hello", 0.0, 0.4), ("world.", 0.45, 1.0),
    ("This", 1.2, 1.4), ("is", 1.45, 1.55), ("a", 1.6, 1.65), ("test", 1.7, 2.0),
    ("again", 3.5, 3.9),  # after a 1.5 s pause
)  # fmt: skip


def test_cues_break_at_sentences_and_pauses():
    assert caption_cues(SMALL) == [
        Cue(0.0, 1.0, "Hello world."),
        Cue(1.2, 2.0, "This is a test"),
        Cue(3.5, 4.3, "again"),  # held for min_duration
    ]


def test_cues_respect_max_chars_and_never_overlap():
    ws = [Word(word=f"word{i:02d}", start=i * 0.3, end=i * 0.3 + 0.25) for i in range(40)]
    cues = caption_cues(ws, max_chars=30)
    assert all(len(c.text) <= 30 for c in cues)
    assert " ".join(c.text for c in cues) == " ".join(w.word for w in ws)
    assert all(a.end <= b.start for a, b in zip(cues, cues[1:]))
    assert all(c.end - c.start <= 5.0 + 1e-9 for c in cues)


def test_cues_respect_max_duration():
    ws = [Word(word="a", start=i * 1.0, end=i * 1.0 + 0.9) for i in range(12)]
    cues = caption_cues(ws, max_duration=3.0)
    assert all(c.end - c.start <= 3.0 for c in cues)
    assert sum(len(c.text.split()) for c in cues) == 12


def test_balanced_break_prefers_the_comma():
    ws = [Word(word=w, start=i * 0.3, end=i * 0.3 + 0.25) for i, w in
          enumerate(["Hello", "everyone,", "and", "welcome", "to", "the", "product", "tour", "today"])]  # fmt: skip
    assert [c.text for c in caption_cues(ws)] == [
        "Hello everyone,",
        "and welcome to the product tour today",
    ]


def test_empty_and_blank_words():
    assert caption_cues([]) == []
    assert caption_cues(words((" ", 0, 0.1), ("hi", 0.2, 0.5))) == [Cue(0.2, 1.0, "hi")]


def test_srt_exact(tmp_path):
    expected = (
        "1\n00:00:00,000 --> 00:00:01,000\nHello world.\n\n"
        "2\n00:00:01,200 --> 00:00:02,000\nThis is a test\n\n"
        "3\n00:00:03,500 --> 00:00:04,300\nagain\n"
    )
    assert srt_text(caption_cues(SMALL)) == expected
    out = write_srt(SMALL, tmp_path / "c.srt")
    assert out.read_text(encoding="utf-8") == expected


def test_vtt_exact(tmp_path):
    expected = (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:01.000\nHello world.\n\n"
        "00:00:01.200 --> 00:00:02.000\nThis is a test\n\n"
        "00:00:03.500 --> 00:00:04.300\nagain\n"
    )
    assert vtt_text(caption_cues(SMALL)) == expected
    assert write_vtt(SMALL, tmp_path / "c.vtt").read_text(encoding="utf-8") == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.vtt"]


def test_long_timestamps():
    ws = words(("late", 3723.4567, 3724.0))
    assert "01:02:03,457 --> 01:02:04,257" in srt_text(caption_cues(ws))
