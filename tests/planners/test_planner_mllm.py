"""MLLMPlanner through the real `openai` client against a real local HTTP server."""

import json
import socket
import time

import pytest
from fake_openai import FakeOpenAIServer, error, tool_call
from planner_helpers import make_request, make_words

from planners import (
    MLLMPlanner,
    MLLMSettings,
    Planner,
    RulePlanner,
    get_planner,
    plan_cache_key,
    validate_plan,
)

KEY = "sk-test-SECRET-0123456789abcdef"
TEXT = (
    "Hello everyone, welcome to our show. Today we look at three reasons why design "
    "matters a lot. Thank you for watching."
)  # 21 words; word i spans 0.4*i .. 0.4*i + 0.35
REQ = make_request(TEXT, cues=[("points to the chart", 13)])
BASE = {
    "identity": "a woman in a blue blazer",
    "scene": "a bright office",
    "mood": "warm",
    "style": "realistic",
    "motion": "subtle head movement",
}
GOOD = {
    "base": BASE,
    "phases": [
        {"first_word": 0, "last_word": 4, "action": "waves hello with the right hand"},
        {"first_word": 13, "last_word": 16, "action": "points to the chart"},
    ],
}
# density violation (3 phases within 5 s) and an action about the lips
BAD = {
    "base": BASE,
    "phases": [
        {"first_word": 0, "last_word": 4, "action": "waves hello with the right hand"},
        {"first_word": 13, "last_word": 16, "action": "points to the chart"},
        {"first_word": 17, "last_word": 20, "action": "moves the lips to say thanks"},
    ],
}


def settings(srv, **kw):
    base = {
        "base_url": srv.url,
        "api_key": KEY,
        "model": "fake-omni",
        "timeout": 5.0,
        "max_retries": 0,
    }
    return MLLMSettings(**{**base, **kw})


def kinds(plan):
    """Turn kinds without the once-per-endpoint prompt probes."""
    return [t.kind for t in plan.trace if t.kind != "probe"]


def answers(plan):
    return [t for t in plan.trace if t.kind != "probe"]


def assert_no_key(plan, srv=None):
    blob = json.dumps([t.model_dump() for t in plan.trace]) + plan.model_dump_json()
    blob += str(plan.fallback_reason)
    assert KEY not in blob
    if srv is not None:
        assert KEY not in json.dumps(srv.requests)  # never in a prompt


def test_valid_plan_first_time():
    with FakeOpenAIServer([GOOD]) as srv:
        plan = MLLMPlanner(settings(srv)).plan(REQ)
    assert plan.planner == "mllm" and plan.fallback_reason is None
    assert [(p.first_word, p.last_word, p.source) for p in plan.phases] == [
        (0, 4, "mllm"),
        (13, 16, "cue"),
    ]
    assert (plan.phases[1].start, plan.phases[1].end) == (5.2, 6.75)  # times from the words
    assert plan.base.identity == "a woman in a blue blazer"
    assert validate_plan(plan, REQ) == []
    # what was sent
    body = srv.requests[0]
    assert body["model"] == "fake-omni"
    assert body["response_format"]["type"] == "json_schema"
    schema = body["response_format"]["json_schema"]
    assert schema["strict"] is True and schema["schema"]["additionalProperties"] is False
    assert set(schema["schema"]["required"]) == {"base", "phases"}
    user = body["messages"][1]["content"]
    assert "13: design [5.20-5.55]" in user and '"points to the chart"' in user
    assert "at most 2 phases may overlap any 5-s window" in user
    assert srv.headers[0]["authorization"] == f"Bearer {KEY}"
    # what was recorded
    probe, turn = plan.trace
    assert probe.kind == "probe" and probe.max_tokens == 1 and len(srv.probes) == 1
    assert turn.kind == "plan" and turn.errors == [] and turn.model == "fake-omni"
    # the whole prompt arrived (the server's count is at least the lower bound)
    assert turn.prompt_tokens == srv.prompt_tokens(body) >= turn.expected_prompt_tokens > 300
    assert turn.completion_tokens == 20
    assert turn.seconds > 0 and len(turn.prompt_sha256) == 64
    assert "trace" not in plan.model_dump() and "trace" not in plan.model_dump_json()
    assert_no_key(plan, srv)


