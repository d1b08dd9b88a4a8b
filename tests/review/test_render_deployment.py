"""Render from the review app through the `produce-video` deployment of a real `prefect server`
on 127.0.0.1 (served by `avatar-flow serve`), with its progress polled from the page's API."""

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support import EXAMPLES, REPO

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scale"))
from scale_support import clean_env, free_port, stop  # noqa: E402

pytestmark = pytest.mark.slow


def _start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", *cmd],
        cwd=REPO,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(log.read_text()[-3000:])
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer: {log.read_text()[-3000:]}")
        time.sleep(0.5)


def test_render_goes_through_the_deployment_when_a_server_is_configured(tmp_path):
    procs: list[subprocess.Popen] = []
    try:
        port = free_port()
        api = f"http://127.0.0.1:{port}/api"
        server_env = clean_env(
            PREFECT_HOME=str(tmp_path / "server"),
            PREFECT_UI_ENABLED="false",
            PREFECT_API_URL=api,
            PREFECT_SERVER_API_HOST="127.0.0.1",
        )
        procs.append(
            _start(
                ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                server_env,
                tmp_path / "server.log",
            )
        )
        _wait_http(f"{api}/health", procs[-1], tmp_path / "server.log")
        env = clean_env(
            PREFECT_API_URL=api,
            AVATAR_FLOW_HOME=str(tmp_path / "home"),
            PREFECT_HOME=str(tmp_path / "prefect-client"),
        )
        out = tmp_path / "out"
        run = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "run", str(EXAMPLES / "hello.md")]
            + ["--out", str(out), "--json"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        procs.append(_start(["orchestrator.cli", "serve"], env, tmp_path / "serve.log"))
        review_port = free_port()
        procs.append(
            _start(
                ["orchestrator.cli", "review", str(out), "--port", str(review_port)],
                env,
                tmp_path / "review.log",
            )
        )
        url = f"http://127.0.0.1:{review_port}"
        _wait_http(url + "/api/job", procs[-1], tmp_path / "review.log")
        info = httpx.get(url + "/api/job").json()
        assert info["prefect_server"] is True
        # Wait until `serve` has registered the deployment, then render version 1 from the page.
        deadline = time.monotonic() + 120
        while True:
            dep = httpx.post(f"{api}/deployments/filter", json={}).json()
            if any(d["name"] == "produce-video" for d in dep):
                break
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
        r = httpx.post(
            url + "/api/render",
            json={"version": info["version"]["number"], "renderer": "animatic"},
            headers={"Origin": url},
        )
        assert r.status_code == 202, r.text
        run_id, seen = r.json()["id"], set()
        deadline = time.monotonic() + 300
        while True:
            state = httpx.get(f"{url}/api/runs/{run_id}").json()
            seen.add(state["message"])
            if state["state"] != "running":
                break
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
        assert state["state"] == "done", (
            state["error"],
            (tmp_path / "serve.log").read_text()[-3000:],
        )
        assert state["via"] == "deployment" and state["flow_run_id"]
        flow_run = httpx.get(f"{api}/flow_runs/{state['flow_run_id']}").json()
        assert flow_run["state"]["type"] == "COMPLETED"
        assert flow_run["parameters"]["options"]["out"] == str(out / "final")
        assert flow_run["parameters"]["options"]["plan"] == str(out / "plans" / "v0001.json")
        assert (out / "final" / "video.mp4").stat().st_size > 10_000
        # Progress came from the flow run's state and the job's segment rows.
        assert "Completed" in seen and state["result"]["segments"] == 2
        assert [s["status"] for s in state["segments"]] == ["cached", "cached"]
        assert json.loads((out / "final" / "plan.json").read_text()) == info["plan"]
    finally:
        for p in reversed(procs):
            stop(p)
