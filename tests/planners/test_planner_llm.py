"""ask_json / MLLMPlanner behaviours a real server cannot be made to show on demand, through
the real openai client against the loopback fake (tests/planners/fake_openai.py)."""

import json
import socket
import time

from fake_openai import FakeOpenAIServer, error
from planner_helpers import make_request
from pydantic import BaseModel, ConfigDict

from planners import (
    TEMPORARY_FAILURES,
    ChatEndpoint,
    EndpointCapabilities,
    JsonCapabilityStore,
    MemoryCapabilityStore,
    MLLMPlanner,
    MLLMSettings,
    ask_json,
    default_store,
    endpoint_id,
    plan_cacheable,
)
from planners.llm import bounded_schema, prompt_lower_bound, schema_max_tokens, strict_schema
from planners.mllm import max_phases
from planners.mllm_prompt import PlanAnswer

KEY = "sk-test-SECRET-0123456789abcdef"
REQ = make_request(
    "Hello everyone, welcome to our show. Today we look at three reasons why design "
    "matters a lot. Thank you for watching."
)
BASE = {
    "identity": "a woman",
    "scene": "an office",
    "mood": "warm",
    "style": "real",
    "motion": "calm",
}
GOOD = {"base": BASE, "phases": [{"first_word": 0, "last_word": 4, "action": "waves hello"}]}


def settings(srv, **kw):
    base = {"base_url": srv.url, "api_key": KEY, "model": "m", "timeout": 5.0, "max_retries": 0}
    return MLLMSettings(**{**base, **kw})


def formats(srv):
    return [(r.get("response_format") or {}).get("type") for r in srv.requests]


def with_image(tmp_path):
    img = tmp_path / "avatar.png"
    img.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return REQ.model_copy(update={"avatar_image": str(img)})


class Small(BaseModel):
    model_config = ConfigDict(extra="forbid")

    word: str
    count: int


def test_http_500_naming_response_format_steps_down_to_the_schema_grammar_and_is_remembered(
    tmp_path, caplog
):
    store = JsonCapabilityStore(tmp_path / "endpoints.json")
    with FakeOpenAIServer([GOOD], reject_json_schema=True, reject_status=500) as srv:
        plan = MLLMPlanner(settings(srv), capabilities=store).plan(REQ)
        assert plan.planner == "mllm" and plan.fallback_kind is None
        assert formats(srv) == ["json_schema", "json_object"]
        sent = srv.requests[1]["response_format"]["schema"]  # json_object + schema (grammar)
        phase = sent["$defs"]["PhaseAnswer"]["properties"]
        assert phase["first_word"]["enum"] == list(range(21))  # only existing words
        assert phase["action"]["maxLength"] == 80 and phase["action"]["minLength"] == 1
        assert sent["properties"]["phases"]["maxItems"] == max_phases(REQ)
        assert [t.kind for t in plan.trace] == ["probe", "degrade", "plan"]
        assert plan.trace[1].errors[0].startswith("HTTP 500: response_format.type")
        steps = [r.message for r in caplog.records if "refused response format" in r.message]
        assert len(steps) == 1 and "using json_object+schema from now on" in steps[0]
        # A new planner (another process) starts at the remembered format, without a probe.
        again = MLLMPlanner(settings(srv), capabilities=store).plan(REQ)
        assert [t.kind for t in again.trace] == ["plan"]
        assert formats(srv)[2:] == ["json_object"] and len(srv.probes) == 1
        # Forgetting the endpoint (server upgraded) negotiates again.
        assert again.planner == "mllm"
        ep = ChatEndpoint(settings(srv), store=store)
        assert ep.reset() == 1 and store.load(endpoint_id(srv.url), "m") is None
    key = f"{endpoint_id(srv.url)} m"
    assert json.loads((tmp_path / "endpoints.json").read_text()) == {}
    assert key.startswith("http://127.0.0.1:")


def test_400_not_about_the_format_is_not_a_step_down():
    with FakeOpenAIServer([error(400, "model 'm' does not exist")]) as srv:
        plan = MLLMPlanner(settings(srv)).plan(REQ)
    assert plan.fallback_kind == "refused_request" and formats(srv) == ["json_schema"]
    assert "server rejected the request: HTTP 400" in plan.fallback_reason
    assert not plan_cacheable(plan)


