"""Against a real `prefect server` on 127.0.0.1: serve + deployment run + cron schedule +
signed webhook, deploy to a work pool, and the GPU concurrency limits across processes."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scale_support import REPO, clean_env, stop
from test_webhooks import Receiver

from flows.runtime import webhooks

pytestmark = pytest.mark.slow
EXAMPLES = REPO / "examples"
SECRET = "hmac-test-secret"


def _client(url: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings({PREFECT_API_URL: url}), get_client


def _wait_for_deployment(url: str, name: str, proc: subprocess.Popen, timeout: float = 90):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deadline = time.monotonic() + timeout
    with temporary_settings({PREFECT_API_URL: url}):
        while time.monotonic() < deadline:
            assert proc.poll() is None, "avatar-flow serve exited early"
            try:
                with get_client(sync_client=True) as client:
                    return client.read_deployment_by_name(name)
            except ObjectNotFound:
                time.sleep(0.5)
    raise AssertionError(f"deployment {name} did not appear")


def test_served_deployment_runs_a_video_with_schedule_and_webhook(prefect_server, tmp_path):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    config = tmp_path / "deployments.yaml"
    config.write_text(f"""
deployments:
  produce-video:
    parameters: {{planner: rule}}
    schedules:
      - cron: "0 9 * * mon"
        timezone: Europe/Berlin
        slug: weekly-hello
        parameters: {{script: {EXAMPLES / "hello.md"}, out: weekly}}
""")
    home = tmp_path / "home"
    env = clean_env(
        PREFECT_API_URL=prefect_server,
        AVATAR_FLOW_HOME=str(home),
        PREFECT_HOME=str(tmp_path / "prefect-client"),
        AVATAR_FLOW_WEBHOOK_SECRET=SECRET,
    )
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    serve = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "serve", "--config", str(config)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    receiver = Receiver()
    try:
        dep = _wait_for_deployment(prefect_server, "produce-video/produce-video", serve)
        assert dep.entrypoint == "flows.video.produce.produce_video"
        (sched,) = dep.schedules
        assert sched.schedule.cron == "0 9 * * mon" and sched.schedule.timezone == "Europe/Berlin"
        # Flat job options in the YAML are moved into the flow's `options` parameter, and a
        # schedule's options are merged over the deployment's (Prefect merges one level deep).
        assert sched.parameters == {
            "script": str(EXAMPLES / "hello.md"),
            "options": {"planner": "rule", "out": str(tmp_path / "weekly")},
        }
        schema = dep.parameter_openapi_schema
        fields = schema["definitions"]["JobOptions"]["properties"]
        assert fields["renderer"]["default"] == "animatic" and fields["renderer"]["description"]
        assert schema["properties"]["script"]["description"]
        assert dep.parameters == {"options": {"planner": "rule"}}
        out = tmp_path / "ui-run"
        with temporary_settings({PREFECT_API_URL: prefect_server}):
            run = run_deployment(
                "produce-video/produce-video",
                timeout=240,
                poll_interval=1,
                _sync=True,  # blocking, whatever event loop another test left running
                parameters={
                    "script": str(EXAMPLES / "hello.md"),
                    "options": {"out": str(out), "webhook": receiver.url},
                },
            )
        assert run.state.is_completed(), (run.state, (tmp_path / "serve.log").read_text()[-3000:])
        assert (out / "video.mp4").stat().st_size > 10_000
        deadline = time.monotonic() + 30
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.2)
        headers, body = receiver.requests[0]
        assert webhooks.verify(body, headers["x-avatarflow-signature"], SECRET)
        payload = json.loads(body)
        assert payload["event"] == "job.completed" and payload["status"] == "done"
        assert payload["flow_run_id"] == str(run.id) and payload["job_id"]
        assert payload["outputs"]["video"] == str(out / "video.mp4")
        assert payload["gpu_seconds"] == 0.0  # the animatic renders on CPU
        assert SECRET not in body.decode()
    finally:
        receiver.close()
        stop(serve)
        log.close()


def test_run_deployment_hands_the_job_summary_back_to_python(prefect_server, tmp_path):
    """The served flow persists its summary as JSON under the serving home's results folder;
    this process (its own Prefect home, its own avatar-flow home) reads it back from the run's
    state and finds the same video, segments and plan version as the serving side's records."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from sqlmodel import select

    from storage import Job, PlanVersion, Segment, session_scope, sqlite_url

    home = tmp_path / "serve-home"
    env = clean_env(
        PREFECT_API_URL=prefect_server,
        AVATAR_FLOW_HOME=str(home),
        PREFECT_HOME=str(tmp_path / "serve-prefect"),
    )
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    serve = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "serve"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    out = tmp_path / "job"
    try:
        _wait_for_deployment(prefect_server, "produce-video/produce-video", serve)
        with temporary_settings({PREFECT_API_URL: prefect_server}):
            run = run_deployment(
                "produce-video/produce-video",
                timeout=240,
                poll_interval=1,
                _sync=True,
                parameters={
                    "script": str(EXAMPLES / "hello.md"),
                    "options": {"out": str(out), "planner": "rule"},
                },
            )
            assert run.state.is_completed(), (
                run.state,
                (tmp_path / "serve.log").read_text()[-3000:],
            )
            summary = run.state.result(_sync=True)  # whatever loop another test left
    finally:
        stop(serve)
        log.close()
    # Written by the serving process, under its AVATAR_FLOW_HOME, as JSON.
    (stored,) = (home / "results").iterdir()
    assert json.loads(stored.read_text()) == summary
    assert summary["out_dir"] == str(out)
    assert summary["outputs"]["video"] == str(out / "video.mp4")
    assert (out / "video.mp4").stat().st_size > 10_000
    with session_scope(sqlite_url(home / "avatar-flow.db")) as s:
        job = s.get(Job, summary["job_id"])
        segments = s.exec(select(Segment).where(Segment.job_id == job.id)).all()
        versions = s.exec(select(PlanVersion).where(PlanVersion.job_id == job.id)).all()
        assert job.status == "done" and job.flow_run_id == str(run.id)
    assert summary["segments"] == len(segments) == job.segments_total >= 2
    assert summary["segments_rendered"] == len(segments) and summary["segments_cached"] == 0
    assert summary["plan_version"] == 1 and [v.number for v in versions] == [1]
    assert summary["planner"] == "rules" and summary["duration"] == pytest.approx(job.duration)


