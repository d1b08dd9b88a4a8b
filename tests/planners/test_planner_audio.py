"""Omni models can hear the speech: an `input_audio` part, never recorded in the trace."""

import base64
import io
import json
import wave

from fake_openai import FakeOpenAIServer
from test_planner_mllm import GOOD, KEY, REQ, settings

from planners import MLLMPlanner, plan_cache_key


def _wav(path, seconds=0.5, value=1000):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(16000)
        wf.writeframes((value).to_bytes(2, "little", signed=True) * int(16000 * seconds))
    path.write_bytes(buf.getvalue())
    return path


def _audio_parts(body):
    user = next(m for m in body["messages"] if m["role"] == "user")
    content = user["content"] if isinstance(user["content"], list) else []
    return [p for p in content if p.get("type") == "input_audio"]


def test_speech_is_sent_as_input_audio_when_enabled(tmp_path):
    wav = _wav(tmp_path / "speech16k.wav")
    request = REQ.model_copy(update={"speech_audio": str(wav)})
    with FakeOpenAIServer([GOOD]) as srv:
        plan = MLLMPlanner(settings(srv, send_audio=True)).plan(request)
        parts = _audio_parts(srv.requests[0])
    assert plan.fallback_reason is None
    assert len(parts) == 1 and parts[0]["input_audio"]["format"] == "wav"
    assert base64.b64decode(parts[0]["input_audio"]["data"]) == wav.read_bytes()
    recorded = json.dumps([t.model_dump(mode="json") for t in plan.trace])
    assert parts[0]["input_audio"]["data"][:200] not in recorded and "[audio " in recorded
    assert KEY not in recorded


def test_no_audio_by_default_and_a_missing_file_is_a_warning(tmp_path):
    request = REQ.model_copy(update={"speech_audio": str(_wav(tmp_path / "s.wav"))})
    with FakeOpenAIServer([GOOD]) as srv:
        MLLMPlanner(settings(srv)).plan(request)
        assert _audio_parts(srv.requests[0]) == []
    missing = REQ.model_copy(update={"speech_audio": str(tmp_path / "gone.wav")})
    with FakeOpenAIServer([GOOD]) as srv:
        plan = MLLMPlanner(settings(srv, send_audio=True)).plan(missing)
        assert _audio_parts(srv.requests[0]) == []
    assert any("speech audio not sent" in w for w in plan.warnings)


def test_cache_key_follows_the_audio_content_only_when_it_is_sent(tmp_path):
    a = REQ.model_copy(update={"speech_audio": str(_wav(tmp_path / "a.wav", value=1000))})
    b = REQ.model_copy(update={"speech_audio": str(_wav(tmp_path / "b.wav", value=2000))})
    with FakeOpenAIServer([GOOD]) as srv:
        hearing, deaf = settings(srv, send_audio=True), settings(srv)
    assert plan_cache_key(a, hearing) != plan_cache_key(b, hearing)
    assert plan_cache_key(a, deaf) == plan_cache_key(b, deaf)
    assert plan_cache_key(a, hearing) != plan_cache_key(a, deaf)
