"""Database bookkeeping for a job: short transactions, ids and paths in, no ORM objects out."""

import getpass
import json
from pathlib import Path
from typing import Any

from sqlmodel import col, func, select

from planners.schema import Plan
from storage import (
    Asset,
    Job,
    JobStatus,
    PlannerTurnRecord,
    PlanRecord,
    Segment,
    session_scope,
    sha256_bytes,
    sha256_file,
    utcnow,
)
from storage.plan_versions import add_plan_version


def open_job(db: str, *, input_key: str, out_dir: str, **fields: Any) -> str:
    """The job for (inputs, output folder): resumed if it exists, created otherwise."""
    with session_scope(db) as s:
        job = s.exec(select(Job).where(Job.input_key == input_key, Job.out_dir == out_dir)).first()
        if job is None:
            job = Job(input_key=input_key, out_dir=out_dir, **fields)
        else:
            for k, v in fields.items():
                setattr(job, k, v)
            job.error = None
        job.status = JobStatus.queued
        job.updated_at = utcnow()
        s.add(job)
        s.flush()
        return job.id


def set_status(db: str, job_id: str, status: str, **fields: Any) -> None:
    with session_scope(db) as s:
        job = s.get(Job, job_id)
        job.status = status
        job.updated_at = utcnow()
        for k, v in fields.items():
            setattr(job, k, v)
        s.add(job)


def record_plan(
    db: str, job_id: str, plan: Plan, cache_key: str, turns: list[dict] | None = None
) -> int:
    """Store a plan with its planner turns (JSON records), unless it is the job's latest plan
    already (a re-run served from the cache): the latest record is the plan the job used."""
    data = plan.model_dump(mode="json")
    sha = sha256_bytes(json.dumps(data, sort_keys=True).encode())
    with session_scope(db) as s:
        latest = s.exec(
            select(PlanRecord)
            .where(PlanRecord.job_id == job_id)
            .order_by(col(PlanRecord.id).desc())
        ).first()
        if latest is not None and latest.sha256 == sha:  # a re-run with the cached plan
            return latest.id
        rec = PlanRecord(
            job_id=job_id,
            planner=plan.planner,
            cache_key=cache_key,
            sha256=sha,
            plan=data,
            fallback_reason=plan.fallback_reason,
        )
        s.add(rec)
        s.flush()
        for i, turn in enumerate(turns or []):
            s.add(PlannerTurnRecord(plan_id=rec.id, turn=i, data=turn))
        return rec.id


def record_plan_version(db: str, job_id: str, plan: Plan, *, source: str) -> int:
    """The job's plan version for `plan`: a new one when it differs from the latest.

    Every plan a job renders is a version (the planner's, `run --plan`, the review app's), so
    `jobs show` and the review app list what was rendered when, by whom.
    """
    try:
        author = getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        author = ""
    version, _ = add_plan_version(
        db,
        job_id,
        plan.model_dump(mode="json"),
        parent=None,
        author=author,
        source=source,
        check_parent=False,
    )
    return version.number


def record_segments(db: str, job_id: str, specs: list[dict]) -> None:
    """(Re)declare the job's segments; rows of an earlier attempt are replaced."""
    with session_scope(db) as s:
        for old in s.exec(select(Segment).where(Segment.job_id == job_id)).all():
            s.delete(old)
        s.flush()
        for d in specs:
            s.add(
                Segment(
                    job_id=job_id,
                    index=d["index"],
                    start=d["start"],
                    end=d["end"],
                    num_frames=d["num_frames"],
                    render_frames=d["render_frames"],
                )
            )
        s.get(Job, job_id).segments_total = len(specs)


def record_segment_done(
    db: str,
    job_id: str,
    index: int,
    *,
    status: str,
    cache_key: str,
    path: str,
    sha256: str,
    seconds: float | None,
) -> None:
    with session_scope(db) as s:
        seg = s.exec(select(Segment).where(Segment.job_id == job_id, Segment.index == index)).one()
        seg.status, seg.cache_key, seg.video_path, seg.video_sha256 = (
            status,
            cache_key,
            path,
            sha256,
        )
        seg.render_seconds, seg.updated_at = seconds, utcnow()
        s.add(seg)
        s.flush()
        job = s.get(Job, job_id)
        # Counted by the database: loading every row here made a job quadratic in segments.
        job.segments_rendered = s.exec(
            select(func.count())
            .select_from(Segment)
            .where(Segment.job_id == job_id, col(Segment.status).in_(("rendered", "cached")))
        ).one()
        if status == "rendered" and seconds:
            job.render_seconds = (job.render_seconds or 0.0) + seconds
        s.add(job)


def record_assets(db: str, job_id: str, files: dict[str, Path]) -> dict[str, str]:
    """Register output files (kind -> path) with their hashes, all in one transaction."""
    hashes = {}
    with session_scope(db) as s:
        for kind, path in files.items():
            sha = sha256_file(path)
            hashes[kind] = sha
            asset = s.exec(select(Asset).where(Asset.job_id == job_id, Asset.kind == kind)).first()
            if asset is None:
                asset = Asset(
                    job_id=job_id, kind=kind, path=str(path), sha256=sha, bytes=path.stat().st_size
                )
            else:
                asset.path, asset.sha256, asset.bytes = str(path), sha, path.stat().st_size
                asset.created_at = utcnow()
            s.add(asset)
    return hashes


def fail_jobs_of_run(db: str, flow_run_id: str, error: str, status: str = JobStatus.failed) -> int:
    """Mark the unfinished job(s) a flow run opened as failed (or cancelled) with `error`;
    how many."""
    with session_scope(db) as s:
        jobs = s.exec(
            select(Job).where(Job.flow_run_id == flow_run_id, Job.status != JobStatus.done)
        ).all()
        for job in jobs:
            job.status, job.error, job.updated_at = status, error, utcnow()
            s.add(job)
        return len(jobs)
