import pytest
from support import EXAMPLES, write_script

from flows.runtime.errors import InputError
from flows.video.script import parse_script


def test_examples_parse_with_cues_and_scenes():
    s = parse_script(EXAMPLES / "product-tour.md")
    assert s.title == "The avatar-flow product tour"
    assert [sc.title for sc in s.scenes] == ["Welcome", "How it works", "Why it matters", "Wrap up"]
    assert s.scenes[0].first_word == 0
    assert s.scenes[-1].last_word == len(s.words) - 1
    # Scenes tile the words without gaps.
    for a, b in zip(s.scenes, s.scenes[1:]):
        assert b.first_word == a.last_word + 1
    assert len(s.cues) == 3
    cue = s.cues[0]
    assert cue.text == "counts on the fingers of one hand"
    assert s.words[cue.word_index] == "First,"
    assert s.avatar == (EXAMPLES / "presenter.png").resolve()
    assert (s.width, s.height, s.fps, s.seed) == (1280, 704, 25, 11)
    assert "#" not in s.text and "[[" not in s.text


def test_cue_binds_to_following_word_and_markup_is_stripped(tmp_path):
    p = write_script(tmp_path, "Hello *there* [[waves]] my [friend](http://x.y) - ok.\n")
    s = parse_script(p)
    assert s.words == ["Hello", "there", "my", "friend", "ok."]
    assert [(c.text, c.word_index) for c in s.cues] == [("waves", 2)]
    assert s.voice == "piper"
    assert s.title == "script"


def test_unknown_key_suggests_the_right_one(tmp_path):
    p = write_script(tmp_path, "Hi there.", avatr="a.png")
    with pytest.raises(InputError) as e:
        parse_script(p)
    msg = str(e.value)
    assert "unknown key 'avatr'" in msg and "did you mean 'avatar'" in msg
    assert msg.startswith(f"{p}:2:") and e.value.field == "avatr"


def test_bad_yaml_names_file_and_line(tmp_path):
    p = tmp_path / "s.md"
    p.write_text("---\ntitle: ok\nstyle: [unclosed\n---\nHello.\n")
    with pytest.raises(InputError) as e:
        parse_script(p)
    assert str(p) in str(e.value) and "bad YAML" in str(e.value)
    assert e.value.line is not None and e.value.line >= 3


@pytest.mark.parametrize(
    ("front", "body", "field", "fragment"),
    [
        ({}, "", None, "nothing to say"),
        ({}, "# Only a heading\n", None, "nothing to say"),
        ({"resolution": "1000x701"}, "Hi.", "resolution", "multiples of 16"),
        ({"resolution": "big"}, "Hi.", "resolution", "WIDTHxHEIGHT"),
        ({"fps": "fast"}, "Hi.", "fps", "whole number"),
        ({"seed": -1}, "Hi.", "seed", "non-negative"),
        ({"voice": "piper", "audio": "a.wav"}, "Hi.", "voice", "not both"),
        ({"segment_seconds": 30}, "Hi.", "segment_seconds", "between 1 and 10"),
        ({}, "Hello [[waves]]", "cue", "no word after it"),
        ({}, "Hello [[ ]] there", "cue", "empty cue"),
        ({}, "Hello [[waves there", "cue", "unbalanced"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(tmp_path, front, body, field, fragment):
    p = write_script(tmp_path, body, **front)
    with pytest.raises(InputError) as e:
        parse_script(p)
    assert fragment in str(e.value)
    assert e.value.field == field
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_missing_script_and_unclosed_front_matter(tmp_path):
    with pytest.raises(InputError, match="script not found"):
        parse_script(tmp_path / "nope.md")
    p = tmp_path / "s.md"
    p.write_text("---\ntitle: x\nHello.\n")
    with pytest.raises(InputError, match="never closed"):
        parse_script(p)


def test_paths_resolve_relative_to_the_script(tmp_path):
    sub = tmp_path / "deep"
    sub.mkdir()
    p = write_script(sub, "Hi there.", avatar="../img/me.png")
    assert parse_script(p).avatar == (tmp_path / "img" / "me.png").resolve()


def test_content_hash_ignores_path_but_not_text(tmp_path):
    a = write_script(tmp_path, "Hello there.", name="a.md")
    b = write_script(tmp_path, "Hello there.", name="b.md", title="b")
    c = write_script(tmp_path, "Hello you.", name="c.md", title="b")
    ha = parse_script(a).content_hash()
    assert parse_script(a).content_hash() == ha
    assert parse_script(b).content_hash() != parse_script(c).content_hash()
