"""Job queries for the CLI and the SDK: plain dicts and detached rows, no open sessions."""

from typing import Any

from sqlmodel import Session, col, select

from flows.runtime.settings import get_settings
from storage import (
    Asset,
    Job,
    JobStatus,
    PlannerTurnRecord,
    PlanRecord,
    PlanVersion,
    Segment,
    get_engine,
)


def _session() -> Session:
    return Session(get_engine(get_settings().db_url), expire_on_commit=False)


def list_jobs(limit: int = 20, status: str | None = None) -> list[Job]:
    """The newest `limit` jobs (only those with `status`); a bad limit or an unknown status is an
    InputError (an unknown status would list nothing and look like no jobs)."""
    from flows.runtime.errors import InputError

    if limit < 1:
        raise InputError(f"limit must be at least 1, got {limit}", field="limit")
    if status is not None and status not in {s.value for s in JobStatus}:
        known = ", ".join(s.value for s in JobStatus)
        raise InputError(f"unknown status {status!r} (one of: {known})", field="status")
    with _session() as s:
        q = select(Job).order_by(col(Job.updated_at).desc()).limit(limit)
        if status:
            q = q.where(Job.status == status)
        return list(s.exec(q).all())


def _run_report(out_dir: str | None) -> dict[str, Any] | None:
    """The job's report.json (written when the job finished), or None."""
    import json
    from pathlib import Path

    from flows.video.produce import REPORT_NAME

    path = Path(out_dir or "") / REPORT_NAME
    if not out_dir or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def job_details(job_id: str) -> dict[str, Any] | None:
    with _session() as s:
        job = s.get(Job, job_id)
        if job is None:
            return None
        segs = s.exec(select(Segment).where(Segment.job_id == job_id).order_by(Segment.index)).all()
        assets = s.exec(select(Asset).where(Asset.job_id == job_id).order_by(Asset.kind)).all()
        plan = s.exec(
            select(PlanRecord)
            .where(PlanRecord.job_id == job_id)
            .order_by(col(PlanRecord.id).desc())
        ).first()
        turns = (
            s.exec(
                select(PlannerTurnRecord)
                .where(PlannerTurnRecord.plan_id == plan.id)
                .order_by(col(PlannerTurnRecord.turn))
            ).all()
            if plan
            else []
        )
        versions = s.exec(
            select(PlanVersion)
            .where(PlanVersion.job_id == job_id)
            .order_by(col(PlanVersion.number))
        ).all()
        return {
            "job": job.model_dump(),
            # the run report written next to the video (warnings, sampler, counts), if any
            "report": _run_report(job.out_dir),
            # Every saved plan (planner, review app, run --plan), oldest first, without the plans.
            "plan_versions": [v.model_dump(exclude={"plan"}) for v in versions],
            "segments": [x.model_dump() for x in segs],
            "assets": [x.model_dump() for x in assets],
            "plan": plan.model_dump() if plan else None,
            # The requests behind the latest plan (kind, format, seconds, tokens, errors).
            "planner_turns": [t.data for t in turns],
        }