def test_invalid_then_repaired():
    with FakeOpenAIServer([BAD, GOOD]) as srv:
        plan = MLLMPlanner(settings(srv)).plan(REQ)
    assert plan.planner == "mllm" and plan.fallback_reason is None
    assert kinds(plan) == ["plan", "repair"]
    first_errors = answers(plan)[0].errors
    assert any("lips" in e for e in first_errors)
    assert any("fall within one 5-s window" in e for e in first_errors)
    repair = srv.requests[1]["messages"]
    assert repair[-2]["role"] == "assistant" and repair[-1]["role"] == "user"
    assert "Your answer breaks these rules" in repair[-1]["content"]
    assert "lips" in repair[-1]["content"]
    assert len(plan.phases) == 2


def test_garbage_every_time_falls_back_to_rules():
    with FakeOpenAIServer(["I am sorry, I cannot help with that."]) as srv:
        plan = MLLMPlanner(settings(srv, max_repair_turns=2)).plan(REQ)
    assert len(srv.requests) == 3  # 1 answer + 2 repairs
    assert plan.planner == "rules"
    assert plan.fallback_reason.startswith("mllm planner (fake-omni) failed, rule planner used")
    assert "no valid answer after 3 answers" in plan.fallback_reason
    assert kinds(plan) == ["plan", "repair", "repair"]
    assert plan.phases == RulePlanner().plan(REQ).phases
    assert validate_plan(plan, REQ) == []


def test_timeout_falls_back_quickly():
    with FakeOpenAIServer([{"sleep": 3.0, "content": json.dumps(GOOD)}]) as srv:
        t0 = time.monotonic()
        plan = MLLMPlanner(settings(srv, timeout=0.5)).plan(REQ)
        elapsed = time.monotonic() - t0
    assert elapsed < 2.5
    assert plan.planner == "rules" and "timeout after 0.5 s" in plan.fallback_reason
    assert kinds(plan) == ["error"]


def test_server_without_json_schema_gets_json_mode_and_it_is_remembered():
    with FakeOpenAIServer([GOOD], reject_json_schema=True) as srv:
        planner = MLLMPlanner(settings(srv))
        plan = planner.plan(REQ)
        again = planner.plan(REQ)
    assert plan.planner == "mllm" and again.planner == "mllm"
    formats = [(r.get("response_format") or {}).get("type") for r in srv.requests]
    assert formats == ["json_schema", "json_object", "json_object"]
    assert kinds(plan) == ["degrade", "plan"]
    assert "json_schema is not supported" in answers(plan)[0].errors[0]
    assert kinds(again) == ["plan"]


def test_server_without_any_response_format_gets_plain_text_and_prose_is_parsed():
    def answer(body, index):
        if body.get("response_format"):
            return error(400, "response_format is not supported by this server")
        return "Sure! Here is the plan:\n```json\n" + json.dumps(GOOD) + "\n```\nEnjoy."

    with FakeOpenAIServer(answer) as srv:
        plan = MLLMPlanner(settings(srv)).plan(REQ)
    assert plan.planner == "mllm"
    assert kinds(plan) == ["degrade", "degrade", "degrade", "plan"]
    assert [t.response_format for t in answers(plan)] == [
        "json_schema",
        "json_object+schema",
        "json_object",
        "text",
    ]
    assert "response_format" not in srv.requests[-1]


def test_refused_sampling_parameter_is_dropped():
    def answer(body, index):
        if "temperature" in body:
            return error(400, "Unsupported value: 'temperature' does not support 0.2")
        return GOOD

    with FakeOpenAIServer(answer) as srv:
        plan = MLLMPlanner(settings(srv)).plan(REQ)
    assert plan.planner == "mllm"
    assert kinds(plan) == ["degrade", "plan"]
    assert srv.requests[1]["response_format"]["type"] == "json_schema"
    assert "temperature" not in srv.requests[1] and srv.requests[1]["seed"] == 0


def test_forced_json_schema_does_not_degrade():
    with FakeOpenAIServer([GOOD], reject_json_schema=True) as srv:
        plan = MLLMPlanner(settings(srv, structured_outputs="json_schema")).plan(REQ)
    assert plan.planner == "rules" and "server rejected the request" in plan.fallback_reason
    assert len(srv.requests) == 1