def test_server_dropping_list_content_gets_plain_text_and_is_remembered_text_only(tmp_path):
    req = with_image(tmp_path)
    store = MemoryCapabilityStore()
    with FakeOpenAIServer([GOOD], drop_list_content=True) as srv:
        plan = MLLMPlanner(settings(srv), capabilities=store).plan(req)
        parts_probe, text_probe = srv.probes
        assert isinstance(text_probe["messages"][1]["content"], str)
        assert isinstance(parts_probe["messages"][1]["content"], list)
        # the answer request went as plain text, with every word of the prompt
        user = srv.requests[0]["messages"][1]["content"]
        assert isinstance(user, str) and "20: watching. [8.00-8.35]" in user
        caps = store.load(endpoint_id(srv.url), "m")
        assert caps.images is False and caps.prompt_checked
        MLLMPlanner(settings(srv), capabilities=store).plan(req)
        assert len(srv.probes) == 2 and isinstance(srv.requests[1]["messages"][1]["content"], str)
    assert plan.planner == "mllm"
    assert [t.kind for t in plan.trace] == ["probe", "probe", "plan"]
    assert plan.trace[0].prompt_tokens < plan.trace[1].prompt_tokens  # parts, then text


def test_server_dropping_only_image_parts_is_text_only_and_one_seeing_them_is_not(tmp_path):
    req = with_image(tmp_path)
    with FakeOpenAIServer([GOOD], drop_images=True) as srv:
        store = MemoryCapabilityStore()
        MLLMPlanner(settings(srv), capabilities=store).plan(req)
        assert store.load(endpoint_id(srv.url), "m").images is False
        assert isinstance(srv.requests[0]["messages"][1]["content"], str)
    with FakeOpenAIServer([GOOD]) as srv:
        store = MemoryCapabilityStore()
        MLLMPlanner(settings(srv), capabilities=store).plan(req)
        assert store.load(endpoint_id(srv.url), "m").images is True
        parts = srv.requests[0]["messages"][1]["content"]
        assert [p["type"] for p in parts] == ["text", "image_url"]
    # send_image=True sends the image even to an endpoint remembered as text-only
    with FakeOpenAIServer([GOOD], drop_images=True) as srv:
        store = MemoryCapabilityStore()
        caps = EndpointCapabilities(images=False, prompt_checked=True)
        store.save(endpoint_id(srv.url), "m", caps)
        MLLMPlanner(settings(srv, send_image=True), capabilities=store).plan(req)
        assert isinstance(srv.requests[0]["messages"][1]["content"], list) and not srv.probes


def test_streamed_usage_showing_a_dropped_image_resends_as_plain_text(tmp_path):
    req = with_image(tmp_path)
    store = MemoryCapabilityStore()

    def answer(body, index):
        if index == 0:  # usage as a server that lost the list content reports it
            return {"content": json.dumps(GOOD), "usage": {"prompt_tokens": 300}}
        return GOOD

    with FakeOpenAIServer(answer) as srv:
        caps = EndpointCapabilities(images=True, prompt_checked=True)  # wrongly remembered
        store.save(endpoint_id(srv.url), "m", caps)
        plan = MLLMPlanner(settings(srv), capabilities=store).plan(req)
    assert [t.kind for t in plan.trace] == ["plan", "resend"]
    assert "received 300 of at least" in plan.trace[0].errors[0]
    assert isinstance(srv.requests[1]["messages"][1]["content"], str)
    assert store.load(endpoint_id(srv.url), "m").images is False
    assert plan.planner == "mllm"


def test_a_prompt_cut_even_as_plain_text_is_a_temporary_failure():
    def answer(body, index):
        return GOOD

    with FakeOpenAIServer(answer) as srv:
        srv.prompt_tokens = lambda body: 50  # a tiny context window
        plan = MLLMPlanner(settings(srv)).plan(REQ)
    assert plan.fallback_kind == "truncated_prompt" and not srv.requests
    assert "received 50 prompt tokens of at least" in plan.fallback_reason
    assert not plan_cacheable(plan)


def test_one_budget_closes_the_stream_and_never_waits_twice():
    slow = {"content": json.dumps(GOOD), "chunk_sleep": 0.3}  # ~30 chunks: 9 s
    with FakeOpenAIServer([slow]) as srv:
        ticks = []
        planner = MLLMPlanner(settings(srv, timeout=1.5, max_retries=3), on_progress=ticks.append)
        t0 = time.monotonic()
        plan = planner.plan(REQ)
        elapsed = time.monotonic() - t0
        time.sleep(0.8)  # the server notices the hang-up at its next write
        assert srv.disconnects == 1
    assert 1.4 < elapsed < 2.5
    assert plan.fallback_kind == "timeout" and "timeout after 1.5 s" in plan.fallback_reason
    assert len(srv.requests) == 1  # no retry after the budget ran out
    cut = plan.trace[-1]  # the partial answer is kept for the record
    assert cut.kind == "error" and cut.answer and json.dumps(GOOD).startswith(cut.answer)
    assert cut.completion_tokens >= 2
    assert 1.4 < sum(t.seconds for t in plan.trace) < 2.5  # the probe and the cut answer
    tokens = [p.tokens for p in ticks if p.kind == "plan"]
    assert tokens[0] == 0 and tokens == sorted(tokens) and tokens[-1] >= 2
    assert all(p.budget_left <= 1.5 for p in ticks)


