"""Background work started from the page: preview, final render, planner proposals.

One run at a time per review app (the flows' progress events are process-wide, and two
renders of one job would race on its output folder). A run's state is polled by the page.

Preview renders the animatic in this process. Render goes through the `produce-video`
Prefect deployment when a Prefect server is configured (PREFECT_API_URL or a profile), so it runs on the
GPU workers of that server's work pool; otherwise it runs here, like `avatar-flow run`.
"""

import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from orchestrator.review.job import FINAL_DIR, ReviewJob
from storage import Job, Segment, session_scope

DEPLOYMENT = "produce-video/produce-video"


class Busy(RuntimeError):
    """Another run of this review app has not finished."""


@dataclass
class Run:
    kind: str  # preview | render | propose
    version: int | None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    state: str = "running"  # running | done | failed
    via: str = "local"  # local | deployment
    stage: str = "start"
    done: int = 0
    total: int = 1
    message: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None
    out_dir: str = ""
    flow_run_id: str | None = None
    segments: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class RunManager:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs: dict[str, Run] = {}
        self.active: Run | None = None

    def start(self, run: Run, work: Callable[[Run], dict[str, Any]]) -> Run:
        with self._lock:
            if self.active is not None and self.active.state == "running":
                raise Busy(
                    f"a {self.active.kind} is still running (started "
                    f"{time.strftime('%H:%M:%S', time.localtime(self.active.started))}); "
                    "wait for it to finish"
                )
            self.active = run
            self.runs[run.id] = run

        def target() -> None:
            try:
                run.result = work(run)
                run.state = "done"
            except BaseException as exc:  # reported on the page, never raised in a thread
                from flows.runtime.errors import InputError, failure

                run.error = failure(exc).line
                run.state = "failed"
                if not isinstance(exc, InputError):  # bad input is its one line; else the log
                    traceback.print_exc()
            finally:
                run.finished = time.time()

        threading.Thread(target=target, name=f"review-{run.kind}", daemon=True).start()
        return run

    def get(self, run_id: str) -> Run | None:
        return self.runs.get(run_id)


def prefect_server_configured() -> bool:
    """A Prefect server to send renders to: PREFECT_API_URL from the environment or the active
    Prefect profile (without one, Prefect runs an ephemeral in-process API)."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def flow_parameters(job: ReviewJob, **overrides: Any) -> dict[str, Any]:
    """`produce-video` parameters that reproduce this job, with option `overrides` applied."""
    from flows.video.renderers import get_renderer_spec
    from orchestrator.review.context import job_options

    values = {"force": False, **overrides}
    # The job's continuity mode goes to every run of it (the final render continues the way
    # the job did); a renderer that cannot take it (the animatic preview) runs its own.
    mode = job.options.get("continuity_mode")
    renderer = values.get("renderer") or job.options.get("renderer") or "animatic"
    if mode and mode not in get_renderer_spec(renderer).continuity_modes:
        values["continuity_mode"] = None
    options = job_options(job.options, **values)
    return {
        "script": str(job.script_path),
        # Every set field explicitly, so a deployment's default parameters cannot override the
        # job's choices (unset ones are None: the server's JSON schema may not allow null).
        "options": options.model_dump(mode="json", exclude_none=True),
    }


def segment_statuses(db: str, job_id: str) -> list[dict[str, Any]]:
    with session_scope(db) as s:
        rows = s.exec(select(Segment).where(Segment.job_id == job_id).order_by(Segment.index))
        return [
            {"index": r.index, "start": r.start, "end": r.end, "status": r.status}
            for r in rows.all()
        ]


def _job_for_folder(db: str, out_dir: Path) -> Job | None:
    with session_scope(db) as s:
        return s.exec(
            select(Job)
            .where(Job.out_dir == str(out_dir.resolve()))
            .order_by(col(Job.updated_at).desc())
        ).first()


def run_flow_locally(run: Run, job: ReviewJob, params: dict[str, Any]) -> dict[str, Any]:
    """`produce-video` in this process, its progress events copied onto the run."""
    from flows.runtime import progress
    from flows.video.produce import produce_video

    def on_event(ev) -> None:
        run.stage, run.done, run.total, run.message = ev.stage, ev.done, ev.total, ev.message

    with progress.listening(on_event):
        report = produce_video(**params)
    run.segments = segment_statuses(job.db, report["job_id"])
    return report


def run_flow_deployment(run: Run, job: ReviewJob, params: dict[str, Any]) -> dict[str, Any]:
    """Submit to the server's `produce-video` deployment; follow its state and the job's rows."""
    from prefect import get_client
    from prefect.deployments import run_deployment

    run.via = "deployment"
    flow_run = run_deployment(DEPLOYMENT, parameters=params, timeout=0, _sync=True)
    run.flow_run_id = str(flow_run.id)
    out_dir = Path(params["options"]["out"])
    started = time.time()
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run.id).state
            row = _job_for_folder(job.db, out_dir)
            if row is not None and row.updated_at.timestamp() >= started - 5:
                run.segments = segment_statuses(job.db, row.id)
                run.total = max(row.segments_total, 1)
                run.done = sum(s["status"] in ("rendered", "cached") for s in run.segments)
            run.stage = "render" if state and state.is_running() else (state.name if state else "")
            run.message = state.name if state else "submitted"
            if state is not None and state.is_final():
                row = _job_for_folder(job.db, out_dir)
                if not state.is_completed():
                    if row is not None and row.error and row.flow_run_id == str(flow_run.id):
                        from flows.runtime.errors import ReportedFailure

                        raise ReportedFailure(row.error)  # the line the flow recorded
                    raise RuntimeError(
                        f"flow run {flow_run.id} ended {state.name}: {state.message}"
                    )
                run.segments = segment_statuses(job.db, row.id) if row else []
                rendered = sum(s["status"] == "rendered" for s in run.segments)
                return {
                    "job_id": row.id if row else None,
                    "segments": len(run.segments),
                    "segments_rendered": rendered,
                    "segments_cached": len(run.segments) - rendered,
                    "outputs": {"video": str(out_dir / "video.mp4")},
                }
            time.sleep(2.0)


def final_dir(job: ReviewJob) -> Path:
    return job.out_dir / FINAL_DIR
