"""MLLM judge against a real loopback HTTP server speaking the OpenAI chat protocol."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "planners"))
from fake_openai import FakeOpenAIServer  # noqa: E402

from flows.evaluation.judge import (  # noqa: E402
    judge_video,
    load_plan_phases,
    phase_frame_times,
    read_frames_at,
    syncnet_scores,
)
from flows.video.media import encode_frames  # noqa: E402
from planners.mllm_settings import MLLMSettings  # noqa: E402

# What an endpoint accepts is remembered in the database: each test gets its own, so a
# loopback port reused by a later fake server inherits nothing.
pytestmark = pytest.mark.usefixtures("fresh_home")
KEY = "sk-test-secret-key-123"
FPS = 10


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """4 s at 10 fps; frame i is a flat grey of level 5 * i (the frame is readable back)."""
    frames = [np.full((32, 48, 3), 5 * i, dtype=np.uint8) for i in range(40)]
    return encode_frames(frames, FPS, tmp_path_factory.mktemp("v") / "clip.mp4", crf=10)


@pytest.fixture
def plan(tmp_path) -> Path:
    data = {
        "planner": "rule",
        "base": {"identity": "A woman", "scene": "an office"},
        "phases": [
            {
                "action": "raises left hand",
                "first_word": 0,
                "last_word": 1,
                "start": 0.5,
                "end": 1.5,
            },
            {"action": "points down", "first_word": 2, "last_word": 3, "start": 2.0, "end": 3.0},
        ],
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    return path


def _answer(body, index):
    run = index % 5  # 5 runs per phase, phases in order
    return {
        "action_occurrence": 1 if run < 3 else 0,
        "action_accuracy": 2.0 * run,
        "temporal_correctness": 5.0,
        "action_quality": 6.0 + (index // 5),
        "hand_clarity": 9.0,
        "reason": "ok",
    }


def test_frame_sampling_inside_windows():
    times, inside = phase_frame_times(0.5, 1.5, 4.0, frames=4)
    assert times == [0.3, 0.625, 0.875, 1.125, 1.375, 1.7]
    assert inside == [False, True, True, True, True, False]
    times, inside = phase_frame_times(0.0, 1.0, 1.0, frames=2)  # no room for context
    assert times == [0.25, 0.75] and inside == [True, True]


def test_read_frames_at_picks_nearest(video):
    frames = read_frames_at(video, [0.0, 1.02, 3.9])
    levels = [int(round(f.mean())) for f in frames]
    assert levels == pytest.approx([0, 50, 195], abs=2)  # frames 0, 10, 39


def test_judge_five_runs_averaged(video, plan):
    with FakeOpenAIServer(_answer) as srv:
        settings = MLLMSettings(base_url=srv.url, api_key=KEY, model="judge-vl")
        report = judge_video(video, plan, settings=settings, runs=5, frames_per_phase=4)
        bodies, headers = srv.requests, srv.headers
    assert len(bodies) == 10  # 2 phases x 5 runs
    assert [len(p.runs) for p in report.phases] == [5, 5]
    p1, p2 = report.phases
    assert p1.mean["action_occurrence"] == pytest.approx(0.6)
    assert p1.mean["action_accuracy"] == pytest.approx(4.0)  # mean of 0, 2, 4, 6, 8
    assert p1.mean["action_quality"] == 6.0 and p2.mean["action_quality"] == 7.0
    assert report.summary == pytest.approx({"H@S": 0.6, "AA": 4.0, "TC": 5.0, "AQ": 6.5, "HC": 9.0})
    # per-phase frame sampling: 4 inside the window + 1 before + 1 after, as data URLs
    assert p1.frame_times == [0.3, 0.625, 0.875, 1.125, 1.375, 1.7]
    assert all(2.0 < t < 3.0 for t, i in zip(p2.frame_times, p2.inside) if i)
    content = bodies[0]["messages"][1]["content"]
    images = [c for c in content if c["type"] == "image_url"]
    assert len(images) == 6 and all(
        i["image_url"]["url"].startswith("data:image/jpeg;base64,") for i in images
    )
    assert "raises left hand" in content[0]["text"]
    assert "points down" in bodies[5]["messages"][1]["content"][0]["text"]
    assert bodies[0]["response_format"]["type"] == "json_schema"
    assert bodies[0]["response_format"]["json_schema"]["strict"] is True
    assert [b.get("seed") for b in bodies[:5]] == [0, 1, 2, 3, 4]
    # the key goes in the Authorization header only, never into the report
    assert headers[0]["authorization"] == f"Bearer {KEY}"
    assert KEY not in report.model_dump_json()
    assert report.sync is None and "SyncNet" in report.sync_note


def test_invalid_answer_is_reasked(video, plan):
    answers = ["not json", {"action_occurrence": 3}, _answer(None, 0)]
    with FakeOpenAIServer(answers) as srv:
        settings = MLLMSettings(base_url=srv.url, api_key=KEY, model="m", max_repair_turns=3)
        report = judge_video(video, plan, settings=settings, runs=1, frames_per_phase=2)
        bodies = srv.requests
    assert len(bodies) == 4  # 2 repairs for phase 1, then phase 2 first time
    assert "breaks these rules" in bodies[1]["messages"][-1]["content"]  # planners.ask_json
    assert report.phases[0].runs[0].action_occurrence == 1


def test_json_schema_refused_falls_back(video, plan):
    with FakeOpenAIServer([_answer(None, 0)], reject_json_schema=True) as srv:
        settings = MLLMSettings(base_url=srv.url, api_key=KEY, model="m")
        report = judge_video(video, plan, settings=settings, runs=1, frames_per_phase=2)
        fmts = [b["response_format"]["type"] for b in srv.requests]
        assert "schema" in srv.requests[1]["response_format"]
    # one step down (json_object with the schema), remembered for the next phase
    assert fmts == ["json_schema", "json_object", "json_object"]
    assert report.summary["H@S"] == 1.0


def test_plan_loader_accepts_bare_phases(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps({"base": "A man", "phases": [{"text": "waves", "start": 0, "end": 1}]})
    )
    base, phases = load_plan_phases(path)
    assert base == "A man" and phases[0].action == "waves" and phases[0].end == 1.0


def test_syncnet_code_path(tmp_path, video):
    import torch

    from flows.evaluation.judge import _syncnet_model

    with pytest.raises(FileNotFoundError, match="not downloadable"):
        syncnet_scores(video, tmp_path / "missing.model")
    ckpt = tmp_path / "syncnet_v2.model"
    torch.save(_syncnet_model().state_dict(), ckpt)  # random weights, same layout
    with pytest.raises(ValueError, match="audio track"):  # loads strictly, then needs audio
        syncnet_scores(video, ckpt)


def test_cli_judge(video, plan, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from orchestrator.cli import app

    with FakeOpenAIServer(_answer) as srv:
        monkeypatch.setenv("AVATAR_FLOW_LLM_BASE_URL", srv.url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        out = tmp_path / "judge.json"
        res = CliRunner().invoke(
            app,
            ["eval", "judge", str(video), "--plan", str(plan), "--runs", "5", "--out", str(out)],
        )
    assert res.exit_code == 0, res.output
    assert "H@S 0.600" in res.output and "SyncNet" in res.output
    assert KEY not in res.output and KEY not in out.read_text()
    assert json.loads(out.read_text())["summary"]["AA"] == 4.0
