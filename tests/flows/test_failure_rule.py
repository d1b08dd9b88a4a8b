"""One failure rule (`flows.runtime.errors.failure`): the same exceptions give the same line on
every surface that reports a failure (the CLI, the SDK, the flow's job record, batch rows and
the review app) and the same exit code."""

import time
from types import SimpleNamespace

import pytest
import typer

from flows.runtime.errors import MAX_LINE, InputError, PlannerFallback, failure

CASES = [
    (
        InputError("the audio is silent", file="talk.md", field="audio"),
        "talk.md: field 'audio': the audio is silent",
        2,
        "error",
    ),
    (
        PlannerFallback("cannot reach the server", kind="unreachable"),
        "PlannerFallback: cannot reach the server",
        3,
        "failed",
    ),
    (
        RuntimeError("trainer exited with 1:\n  Traceback ...\n\n  OOM"),
        "RuntimeError: trainer exited with 1: Traceback ... OOM",
        1,
        "failed",
    ),
    (ValueError(""), "ValueError", 1, "failed"),
    (KeyError("voice"), "KeyError: 'voice'", 1, "failed"),
]
IDS = ["input", "strict-planner", "multi-line", "empty", "key"]


@pytest.mark.parametrize(("exc", "line", "code", "label"), CASES, ids=IDS)
def test_the_rule(exc, line, code, label):
    ended = failure(exc)
    assert (ended.line, ended.exit_code) == (line, code)
    assert ended.terminal == f"{label}: {line}"


def test_a_long_message_is_capped_to_what_the_records_store():
    line = failure(RuntimeError("x" * 5000)).line
    assert len(line) == MAX_LINE and line.startswith("RuntimeError: xxx") and line.endswith("…")


@pytest.mark.parametrize(("exc", "line", "code", "label"), CASES, ids=IDS)
def test_cli_prints_the_line_and_exits_with_its_code(capsys, exc, line, code, label):
    from orchestrator.console import fail

    with pytest.raises(typer.Exit) as ended:
        fail(exc)
    assert ended.value.exit_code == code
    assert capsys.readouterr().err.strip() == f"{label}: {line}"


def test_cli_escapes_markup_in_the_line(capsys):
    from orchestrator.console import fail

    with pytest.raises(typer.Exit):
        fail(InputError("unknown cue [[points to the chart]]", file="a.md"))
    assert capsys.readouterr().err.strip() == "error: a.md: unknown cue [[points to the chart]]"


@pytest.mark.parametrize(("exc", "line", "code", "label"), CASES, ids=IDS)
def test_review_run_records_the_line(exc, line, code, label):
    from orchestrator.review.runs import Run, RunManager

    def work(run):
        raise exc

    run = RunManager().start(Run(kind="render", version=1), work)
    deadline = time.time() + 10
    while run.state == "running" and time.time() < deadline:
        time.sleep(0.01)
    assert (run.state, run.error) == ("failed", line)


@pytest.mark.parametrize(("exc", "line", "code", "label"), CASES, ids=IDS)
def test_the_flow_records_the_line_on_the_job(fresh_home, exc, line, code, label):
    from flows.runtime.settings import get_settings
    from flows.video.produce import record_failure
    from storage import Job, JobStatus, session_scope

    db = get_settings().db_url
    with session_scope(db) as s:
        s.add(Job(id="j1", input_key="k", out_dir="/tmp/x", flow_run_id="run-1"))
    state = SimpleNamespace(result=lambda raise_on_failure: exc, message=None, name="Failed")
    record_failure(None, SimpleNamespace(id="run-1"), state)
    with session_scope(db) as s:
        job = s.get(Job, "j1")
        assert (job.status, job.error) == (JobStatus.failed, line)


def test_batch_rows_and_the_sdk_report_the_same_lines(fresh_home, tmp_path, monkeypatch):
    """One batch through `Studio.produce_batch` (the SDK, the `produce-batch` flow and its row
    task), each row failing with one of the cases: each row's error is the rule's line."""
    import flows.video.batch as batch
    from orchestrator import Studio

    by_script = {}
    rows = []
    for i, (exc, _line, _code, _label) in enumerate(CASES):
        script = tmp_path / f"s{i}.md"
        script.write_text("---\navatar: a.png\n---\nHi.\n")
        by_script[str(script)] = exc
        rows.append(str(script))

    def produce_video(script, options):
        raise by_script[script]

    monkeypatch.setattr(batch, "produce_video", produce_video)
    results = Studio().produce_batch(rows, out_root=tmp_path / "b", force=True)
    assert [(r.ok, r.error) for r in results] == [(False, c[1]) for c in CASES]
    assert [r.report["error"] for r in results] == [c[1] for c in CASES]

    # The SDK's own produce raises the exception whose rule line the CLI prints.
    def fails(**kwargs):
        raise CASES[0][0]

    import flows.video.produce as produce

    monkeypatch.setattr(produce, "produce_video", fails)
    with pytest.raises(InputError) as e:
        Studio().produce(rows[0])
    assert failure(e.value).line == CASES[0][1]


@pytest.mark.parametrize(("exc", "line", "code", "label"), CASES, ids=IDS)
def test_review_render_through_a_deployment_reports_the_line_the_flow_recorded(
    fresh_home, tmp_path, monkeypatch, exc, line, code, label
):
    """A render sent to the produce-video deployment fails on a worker: the page gets the line
    the flow's failure hook recorded on the job (the rule's), not a wrapper around it."""
    import prefect
    import prefect.deployments

    from flows.runtime.settings import get_settings
    from flows.video.produce import record_failure
    from orchestrator.review import runs
    from storage import Job, session_scope

    db, out = get_settings().db_url, tmp_path / "final"
    with session_scope(db) as s:
        s.add(Job(id="j1", input_key="k", out_dir=str(out.resolve()), flow_run_id="run-9"))
    state = SimpleNamespace(result=lambda raise_on_failure: exc, message=None, name="Failed")
    record_failure(None, SimpleNamespace(id="run-9"), state)  # what the worker's hook does

    final = SimpleNamespace(
        name="Failed",
        message="Flow run encountered an exception: ...",
        is_running=lambda: False,
        is_final=lambda: True,
        is_completed=lambda: False,
    )

    class Client:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read_flow_run(self, flow_run_id):
            return SimpleNamespace(state=final)

    monkeypatch.setattr(
        prefect.deployments, "run_deployment", lambda *a, **k: SimpleNamespace(id="run-9")
    )
    monkeypatch.setattr(prefect, "get_client", lambda sync_client: Client())
    run = runs.Run(kind="render", version=1)
    job = SimpleNamespace(db=db)
    with pytest.raises(Exception) as raised:
        runs.run_flow_deployment(run, job, {"options": {"out": str(out)}})
    assert failure(raised.value).line == line
