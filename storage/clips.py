"""The `Clip` table: one row per training clip cut by the `build-dataset` flow.

Kept apart from storage/models.py (owned by the pipeline) and imported by storage/__init__.py
so the table exists before the first engine is created. No `from __future__ import annotations`
(SQLModel needs real annotations).
"""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from storage.models import utcnow


class Clip(SQLModel, table=True):
    id: str = Field(primary_key=True)  # content id: source sha256 + start frame + cut settings
    dataset: str = Field(index=True)  # resolved dataset folder
    source: str  # the video it was cut from
    source_sha256: str = Field(index=True)
    start: float  # seconds into the source
    num_frames: int
    fps: int
    width: int
    height: int
    motion: float
    motion_method: str = "frame-diff"  # frame-diff | dwpose
    stage2: bool = False  # motion above the threshold: used by stage 2
    caption: str = ""
    annotation: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    words: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    cached: bool = False
    created_at: datetime = Field(default_factory=utcnow)