def test_tool_call_round():
    responses = [
        {"tool_calls": [tool_call("list_words", {"first": 10, "last": 13})]},
        {"tool_calls": [tool_call("check_plan", {"plan": BAD}), tool_call("nope", {})]},
        GOOD,
    ]
    with FakeOpenAIServer(responses) as srv:
        plan = MLLMPlanner(settings(srv, use_tools=True)).plan(REQ)
    assert plan.planner == "mllm" and plan.fallback_reason is None
    assert kinds(plan) == ["tool", "tool", "plan"]
    assert answers(plan)[0].tool_calls == ['list_words({"first": 10, "last": 13})']
    tools = srv.requests[0]["tools"]
    assert [t["function"]["name"] for t in tools] == ["list_words", "check_plan"]
    assert all(t["function"]["strict"] for t in tools)
    tool_msgs = [m for m in srv.requests[1]["messages"] if m["role"] == "tool"]
    assert tool_msgs[0]["content"].splitlines() == [
        "10: three [4.00-4.35]",
        "11: reasons [4.40-4.75]",
        "12: why [4.80-5.15]",
        "13: design [5.20-5.55]",
    ]
    results = [m["content"] for m in srv.requests[2]["messages"] if m["role"] == "tool"]
    assert "lips" in results[1] and "unknown tool 'nope'" in results[2]
    echoed = [m for m in srv.requests[1]["messages"] if m.get("tool_calls")]
    assert echoed[0]["tool_calls"][0]["function"]["name"] == "list_words"


def test_server_without_tool_support_drops_tools():
    with FakeOpenAIServer([GOOD], reject_tools=True) as srv:
        plan = MLLMPlanner(settings(srv, use_tools=True)).plan(REQ)
    assert plan.planner == "mllm"
    assert kinds(plan) == ["degrade", "plan"]
    assert "tools" in srv.requests[0] and "tools" not in srv.requests[1]


def test_http_500_and_unreachable_server_fall_back():
    with FakeOpenAIServer([error(500, "boom")]) as srv:
        plan = MLLMPlanner(settings(srv)).plan(REQ)
    assert plan.planner == "rules" and "HTTP 500: boom" in plan.fallback_reason
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = MLLMSettings(
        base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=2
    )
    plan = MLLMPlanner(dead).plan(REQ)
    assert plan.planner == "rules" and "cannot reach the server" in plan.fallback_reason
    assert_no_key(plan)


def test_api_key_never_recorded_even_if_the_server_echoes_it():
    def echo(body, index):
        return f"not json; you sent {srv.headers[-1]['authorization']}"

    with FakeOpenAIServer(echo) as srv:
        plan = MLLMPlanner(settings(srv, max_repair_turns=1)).plan(REQ)
    assert plan.trace and "you sent Bearer ***" in answers(plan)[0].answer
    assert_no_key(plan)
    assert KEY not in repr(MLLMSettings(api_key=KEY))
    assert "api_key" not in MLLMSettings(api_key=KEY).public()


def test_avatar_image_sent_as_data_url_but_not_recorded(tmp_path):
    img = tmp_path / "avatar.png"
    img.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    req = REQ.model_copy(update={"avatar_image": str(img)})
    with FakeOpenAIServer([GOOD]) as srv:
        plan = MLLMPlanner(settings(srv)).plan(req)
    parts = srv.requests[0]["messages"][1]["content"]
    assert parts[0]["type"] == "text"
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")
    summary = answers(plan)[0].messages[1]
    assert "[image " in summary and "base64" not in summary
    missing = REQ.model_copy(update={"avatar_image": str(tmp_path / "nope.png")})
    with FakeOpenAIServer([GOOD]) as srv:
        plan = MLLMPlanner(settings(srv)).plan(missing)
    assert isinstance(srv.requests[0]["messages"][1]["content"], str)
    assert plan.warnings == ["avatar image not sent: missing, unreadable or too large"]


ANNOTATION = {
    "caption": "A woman speaking",
    "base": BASE,
    "phases": [{"first_word": 0, "last_word": 4, "action": "waves hello with the right hand"}],
}


