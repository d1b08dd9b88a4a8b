"""Fast sampling on `avatar-flow run`: job options, one-line errors before any work, the
render cache key, and (slow) a real tiny run whose report says which model rendered and how
many model evaluations each clip took."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import EXAMPLES, REPO, write_script

from generator.sampling import write_sampling_file

STUDENT = {
    "mode": "trajectory",
    "steps": 2,
    "solver": "euler",
    "guidance_scale": 1.0,
    "audio_guidance_scale": 1.0,
    "evaluations_per_clip": 2,
}


@pytest.fixture
def teacher(tmp_path, tiny_dir) -> Path:
    path = tmp_path / "teacher"
    shutil.copytree(tiny_dir, path)
    return path


def _script(tmp_path: Path) -> Path:
    return write_script(
        tmp_path,
        "Hello there! [[waves hello with the right hand]] A tiny model, two short segments.",
        avatar=str(EXAMPLES / "presenter.png"),
        resolution="128x128",
        segment_seconds=1.5,
    )


def test_options_are_checked_before_any_work(tmp_path, teacher, fresh_home):
    from flows.runtime.errors import InputError
    from flows.runtime.settings import get_settings
    from flows.video.inputs import prepare_inputs
    from flows.video.options import SOLVERS, JobOptions
    from generator.sampling import SOLVERS as GENERATOR_SOLVERS

    assert SOLVERS == GENERATOR_SOLVERS
    script, settings = _script(tmp_path), get_settings()

    def check(**kw):
        return prepare_inputs(script, JobOptions.parse(**kw), settings)

    base = {"renderer": "actavatar", "checkpoint": str(teacher)}
    with pytest.raises(InputError, match="no distilled student for --fast") as exc:
        check(**base, fast=True)
    assert "\n" not in str(exc.value) and exc.value.field == "fast"
    with pytest.raises(InputError, match="no calibrated step cache"):
        check(**base, step_cache=True)
    with pytest.raises(InputError, match="need --renderer actavatar"):
        check(fast=True)
    with pytest.raises(InputError, match="guidance_interval needs 0 <= LO <= HI <= 1"):
        JobOptions.parse(guidance_interval="0.9,0.1")
    with pytest.raises(InputError, match="unknown solver 'ddim'"):
        JobOptions.parse(solver="ddim")

    student = tmp_path / "student"
    shutil.copytree(teacher, student)
    write_sampling_file(student, {"student": STUDENT})
    write_sampling_file(teacher, {"students": [{"path": str(student)}]})
    assert check(**base, fast=True).options.fast
    assert check(**base, solver="dpm++2m", guidance_interval="0,0.9").options.solver == "dpm++2m"


def test_sampling_options_change_the_render_key(tmp_path, teacher):
    from flows.video.options import JobOptions
    from flows.video.renderers import get_renderer_spec
    from generator.sampling import SamplingRequest

    assert JobOptions().sampling().active() == {}
    request = JobOptions(fast=True, guidance_interval="0,0.9", solver="euler").sampling(40)
    assert request == SamplingRequest(
        steps=40, fast=True, guidance_interval=(0.0, 0.9), solver="euler"
    )
    assert request.active() == {"fast": True, "guidance_interval": [0.0, 0.9], "solver": "euler"}
    assert hash(request) == hash(
        JobOptions(fast=True, guidance_interval="0,0.9", solver="euler").sampling(40)
    )

    def identity(**kw):
        return get_renderer_spec("actavatar").render_identity(str(teacher), SamplingRequest(**kw))

    plain = identity()
    assert identity(steps=40) == plain and identity(steps=8) != plain
    fast = identity(fast=True)
    assert fast != plain
    write_sampling_file(teacher, {"students": [{"path": "elsewhere"}]})
    assert identity(fast=True) != fast
    assert identity() == plain  # not read when unused


def _run_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AVATAR_FLOW_"))}
    env.update(
        AVATAR_FLOW_HOME=str(home),
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_run_fast_reports_the_student_and_its_evaluations(tmp_path, teacher):
    script, home = _script(tmp_path), tmp_path / "home"
    common = ["run", str(script), "--renderer", "actavatar", "--checkpoint", str(teacher)]
    proc = _run_cli(home, *common, "--fast", "--out", str(tmp_path / "no"))
    assert proc.returncode == 2 and "no distilled student for --fast" in proc.stderr + proc.stdout

    student = tmp_path / "student"
    shutil.copytree(teacher, student)
    write_sampling_file(student, {"student": STUDENT})
    write_sampling_file(teacher, {"students": [{"path": str(student)}]})
    proc = _run_cli(home, *common, "--steps", "2", "--out", str(tmp_path / "t"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = json.loads(proc.stdout)
    assert ref["evaluations_per_clip"] == 6 and ref["sampler"] == ["teacher"]  # 2 steps x 3
    proc = _run_cli(home, *common, "--fast", "--out", str(tmp_path / "f"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    fast = json.loads(proc.stdout)
    assert fast["evaluations_per_clip"] == 2 and fast["sampling"] == {"fast": True}
    assert fast["segments_rendered"] == fast["segments"]  # not the teacher's cached segments
    (note,) = fast["sampler"]
    assert note.startswith(f"distilled student {student}") and "2 evaluations per clip" in note
    assert "gpu_seconds_per_output_second" in fast
