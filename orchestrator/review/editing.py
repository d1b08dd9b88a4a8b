"""Edits from the page: rows -> plan, validator messages -> rows, plan -> segments it touches.

The page sends phases as (action, first word, last word); times always come from the words,
so every edited phase starts and ends on a word boundary by construction.
"""

import re
from typing import Any

from flows.video.given_plan import plan_from_data
from orchestrator.review.job import ReviewJob
from planners.schema import Plan

_PHASE_REF = re.compile(r"phases\[(\d+)\]")
_BASE_REF = re.compile(r"^base\.(\w+)")
_WINDOW_REF = re.compile(r"^phases\[\d+\]\.\.phases\[\d+\]")
_EDITED_KEYS = ("action", "first_word", "last_word")


def edit_to_data(payload: dict[str, Any], parent: dict[str, Any]) -> dict[str, Any]:
    """The plan dict for an edit; phases the person changed are marked `source: edit`."""
    before = {tuple(p.get(k) for k in _EDITED_KEYS): p.get("source") for p in parent["phases"]}
    phases = []
    for row in payload.get("phases") or []:
        key = (str(row.get("action", "")).strip(), row.get("first_word"), row.get("last_word"))
        phases.append(
            {
                "action": key[0],
                "first_word": key[1],
                "last_word": key[2],
                "source": before.get(key, "edit"),
            }
        )
    base = {**parent.get("base", {}), **(payload.get("base") or {})}
    return {
        "schema_version": parent.get("schema_version", 1),
        "planner": parent.get("planner", "edit"),
        "base": {k: str(v).strip() for k, v in base.items()},
        "phases": phases,
        "fallback_reason": parent.get("fallback_reason"),
        "warnings": parent.get("warnings", []),
    }


def error_rows(errors: list[str]) -> list[dict[str, Any]]:
    """Each validator message with the phase rows and base field it is about."""
    out = []
    for msg in errors:
        phases = sorted({int(m) for m in _PHASE_REF.findall(msg)})
        # "phases[0]..phases[2] fall within one window": the later phases are the ones to move.
        if _WINDOW_REF.match(msg) and len(phases) > 1:
            phases = list(range(phases[0], phases[-1] + 1))
        base = _BASE_REF.match(msg)
        out.append({"message": msg, "phases": phases, "field": base.group(1) if base else None})
    return out


def segment_specs(job: ReviewJob, plan: Plan) -> list[dict[str, Any]]:
    from flows.video.segments import plan_segments

    specs = plan_segments(
        job.words,
        job.transcript.duration,
        plan,
        fps=job.fps,
        max_seconds=job.segment_seconds,
        overlap=job.overlap,
        latent=job.latent,
    )
    return [s.to_dict() for s in specs]


def affected_segments(job: ReviewJob, old: dict[str, Any], new: Plan) -> list[int]:
    """Segments whose render inputs differ between two plans (what a preview re-renders)."""
    a = segment_specs(job, Plan.model_validate(old))
    b = segment_specs(job, new)
    if len(a) != len(b):
        return list(range(len(b)))
    return [i for i, (x, y) in enumerate(zip(a, b)) if x != y]


def check_edit(job: ReviewJob, payload: dict[str, Any], parent: dict[str, Any]) -> dict[str, Any]:
    """Validate an edit: the normalised plan, per-row errors, and the segments it touches."""
    data = edit_to_data(payload, parent)
    plan, errors = plan_from_data(data, job.request)
    result: dict[str, Any] = {"errors": error_rows(errors), "plan": None, "affected": []}
    if plan is not None:
        result["plan"] = plan.model_dump(mode="json")
        if not errors:
            result["affected"] = affected_segments(job, parent, plan)
    return result