def test_retries_of_a_failing_server_stay_inside_the_budget():
    with FakeOpenAIServer([error(503, "loading model")]) as srv:
        plan = MLLMPlanner(settings(srv, max_retries=2, timeout=30)).plan(REQ)
        assert len(srv.requests) == 3  # ours: 1 + 2 retries; the client's own are off
    assert (
        plan.fallback_kind == "server_error" and "HTTP 503: loading model" in plan.fallback_reason
    )
    with FakeOpenAIServer([error(503, "loading model")]) as srv:
        t0 = time.monotonic()
        plan = MLLMPlanner(settings(srv, max_retries=5, timeout=1.2)).plan(REQ)
        assert time.monotonic() - t0 < 2.0
    assert plan.fallback_kind in ("timeout", "server_error")


def test_unreachable_server_is_a_temporary_fallback_quickly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = MLLMSettings(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=1)
    t0 = time.monotonic()
    plan = MLLMPlanner(dead).plan(REQ)
    assert time.monotonic() - t0 < 3
    assert plan.fallback_kind == "unreachable" and not plan_cacheable(plan)
    assert [t.kind for t in plan.trace] == ["error"]  # the probe failed: no answer request
    assert "unreachable" in TEMPORARY_FAILURES and "invalid_answer" not in TEMPORARY_FAILURES


def test_invalid_answers_are_a_lasting_fallback():
    with FakeOpenAIServer(["no"]) as srv:
        plan = MLLMPlanner(settings(srv, max_repair_turns=1)).plan(REQ)
    assert plan.fallback_kind == "invalid_answer" and plan_cacheable(plan)
    assert len(srv.requests) == 2


def test_max_tokens_comes_from_the_schema_and_the_words():
    with FakeOpenAIServer([GOOD]) as srv:
        MLLMPlanner(settings(srv)).plan(REQ)
        MLLMPlanner(settings(srv, max_tokens=123)).plan(REQ)
    schema = bounded_schema(strict_schema(PlanAnswer), 80, max_phases(REQ))
    expected = schema_max_tokens(schema, 80, max_phases(REQ))
    assert srv.requests[0]["max_tokens"] == expected
    assert 300 < expected < 2000
    assert srv.requests[1]["max_tokens"] == 123
    longer = make_request(" ".join(["word"] * 200), word_s=0.6)
    assert max_phases(longer) > max_phases(REQ)
    assert all(r["stream"] and r["stream_options"] == {"include_usage": True} for r in srv.requests)


def test_refused_max_tokens_becomes_max_completion_tokens():
    def answer(body, index):
        if "max_tokens" in body:
            return error(400, "Unsupported parameter: 'max_tokens'. Use 'max_completion_tokens'.")
        return GOOD

    with FakeOpenAIServer(answer) as srv:
        plan = MLLMPlanner(settings(srv)).plan(REQ)
    assert plan.planner == "mllm"
    assert "max_completion_tokens" in srv.requests[-1] and "max_tokens" not in srv.requests[-1]


def test_ask_json_for_any_model_and_the_key_stays_out():
    with FakeOpenAIServer([{"word": "red", "count": 3}]) as srv:
        ep = ChatEndpoint(settings(srv), store=MemoryCapabilityStore())
        out = ask_json(ep, [{"role": "user", "content": "a word"}], Small, kind="judge")
    assert out.result == Small(word="red", count=3) and out.failure is None
    assert [t.kind for t in out.turns] == ["probe", "judge"]
    assert KEY not in json.dumps([t.model_dump() for t in out.turns])


def test_images_required_fails_on_a_text_only_endpoint(tmp_path):
    parts = [
        {"type": "text", "text": "frame"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    with FakeOpenAIServer([{"word": "red", "count": 3}], drop_images=True) as srv:
        ep = ChatEndpoint(settings(srv), store=MemoryCapabilityStore())
        out = ask_json(ep, [{"role": "user", "content": parts}], Small, require_images=True)
    assert out.failure.kind == "refused_format" and "drops image parts" in out.failure.message
    assert not srv.requests


def test_prompt_lower_bound_and_default_store(monkeypatch, tmp_path):
    msgs = [{"role": "user", "content": "13: design [5.20-5.55]"}]
    assert prompt_lower_bound(msgs) == 12
    parts = [{"role": "user", "content": [{"type": "text", "text": "a b"}, {"type": "image_url"}]}]
    assert prompt_lower_bound(parts) == 2
    monkeypatch.setenv("AVATAR_FLOW_HOME", str(tmp_path))
    assert default_store().path == tmp_path / "llm-endpoints.json"
    assert endpoint_id("HTTP://User:pw@Host:8000/v1/?x=1") == "http://host:8000/v1"
    assert endpoint_id(None) == "https://api.openai.com/v1"
