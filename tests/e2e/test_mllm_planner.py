"""The MLLM planner through the CLI against a real OpenAI-protocol server on 127.0.0.1."""

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from support import EXAMPLES
from test_produce import _run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "planners"))
from fake_openai import FakeOpenAIServer  # noqa: E402

pytestmark = pytest.mark.slow
SECRET = "sk-test-do-not-leak-0123456789"

PLAN = {
    "base": {
        "identity": "A presenter in a blue sweater",
        "scene": "a soft studio",
        "mood": "friendly",
        "style": "clean, bright",
        "motion": "steady upper body",
    },
    "phases": [
        {
            "first_word": 3,
            "last_word": 10,
            "action": "points toward the viewer with the index finger",
        },
        {"first_word": 21, "last_word": 25, "action": "nods gently"},
    ],
}


def _cli(home: Path, server_url: str, *args: str):
    return _run_cli(
        home,
        *args,
        extra_env={
            "AVATAR_FLOW_LLM_BASE_URL": server_url,
            "AVATAR_FLOW_LLM_MODEL": "fake-omni",
            "OPENAI_API_KEY": SECRET,
        },
    )


def test_plan_then_run_with_the_mllm_planner_uses_the_cache(tmp_path):
    home, out = tmp_path / "home", tmp_path / "out"
    with FakeOpenAIServer([PLAN]) as srv:
        proc = _cli(
            home,
            srv.url,
            "plan",
            str(EXAMPLES / "hello.md"),
            "--planner",
            "mllm",
            "--out",
            str(out),
            "--json",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        plan = json.loads(proc.stdout)
        n_requests = len(srv.requests)
        assert n_requests >= 1
        assert plan["fallback_reason"] is None
        assert [(p["first_word"], p["last_word"]) for p in plan["phases"]] == [(3, 10), (21, 25)]
        assert plan["base"]["identity"] == "A presenter in a blue sweater"
        assert (out / "plan.json").is_file() and (out / "timeline.png").is_file()
        # The request carried numbered words and the cue that must be honoured.
        sent = json.dumps(srv.requests[0])
        assert "points toward the viewer" in sent and SECRET not in sent

        # Same transcript, image, settings and model: the cached plan, no new request.
        proc = _cli(
            home,
            srv.url,
            "run",
            str(EXAMPLES / "hello.md"),
            "--planner",
            "mllm",
            "--out",
            str(out),
            "--json",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert len(srv.requests) == n_requests
        report = json.loads(proc.stdout)
        assert report["fallback_reason"] is None and report["phases"] == 2
    written = json.loads((out / "plan.json").read_text())
    assert written["phases"][0]["action"] == "points toward the viewer with the index finger"
    for path in [out / "plan.json", home / "avatar-flow.db"]:
        assert SECRET not in path.read_bytes().decode("latin-1")


def test_garbage_answers_fall_back_to_the_rule_planner_and_record_why(tmp_path):
    home, out = tmp_path / "home", tmp_path / "out"
    with FakeOpenAIServer(["this is not json at all"]) as srv:
        proc = _cli(
            home,
            srv.url,
            "run",
            str(EXAMPLES / "hello.md"),
            "--planner",
            "mllm",
            "--out",
            str(out),
            "--json",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert len(srv.requests) >= 2  # first answer plus repair turns
    report = json.loads(proc.stdout)
    assert report["fallback_reason"]
    con = sqlite3.connect(home / "avatar-flow.db")
    reason, turns = con.execute(
        "SELECT p.fallback_reason, (SELECT count(*) FROM plannerturnrecord t WHERE t.plan_id = p.id) "
        "FROM planrecord p WHERE p.job_id = ?",
        (report["job_id"],),
    ).fetchone()
    assert reason == report["fallback_reason"] and turns >= 2


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _turns(home: Path, job_id: str) -> list[dict]:
    proc = _run_cli(home, "jobs", "show", job_id, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)["planner_turns"]


def test_a_temporary_fallback_is_never_served_from_the_cache(tmp_path):
    """Server down: the plan falls back (one warning line on stderr, JSON on stdout) and
    --strict exits 3; once the server is back the plan is asked for, not the cached fallback.
    A real answer is cached; --replan asks again."""
    home, out = tmp_path / "home", tmp_path / "out"
    port = _port()
    url = f"http://127.0.0.1:{port}/v1"
    plan_args = ("plan", str(EXAMPLES / "hello.md"), "--planner", "mllm", "--out", str(out))

    down = _cli(home, url, *plan_args, "--json")
    assert down.returncode == 0, down.stderr[-3000:]
    fell = json.loads(down.stdout)  # stdout is the JSON alone
    assert fell["planner"] == "rules" and fell["fallback_kind"] == "unreachable"
    warnings = [line for line in down.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "(unreachable)" in warnings[0] and "cannot reach" in warnings[0]

    strict = _cli(home, url, *plan_args, "--strict")
    assert strict.returncode == 3, strict.stderr[-3000:]
    assert (
        "failed: PlannerFallback:" in strict.stderr and "cannot reach the server" in strict.stderr
    )

    with FakeOpenAIServer([PLAN], port=port) as srv:
        back = _cli(home, url, *plan_args, "--json")
        assert back.returncode == 0, back.stderr[-3000:]
        plan = json.loads(back.stdout)
        assert plan["planner"] == "mllm" and plan["fallback_reason"] is None
        assert len(srv.requests) == 1 and "warning:" not in back.stderr
        cached = _cli(home, url, *plan_args, "--json")
        assert json.loads(cached.stdout) == plan and len(srv.requests) == 1  # served
        again = _cli(home, url, *plan_args, "--json", "--replan")
        assert again.returncode == 0 and len(srv.requests) == 2  # asked again
    assert SECRET not in down.stderr + strict.stderr + back.stderr


def test_jobs_show_lists_the_planner_turns(tmp_path):
    home, out = tmp_path / "home", tmp_path / "out"
    with FakeOpenAIServer(["not json", PLAN]) as srv:
        proc = _cli(
            home, srv.url, "run", str(EXAMPLES / "hello.md"), "--planner", "mllm",
            "--out", str(out), "--json",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    job_id = json.loads(proc.stdout)["job_id"]
    turns = _turns(home, job_id)
    # with the avatar image (which this server sees), then plain text, then the answers
    assert [t["kind"] for t in turns] == ["probe", "probe", "plan", "repair"]
    assert turns[0]["prompt_tokens"] > turns[1]["prompt_tokens"]
    assert turns[2]["errors"] and turns[3]["errors"] == []
    assert all(t["response_format"] in ("text", "json_schema") for t in turns)
    table = _run_cli(home, "jobs", "show", job_id)
    assert table.returncode == 0, table.stderr[-2000:]
    assert "Planner turns" in table.stdout and "repair" in table.stdout
    assert "json_schema" in table.stdout


# ------------------------------------------------------------------ a real llama.cpp server
TINY = """---
title: Tiny
avatar: presenter.png
voice: piper
resolution: 256x256
fps: 25
---
Welcome, everyone.
"""


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from llama_server import LlamaServer

    with LlamaServer(log=tmp_path_factory.mktemp("llama") / "server.log") as srv:
        yield srv


def test_default_settings_against_llama_cpp_and_a_restart(llama, tmp_path):
    """With only the URL and model set (and short strings, for time), the planner negotiates a format this server accepts
    (it answers HTTP 500 to json_schema), sends a prompt that arrives whole, and remembers
    both in the database; a fallback while the server is down is recorded with its job and
    not served once the server is back."""
    home, out = tmp_path / "home", tmp_path / "out"
    script = tmp_path / "tiny.md"
    script.write_text(TINY)
    (tmp_path / "presenter.png").write_bytes((EXAMPLES / "presenter.png").read_bytes())
    env = {
        "AVATAR_FLOW_LLM_BASE_URL": llama.url,
        "AVATAR_FLOW_LLM_MODEL": llama.model,
        "AVATAR_FLOW_LLM_MAX_REPAIR_TURNS": "0",
        # short strings keep each answer to a few dozen tokens (the negotiation is the same)
        "AVATAR_FLOW_LLM_MAX_STRING_CHARS": "12",
    }
    run = ("run", str(script), "--planner", "mllm", "--out", str(out), "--json")

    first = _run_cli(home, *run, extra_env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads(first.stdout)
    turns = _turns(home, report["job_id"])
    assert [t["kind"] for t in turns[:3]] == ["probe", "probe", "degrade"]
    parts_probe, text_probe, degrade, answer = turns[:4]
    assert text_probe["prompt_tokens"] >= text_probe["expected_prompt_tokens"] > 300
    assert parts_probe["prompt_tokens"] < text_probe["prompt_tokens"] - 50  # image part dropped
    assert "HTTP 500" in degrade["errors"][0] and "response_format" in degrade["errors"][0]
    assert answer["kind"] == "plan" and answer["response_format"] == "json_object+schema"
    assert json.loads(answer["answer"])["base"]  # the server accepted it and answered JSON
    listed = _run_cli(home, "llm", "list", "--json")
    (endpoint,) = json.loads(listed.stdout)
    assert endpoint["response_format"] == "json_object+schema" and endpoint["images"] is False

    llama.stop()
    down = _run_cli(home, *run, "--replan", extra_env=env)
    assert down.returncode == 0, down.stderr[-3000:]
    fell = json.loads(down.stdout)
    assert fell["fallback_kind"] == "unreachable" and "warning:" in down.stderr
    assert [t["kind"] for t in _turns(home, fell["job_id"])] == ["error"]

    llama.start()
    back = _run_cli(home, *run, extra_env=env)
    assert back.returncode == 0, back.stderr[-3000:]
    turns = _turns(home, json.loads(back.stdout)["job_id"])
    # asked again (not the cached fallback), straight in the remembered format
    assert [(t["kind"], t["response_format"]) for t in turns][:1] == [
        ("plan", "json_object+schema")
    ]
