"""SQLModel tables: every job, segment, plan, asset and checkpoint avatar-flow produces.

No `from __future__ import annotations` here: it breaks SQLModel relationship mapping.
JSON columns are reassigned, never mutated in place (SQLAlchemy does not see in-place edits).
"""

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


class JobStatus(StrEnum):
    queued = "queued"
    speech = "speech"
    aligned = "aligned"
    planned = "planned"
    rendering = "rendering"
    stitched = "stitched"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"  # stopped by a signal (Ctrl-C, SIGTERM) or a Prefect cancel


class Job(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    status: str = Field(default=JobStatus.queued, index=True)
    title: str = ""
    script_path: str = ""
    # Content hash of everything that determines the output (script, audio, avatar, settings).
    input_key: str = Field(default="", index=True)
    out_dir: str = ""
    renderer: str = "animatic"
    planner: str = "rule"
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    duration: float | None = None
    segments_total: int = 0
    segments_rendered: int = 0
    render_seconds: float = 0.0
    gpu_seconds: float = 0.0
    error: str | None = None
    flow_run_id: str | None = None


class Segment(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("job_id", "index"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="job.id", index=True, ondelete="CASCADE")
    index: int
    start: float
    end: float
    num_frames: int
    render_frames: int
    cache_key: str = ""
    status: str = "pending"  # pending | rendered | cached | failed
    video_sha256: str | None = None
    video_path: str | None = None
    render_seconds: float | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class PlanRecord(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    job_id: str | None = Field(default=None, foreign_key="job.id", index=True, ondelete="CASCADE")
    planner: str
    cache_key: str = Field(default="", index=True)
    sha256: str
    plan: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    fallback_reason: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class PlannerTurnRecord(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    plan_id: int = Field(foreign_key="planrecord.id", index=True, ondelete="CASCADE")
    turn: int
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class Asset(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("job_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: str | None = Field(default=None, foreign_key="job.id", index=True, ondelete="CASCADE")
    kind: str = Field(index=True)  # video | audio | words | plan | captions_srt | ...
    path: str
    sha256: str = Field(index=True)
    bytes: int
    created_at: datetime = Field(default_factory=utcnow)


class Checkpoint(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    stage: str  # stage1 | stage2 | imported
    step: int = 0
    config_hash: str = ""
    data_hash: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    path: str
    sha256: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class LLMEndpoint(SQLModel, table=True):
    """What one OpenAI-compatible endpoint (base URL + model) was found to accept.

    The MLLM planner and judge negotiate the answer format and whether image parts arrive;
    remembering the outcome spares every later plan the refused requests (on a CPU server a
    refused or truncated request costs minutes). `avatar-flow llm reset` deletes rows. The
    base URL is stored without credentials; the API key is never stored.
    """

    __table_args__ = (UniqueConstraint("base_url", "model"),)

    id: int | None = Field(default=None, primary_key=True)
    base_url: str = Field(index=True)
    model: str
    # json_schema | json_object+schema | json_object | text; None = not negotiated yet
    response_format: str | None = None
    # True: image parts arrive; False: text-only (images dropped); None = not known yet
    images: bool | None = None
    # other learnt facts (refused sampling parameters, tools), see planners.EndpointCapabilities
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    updated_at: datetime = Field(default_factory=utcnow)


class PlanVersion(SQLModel, table=True):
    """One saved version of a job's plan: the planner's, or an edit from review or `--plan`.

    Versions are numbered per job from 1 and never overwritten (the unique (job, number) pair
    makes a racing second save fail instead of replacing the first); `parent` is the number
    the edit started from, so a stale edit (two browser tabs) can be recognised and refused.
    `diff` holds the human-readable changes against `parent`.
    """

    __table_args__ = (UniqueConstraint("job_id", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="job.id", index=True, ondelete="CASCADE")
    number: int
    parent: int | None = None
    source: str = "review"  # planner | review | cli | mllm
    author: str = ""
    note: str = ""
    sha256: str = Field(index=True)
    plan: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    diff: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)
