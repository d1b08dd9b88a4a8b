"""Ask the planner: a proposal from the MLLM planner (a real OpenAI-protocol server on
127.0.0.1), for one phase or the whole job, never applied by itself."""

import sys
import time
from pathlib import Path

from review_helpers import CUE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "planners"))
from fake_openai import FakeOpenAIServer  # noqa: E402

ANSWER = {
    "base": {
        "identity": "A presenter in a blue sweater",
        "scene": "a soft studio",
        "mood": "friendly",
        "style": "clean, bright",
        "motion": "steady upper body",
    },
    "phases": [
        {"first_word": 2, "last_word": 5, "action": CUE},
        {"first_word": 18, "last_word": 21, "action": "counts on the fingers of one hand"},
        {"first_word": 26, "last_word": 28, "action": "nods gently"},
    ],
}


def _edit(plan: dict) -> dict:
    keys = ("action", "first_word", "last_word")
    return {"base": plan["base"], "phases": [{k: p[k] for k in keys} for p in plan["phases"]]}


def _wait(client, run_id: str) -> dict:
    deadline = time.time() + 120
    while time.time() < deadline:
        run = client.get(f"/api/runs/{run_id}").json()
        if run["state"] != "running":
            return run
        time.sleep(0.2)
    raise AssertionError("the proposal did not finish")


def test_a_phase_proposal_replaces_only_that_phase_and_saves_nothing(client, fake_job, monkeypatch):
    with FakeOpenAIServer([ANSWER]) as srv:
        monkeypatch.setenv("AVATAR_FLOW_LLM_BASE_URL", srv.url)
        monkeypatch.setenv("AVATAR_FLOW_LLM_MODEL", "fake-omni")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-review")
        r = client.post("/api/propose?parent=1", json={**_edit(fake_job["plan"]), "phase": 1})
        assert r.status_code == 202, r.text
        run = _wait(client, r.json()["id"])
        assert srv.requests, "the planner was not asked"
    assert run["state"] == "done", run["error"]
    proposal = run["result"]
    assert proposal["scope"] == "phase 2" and proposal["errors"] == []
    assert proposal["diff"] == [
        "phases[1]: action 'nods gently' -> 'counts on the fingers of one hand'; "
        "words 20..23 -> 18..21"
    ]
    phases = proposal["plan"]["phases"]
    assert [(p["first_word"], p["last_word"]) for p in phases] == [(2, 5), (18, 21)]
    assert proposal["plan"]["base"] == fake_job["plan"]["base"]  # one phase: base untouched
    # A proposal is not a version: only accepting it in the editor and saving makes one.
    assert [v["number"] for v in client.get("/api/versions").json()] == [1]

    with FakeOpenAIServer([ANSWER]) as srv:
        monkeypatch.setenv("AVATAR_FLOW_LLM_BASE_URL", srv.url)
        r = client.post("/api/propose?parent=1", json={**_edit(fake_job["plan"]), "phase": None})
        whole = _wait(client, r.json()["id"])["result"]
    assert whole["scope"] == "whole job"
    assert len(whole["plan"]["phases"]) == 3 and whole["plan"]["base"] == ANSWER["base"]
    assert "base.identity: 'A presenter' -> 'A presenter in a blue sweater'" in whole["diff"]
