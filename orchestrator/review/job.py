"""The job under review: its record, words, plan request, segments and the files it may serve.

Everything the review page shows comes from the finished job's output folder and the job
database; the plan request (cues, scenes, constraints) is rebuilt from the script exactly as
the flow built it, so the page validates an edit by the same rules as the planner and the CLI.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from flows.runtime.errors import InputError
from flows.runtime.settings import get_settings
from planners.schema import Plan, PlanRequest, Transcript, Word
from storage import Job, Segment, session_scope
from storage.plan_versions import add_plan_version, latest_plan_version

# Files of a job the page may load, by URL name. Nothing else is ever served.
SERVED_FILES = {
    "video.mp4": "video.mp4",
    "audio.wav": "audio.wav",
    "captions.vtt": "captions.vtt",
    "captions.srt": "captions.srt",
    "timeline.png": "timeline.png",
    "plan.json": "plan.json",
    "words.json": "words.json",
    "final/video.mp4": "final/video.mp4",
    "preview/video.mp4": "preview/video.mp4",  # previews of a job not made with the animatic
    "finish-preview/video.mp4": "finish-preview/video.mp4",  # the finishing panel's preview
    "finish-preview/poster.png": "finish-preview/poster.png",
    "finish-preview/chapters.txt": "finish-preview/chapters.txt",
}
VERSIONS_DIR = "plans"
FINAL_DIR = "final"
FINISH_PREVIEW_DIR = "finish-preview"


def find_job(target: str, db: str) -> Job:
    """The job for an output folder (its newest job) or a job id; InputError when none."""
    path = Path(target)
    with session_scope(db) as s:
        if path.is_dir():
            out_dir = str(path.resolve())
            job = s.exec(
                select(Job).where(Job.out_dir == out_dir).order_by(col(Job.updated_at).desc())
            ).first()
            if job is None:
                raise InputError(
                    f"no job recorded for the folder {out_dir}; run `avatar-flow run SCRIPT "
                    f"--out {target}` first",
                    field="target",
                )
            return job
        job = s.get(Job, target)
        if job is None:
            raise InputError(
                f"'{target}' is neither an output folder nor a job id (see `avatar-flow jobs`)",
                field="target",
            )
        return job


def read_transcript(out_dir: Path, duration: float | None) -> Transcript:
    """words.json of a finished job as the Transcript the planner saw."""
    path = out_dir / "words.json"
    if not path.is_file():
        raise InputError(f"{path} is missing: the job has not finished", field="target")
    rows = json.loads(path.read_text())
    words = [
        Word(
            word=r["word"], start=r["start"], end=r["end"], interpolated=bool(r.get("interpolated"))
        )
        for r in rows
    ]
    timing = [r["timing"] for r in rows if r.get("timing") and not r.get("interpolated")]
    end = words[-1].end if words else 0.0
    return Transcript(
        words=words,
        aligner=timing[0] if timing else "unknown",
        duration=max(duration or 0.0, end),
    )


@dataclass
class ReviewJob:
    """One job opened for review (loaded once; segment statuses are re-read on demand)."""

    db: str
    job_id: str
    out_dir: Path
    title: str
    script_path: Path
    renderer: str
    planner: str
    options: dict[str, Any]
    fps: int
    transcript: Transcript
    request: PlanRequest
    segment_seconds: float
    overlap: int
    extra: dict[str, Any] = field(default_factory=dict)
    latent: bool = False  # the job's segments hand latents on (flows.video.segments)

    @property
    def words(self) -> list[Word]:
        return self.transcript.words

    def served_path(self, name: str) -> Path | None:
        """The file behind a URL name, only when it is one of the job's own files."""
        rel = SERVED_FILES.get(name)
        if rel is None:
            return None
        root = self.out_dir.resolve()
        path = (root / rel).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path

    def version_file(self, number: int) -> Path:
        return self.out_dir / VERSIONS_DIR / f"v{number:04d}.json"

    def segment_rows(self) -> list[dict[str, Any]]:
        with session_scope(self.db) as s:
            rows = s.exec(
                select(Segment).where(Segment.job_id == self.job_id).order_by(Segment.index)
            ).all()
            return [
                {
                    "index": r.index,
                    "start": r.start,
                    "end": r.end,
                    "status": r.status,
                    "sha256": r.video_sha256,
                }
                for r in rows
            ]

    def job_row(self) -> dict[str, Any]:
        with session_scope(self.db) as s:
            job = s.get(Job, self.job_id)
            # Not `settings`: its options may hold a webhook URL with a token in it.
            keep = {"id", "status", "title", "out_dir", "renderer", "planner", "updated_at"}
            return job.model_dump(mode="json", include=keep) if job else {}

    def current_plan(self) -> tuple[dict[str, Any], int]:
        """The latest plan version; the job's plan.json becomes version 1 on first open."""
        latest = latest_plan_version(self.db, self.job_id)
        if latest is None:
            data = json.loads((self.out_dir / "plan.json").read_text())
            plan = Plan.model_validate(data).model_dump(mode="json")
            latest, _ = add_plan_version(
                self.db,
                self.job_id,
                plan,
                parent=None,
                author=self.planner,
                source="planner",
                check_parent=False,
            )
        return latest.plan, latest.number


def open_job(target: str, db: str | None = None) -> ReviewJob:
    """Load a finished job for review; InputError (one line, exit 2) when it cannot be."""
    from orchestrator.review.context import job_plan_context

    db = db or get_settings().db_url
    job = find_job(target, db)
    out_dir = Path(job.out_dir)
    if not (out_dir / "plan.json").is_file() or not (out_dir / "video.mp4").is_file():
        raise InputError(
            f"job {job.id} has no finished output in {out_dir} (status {job.status})",
            field="target",
        )
    transcript = read_transcript(out_dir, job.duration)
    ctx = job_plan_context(job.script_path, job.settings.get("options", {}), transcript)
    return ReviewJob(
        db=db,
        job_id=job.id,
        out_dir=out_dir,
        title=job.title,
        script_path=Path(job.script_path),
        renderer=job.renderer,
        planner=job.planner,
        options=dict(job.settings.get("options", {})),
        fps=int(job.settings.get("fps") or ctx.fps),
        transcript=transcript,
        request=ctx.request,
        segment_seconds=ctx.segment_seconds,
        overlap=ctx.overlap,
        latent=ctx.latent,
    )