def test_annotate_mode():
    words = make_words("Hello everyone, welcome to our show. Today we talk about design.")
    frames = [b"\x89PNG\r\n\x1a\n" + bytes([i]) * 32 for i in range(20)]
    with FakeOpenAIServer([{"caption": "", "base": BASE, "phases": []}, ANNOTATION]) as srv:
        ann = MLLMPlanner(settings(srv, max_frames=4)).annotate(words, frames, duration=5.0)
    assert ann.caption == "A woman speaking" and ann.planner == "mllm"
    assert ann.anchors == [(0.0, 0.39)]
    assert [(p.first_word, p.last_word, p.source) for p in ann.phases] == [(0, 4, "annotation")]
    assert [t.kind for t in ann.trace if t.kind != "probe"] == ["plan", "repair"]
    sent = srv.requests[0]["messages"][1]["content"]
    assert sum(p["type"] == "image_url" for p in sent) == 4
    assert srv.requests[0]["response_format"]["json_schema"]["name"] == "AnnotationAnswer"
    assert "trace" not in ann.model_dump()


def test_annotate_falls_back_to_rules():
    words = make_words("Hello everyone, welcome to our show.")
    with FakeOpenAIServer(["???"]) as srv:
        ann = MLLMPlanner(settings(srv, max_repair_turns=0)).annotate(words, duration=4.0)
    assert ann.planner == "rules" and ann.caption == "A person speaking to the camera"
    assert "no valid answer" in ann.fallback_reason and ann.anchors == [(0.0, 0.4875)]


def test_plan_cache_key(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"image-one")
    b.write_bytes(b"image-one")
    req = REQ.model_copy(update={"avatar_image": str(a)})
    s = MLLMSettings(base_url="http://one/v1", api_key=KEY, model="m1")
    key = plan_cache_key(req, s)
    assert len(key) == 64 and key == plan_cache_key(req, s)
    # same content at another path, other key/timeouts, credentials or a trailing slash in
    # the URL: same key
    same = plan_cache_key(
        req.model_copy(update={"avatar_image": str(b)}),
        MLLMSettings(
            base_url="http://user:pw@ONE/v1/",
            api_key="sk-other-key-000000",
            model="m1",
            timeout=3,
            max_retries=5,
        ),
    )
    assert same == key
    # another endpoint serving a model of the same name plans differently
    assert plan_cache_key(req, s.model_copy(update={"base_url": "http://two/v1"})) != key
    b.write_bytes(b"image-two")
    assert plan_cache_key(req.model_copy(update={"avatar_image": str(b)}), s) != key
    assert plan_cache_key(req, s.model_copy(update={"model": "m2"})) != key
    assert plan_cache_key(make_request(TEXT + " Bye."), s) != plan_cache_key(make_request(TEXT), s)
    assert plan_cache_key(req) != key and plan_cache_key(req) == plan_cache_key(REQ)
    assert KEY not in key


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("AVATAR_FLOW_LLM_BASE_URL", "http://llm:8000/v1")
    monkeypatch.setenv("AVATAR_FLOW_LLM_MODEL", "Qwen/Qwen2.5-Omni-7B")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key-123456")
    monkeypatch.setenv("AVATAR_FLOW_LLM_USE_TOOLS", "true")
    monkeypatch.setenv("AVATAR_FLOW_LLM_TIMEOUT", "2.5")
    s = MLLMSettings()
    assert (s.base_url, s.model, s.use_tools, s.timeout) == (
        "http://llm:8000/v1",
        "Qwen/Qwen2.5-Omni-7B",
        True,
        2.5,
    )
    assert s.api_key.get_secret_value() == "sk-env-key-123456"
    assert "sk-env" not in repr(s) and "sk-env" not in str(s.public())
    assert MLLMSettings(model="other").model == "other"


def test_get_planner():
    assert isinstance(get_planner("rules"), RulePlanner)
    p = get_planner("mllm", base_url="http://x/v1", model="m", api_key=KEY)
    assert isinstance(p, MLLMPlanner) and p.settings.model == "m"
    assert isinstance(p, Planner) and isinstance(get_planner("rules"), Planner)
    with pytest.raises(ValueError, match="unknown planner"):
        get_planner("magic")
