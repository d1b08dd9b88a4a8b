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
