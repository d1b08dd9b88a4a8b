"""Plan versions of a job: append-only, numbered, with who/when and a diff against the parent.

Plans are handled as the JSON dicts written to plan.json (storage knows no planner schemas).
The two rules that keep a person's edit from being lost live here, next to the table:

* a version is never overwritten: `add_plan_version` inserts number = latest + 1, and the
  unique (job, number) constraint turns a racing second insert into an error, not a replace;
* an edit made from an older version (a second browser tab) is refused with `StaleVersion`
  instead of silently replacing what was saved in between.
"""

import difflib
import json
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from storage.assets import sha256_bytes
from storage.db import session_scope
from storage.models import PlanVersion

__all__ = [
    "StaleVersion",
    "add_plan_version",
    "diff_plans",
    "get_plan_version",
    "latest_plan_version",
    "list_plan_versions",
    "plan_sha256",
]

# Fields of a phase that a person edits; start/end follow from the words.
_PHASE_KEYS = ("action", "first_word", "last_word")


class StaleVersion(Exception):
    """The edit started from version `parent`, but version `latest` was saved since."""

    def __init__(self, job_id: str, parent: int | None, latest: PlanVersion | None) -> None:
        # Plain values only: the row is expired once the failed transaction rolls back.
        self.job_id, self.parent = job_id, parent
        self.latest = latest.number if latest else None
        if latest is None:
            super().__init__(f"job {job_id} has no plan version {parent}; reload")
            return
        who = f" by {latest.author}" if latest.author else ""
        super().__init__(
            f"plan version {latest.number} was saved{who} at "
            f"{latest.created_at:%Y-%m-%d %H:%M:%S} after the version {parent} this edit "
            "started from; reload to see it (this edit was not saved)"
        )


def plan_sha256(plan: dict[str, Any]) -> str:
    """Content hash of a plan: the same plan always hashes the same, whatever the key order."""
    return sha256_bytes(json.dumps(plan, sort_keys=True, separators=(",", ":")).encode())


def _phase_label(i: int, p: dict[str, Any]) -> str:
    return (
        f"phases[{i}] (words {p.get('first_word')}..{p.get('last_word')}, {p.get('action', '')!r})"
    )


def diff_plans(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """What changed from `old` to `new`, one line per change (phases by position, base fields)."""
    if old is None:
        return [f"first version: {len(new.get('phases', []))} phases"]
    lines: list[str] = []
    ob, nb = old.get("base", {}) or {}, new.get("base", {}) or {}
    for key in sorted(set(ob) | set(nb)):
        if ob.get(key) != nb.get(key):
            lines.append(f"base.{key}: {ob.get(key)!r} -> {nb.get(key)!r}")
    op_, np_ = old.get("phases", []) or [], new.get("phases", []) or []
    a = [tuple(p.get(k) for k in _PHASE_KEYS) for p in op_]
    b = [tuple(p.get(k) for k in _PHASE_KEYS) for p in np_]
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if tag == "replace" and i2 - i1 == j2 - j1:
            for i, j in zip(range(i1, i2), range(j1, j2)):
                p, q = op_[i], np_[j]
                changes = []
                if p.get("action") != q.get("action"):
                    changes.append(f"action {p.get('action')!r} -> {q.get('action')!r}")
                if (p.get("first_word"), p.get("last_word")) != (
                    q.get("first_word"),
                    q.get("last_word"),
                ):
                    changes.append(
                        f"words {p.get('first_word')}..{p.get('last_word')} -> "
                        f"{q.get('first_word')}..{q.get('last_word')}"
                    )
                lines.append(f"phases[{j}]: " + "; ".join(changes))
            continue
        lines += [f"removed {_phase_label(i, op_[i])}" for i in range(i1, i2)]
        lines += [f"added {_phase_label(j, np_[j])}" for j in range(j1, j2)]
    return lines


def latest_plan_version(db: str, job_id: str) -> PlanVersion | None:
    with session_scope(db) as s:
        return s.exec(
            select(PlanVersion)
            .where(PlanVersion.job_id == job_id)
            .order_by(col(PlanVersion.number).desc())
        ).first()


def list_plan_versions(db: str, job_id: str) -> list[PlanVersion]:
    """Every version of the job, oldest first."""
    with session_scope(db) as s:
        return list(
            s.exec(
                select(PlanVersion)
                .where(PlanVersion.job_id == job_id)
                .order_by(col(PlanVersion.number))
            ).all()
        )


def get_plan_version(db: str, job_id: str, number: int) -> PlanVersion | None:
    with session_scope(db) as s:
        return s.exec(
            select(PlanVersion).where(PlanVersion.job_id == job_id, PlanVersion.number == number)
        ).first()


def add_plan_version(
    db: str,
    job_id: str,
    plan: dict[str, Any],
    *,
    parent: int | None,
    author: str = "",
    source: str = "review",
    note: str = "",
    check_parent: bool = True,
) -> tuple[PlanVersion, bool]:
    """Append `plan` as the job's next version; returns (version, created).

    With `check_parent` (the review app), `parent` must be the latest version number (None
    when the job has none yet), else `StaleVersion`. Without it (`run --plan`, a planner
    run), the plan is appended on top of whatever is latest. A plan equal to the latest
    version is not stored twice: (latest, False) comes back.
    """
    sha = plan_sha256(plan)
    try:
        with session_scope(db) as s:
            latest = s.exec(
                select(PlanVersion)
                .where(PlanVersion.job_id == job_id)
                .order_by(col(PlanVersion.number).desc())
            ).first()
            latest_number = latest.number if latest else None
            if check_parent and parent != latest_number:
                raise StaleVersion(job_id, parent, latest)
            if latest is not None and latest.sha256 == sha:
                return latest, False
            row = PlanVersion(
                job_id=job_id,
                number=(latest_number or 0) + 1,
                parent=latest_number,
                source=source,
                author=author,
                note=note,
                sha256=sha,
                plan=plan,
                diff=diff_plans(latest.plan if latest else None, plan),
            )
            s.add(row)
            s.flush()
            return row, True
    except IntegrityError as exc:  # another writer took the number between our read and insert
        latest = latest_plan_version(db, job_id)
        if latest is None:  # pragma: no cover - the job itself is gone
            raise
        raise StaleVersion(job_id, parent, latest) from exc
