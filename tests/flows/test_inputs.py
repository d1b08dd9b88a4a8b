"""Bad input stops before any heavy work with a one-line error naming the file and field."""

import pytest
from PIL import Image
from support import EXAMPLES, write_script

from flows.runtime.errors import InputError
from flows.runtime.settings import get_settings
from flows.video.avatar import check_avatar, default_avatar
from flows.video.inputs import JobOptions, prepare_inputs


def _script_with_avatar(tmp_path, avatar_name: str):
    return write_script(tmp_path, "Hello there, friends.", avatar=avatar_name)


def test_avatar_checks(tmp_path):
    ok = tmp_path / "ok.png"
    default_avatar(300, 260).save(ok)
    assert check_avatar(ok) == (300, 260)
    small = tmp_path / "small.png"
    Image.new("RGB", (300, 200)).save(small)
    text = tmp_path / "text.png"
    text.write_text("not an image")
    huge = tmp_path / "huge.png"
    Image.new("1", (8000, 6000)).save(huge)  # 48 MP, tiny on disk
    cases = [
        (tmp_path / "missing.png", "not found"),
        (small, "at least 256 px"),
        (text, "not an image"),
        (huge, "limit is 40 MP"),
        (tmp_path, "not a file"),
    ]
    for path, fragment in cases:
        with pytest.raises(InputError, match=fragment) as e:
            check_avatar(path, file="s.md")
        assert e.value.field == "avatar"
        assert str(e.value).startswith("s.md: field 'avatar': ")


def test_prepare_inputs_rejects_each_bad_option(tmp_path, fresh_home, monkeypatch):
    settings = get_settings()
    good = EXAMPLES / "hello.md"
    base = prepare_inputs(good, JobOptions(), settings)
    assert base.avatar_sha != "default" and base.voice == "piper"
    # The key depends on options and content, not on when it was computed.
    assert prepare_inputs(good, JobOptions(), settings).input_key == base.input_key
    assert (
        prepare_inputs(good, JobOptions(planner="rule", segment_seconds=4), settings).input_key
        != base.input_key
    )
    assert prepare_inputs(good, JobOptions(continuity=9), settings).input_key != base.input_key
    bad = [
        (dict(renderer="magic"), "renderer", "unknown renderer"),
        (dict(planner="oracle"), "planner", "unknown planner"),
        (dict(renderer="actavatar", checkpoint=str(tmp_path)), "checkpoint", "model_index.json"),
        (dict(planner="mllm"), "planner", "AVATAR_FLOW_LLM_BASE_URL"),
        (dict(voice="openai:nova"), "voice", "OPENAI_API_KEY"),
        (dict(voice="klingon"), "voice", "unknown voice"),
        (dict(continuity=4), "continuity", "0 or 1, 5, 9"),
        (dict(steps=0), "steps", "between 1 and 200"),
        (dict(segment_seconds=0), "segment_seconds", "above 0"),
        (dict(webhook="ftp://x"), "webhook", "http"),
        (dict(steps="many"), "steps", "'many' is not a number"),
        (dict(colour="red"), "colour", "unknown option 'colour'"),
    ]
    for values, field, fragment in bad:
        with pytest.raises(InputError, match=fragment) as e:
            prepare_inputs(good, JobOptions.parse(**values), settings)
        assert e.value.field == field


def test_script_avatar_problems_name_the_script(tmp_path, fresh_home):
    Image.new("RGB", (100, 100)).save(tmp_path / "tiny.png")
    p = _script_with_avatar(tmp_path, "tiny.png")
    with pytest.raises(InputError) as e:
        prepare_inputs(p, JobOptions(), get_settings())
    assert str(e.value).startswith(f"{p}: field 'avatar': tiny.png is 100x100")


def test_overlong_text_is_refused_before_synthesis(tmp_path, fresh_home, monkeypatch):
    monkeypatch.setenv("AVATAR_FLOW_MAX_AUDIO_SECONDS", "10")
    settings = get_settings(refresh=True)
    p = write_script(tmp_path, " ".join(["word"] * 60))
    with pytest.raises(InputError, match="60 words would take at least 15 s") as e:
        prepare_inputs(p, JobOptions(), settings)
    assert e.value.field == "text"


def test_mllm_planner_is_configured_by_the_planner_s_own_rules(fresh_home, monkeypatch):
    settings = get_settings()
    good = EXAMPLES / "hello.md"
    with pytest.raises(InputError, match="AVATAR_FLOW_LLM_BASE_URL"):
        prepare_inputs(good, JobOptions(planner="mllm"), settings)
    # A local server named only by OPENAI_BASE_URL (no key needed) is enough, as for the planner.
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert prepare_inputs(good, JobOptions(planner="mllm"), settings).options.planner == "mllm"