def test_deploy_registers_to_a_work_pool(prefect_server, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "deploy", "--pool", "gpu-test"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env=clean_env(
            PREFECT_API_URL=prefect_server,
            AVATAR_FLOW_HOME=str(tmp_path / "home"),
            PREFECT_HOME=str(tmp_path / "p"),
        ),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_server}), get_client(sync_client=True) as c:
        for name in ("produce-video/produce-video", "produce-batch/produce-batch"):
            dep = c.read_deployment_by_name(name)
            assert dep.work_pool_name == "gpu-test"
        assert c.read_work_pool("gpu-test").type == "process"


def test_gpu_limit_admits_one_holder_per_gpu_name(prefect_server, tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.runtime.gpu import ensure_gpu_limits

    names = ["gpu:fakehost:0", "gpu:fakehost:1"]
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        assert ensure_gpu_limits(names) == names
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as c:
            assert [c.read_global_concurrency_limit_by_name(n).limit for n in names] == [1, 1]
    env = clean_env(
        PREFECT_API_URL=prefect_server,
        AVATAR_FLOW_HOME=str(tmp_path / "home"),
        PREFECT_HOME=str(tmp_path / "p"),
        PYTHONPATH=str(REPO),
    )
    probe = str(Path(__file__).with_name("gate_probe.py"))
    procs = [
        subprocess.Popen(
            [sys.executable, probe, name, "2.5"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in (names[0], names[0], names[1])
    ]
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.split("RESULT ", 1)[1]))
    assert {r["mode"] for r in results} == {"prefect"}
    a, b = sorted(results[:2], key=lambda r: r["start"])
    assert a["end"] <= b["start"], f"two renders held {names[0]} at once: {a} {b}"
    other = results[2]
    assert other["start"] < a["end"] + 1.0, "another GPU name must not queue behind gpu 0"


def test_gpu_seconds_are_recorded_per_job_for_cuda_renders_only(fresh_home):
    from flows.runtime.gpu import record_gpu_seconds
    from flows.runtime.settings import get_settings
    from storage import Job, session_scope

    db = get_settings().db_url
    with session_scope(db) as s:
        s.add(Job(id="gpujob", duration=10.0))
    assert record_gpu_seconds(db, "gpujob", 12.5) == 12.5
    assert record_gpu_seconds(db, "gpujob", 2.5) == 15.0  # a resumed job adds up
    assert os.environ.get("AVATAR_FLOW_GPUS") is None
