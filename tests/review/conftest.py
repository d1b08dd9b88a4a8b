"""A finished-looking job made in milliseconds (script, words, plan, record; no rendering), for
the review app's API tests. The browser test makes a real one with the real pipeline."""

import json
from pathlib import Path

import pytest
from review_helpers import CHROMIUM, CUE, FLAGS, N_WORDS, PLAN, word_times
from support import write_script

from storage import Job, session_scope


@pytest.fixture
def fake_job(tmp_path, fresh_home) -> dict:
    """Output folder + job row of a 12-s, 30-word animatic job with a cue on word 2."""
    words = [f"word{i}" for i in range(N_WORDS)]
    body = " ".join(words[:2] + [f"[[{CUE}]]"] + words[2:])
    script = write_script(tmp_path, body, title="Fake job", fps=25)
    out = tmp_path / "out"
    out.mkdir()
    rows = [
        {"word": w, "start": word_times(i)[0], "end": word_times(i)[1], "interpolated": False}
        for i, w in enumerate(words)
    ]
    (out / "words.json").write_text(json.dumps(rows))
    plan = json.loads(json.dumps(PLAN))
    for p in plan["phases"]:
        p["start"], p["end"] = word_times(p["first_word"])[0], word_times(p["last_word"])[1]
    (out / "plan.json").write_text(json.dumps(plan))
    (out / "video.mp4").write_bytes(b"not really a video " * 100)
    (out / "captions.vtt").write_text("WEBVTT\n")
    from flows.runtime.settings import get_settings

    db = get_settings().db_url
    with session_scope(db) as s:
        s.add(
            Job(
                id="fakejob00001",
                status="done",
                title="Fake job",
                script_path=str(script),
                out_dir=str(out.resolve()),
                renderer="animatic",
                planner="rule",
                settings={"options": {"renderer": "animatic"}, "fps": 25},
                duration=12.0,
            )
        )
    return {"out": out, "script": script, "db": db, "plan": plan, "home": fresh_home}


@pytest.fixture
def client(fake_job):
    from fastapi.testclient import TestClient

    from orchestrator.review.app import create_app
    from orchestrator.review.job import open_job

    job = open_job(str(fake_job["out"]))
    with TestClient(create_app(job, allowed_hosts=["testserver"])) as c:
        yield c


@pytest.fixture(scope="package")
def browser():
    # Package scope: Playwright's sync API keeps an event loop running in this thread while it
    # lives, which makes Prefect's sync/async dispatch hand later tests coroutines.
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), "install the chromium package (scripts/install with CI=true)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()
