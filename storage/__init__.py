"""Records and files: SQLModel tables, the engine factory and the content-addressed store."""

from storage.assets import (
    AssetStore,
    atomic_copy,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    sha256_bytes,
    sha256_file,
)
from storage.clips import Clip  # noqa: F401  (training clips; registers the table)
from storage.db import (
    DatabaseUnavailable,
    check_database,
    get_engine,
    session_scope,
    shown_url,
    sqlite_url,
)
from storage.models import (
    Asset,
    Checkpoint,
    Job,
    JobStatus,
    PlannerTurnRecord,
    PlanRecord,
    PlanVersion,
    Segment,
    utcnow,
)

__all__ = [
    "Asset",
    "AssetStore",
    "Checkpoint",
    "DatabaseUnavailable",
    "Job",
    "JobStatus",
    "PlanRecord",
    "PlanVersion",
    "PlannerTurnRecord",
    "Segment",
    "atomic_copy",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_database",
    "get_engine",
    "session_scope",
    "shown_url",
    "sha256_bytes",
    "sha256_file",
    "sqlite_url",
    "utcnow",
]
