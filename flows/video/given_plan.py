"""A plan given by a person (`run --plan`, the review app) instead of planned: read and checked.

The given plan is checked with the planner's own validator against the job's words and the
same plan request the planner got (cues, scenes, constraints), so an edit is held to exactly
the rules a planned plan is. A person may leave out `start`/`end`: they follow from the words.
"""

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flows.runtime.errors import InputError
from planners.schema import Plan, PlanRequest
from planners.validation import validate_plan


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def plan_from_data(data: Any, request: PlanRequest) -> tuple[Plan | None, list[str]]:
    """Parse and validate a plan (a plan.json dict); (plan, []) when it may be rendered.

    Errors are the validator's own sentences ("phases[1] (words 3..5, 'nods'): lasts 0.40 s,
    shorter than ..."), or for a malformed file the field path and pydantic's reason.
    """
    if not isinstance(data, dict):
        return None, ["the plan must be a JSON object with 'base' and 'phases'"]
    words = request.transcript.words
    data = dict(data)
    data.setdefault("planner", "edit")
    phases = []
    for raw in data.get("phases") or []:
        p = dict(raw) if isinstance(raw, dict) else raw
        if isinstance(p, dict):
            fw, lw = p.get("first_word"), p.get("last_word")
            ok = isinstance(fw, int) and isinstance(lw, int) and 0 <= fw <= lw < len(words)
            if ok and "start" not in p:
                p["start"] = words[fw].start
            if ok and "end" not in p:
                p["end"] = words[lw].end
            p.setdefault("start", 0.0)
            p.setdefault("end", 0.0)
        phases.append(p)
    data["phases"] = phases
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        return None, [f"{_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]
    return plan, validate_plan(plan, request)


def one_line(errors: list[str]) -> str:
    """The first problem, and how many more there are: the CLI's single error line."""
    more = len(errors) - 1
    return errors[0] + (f" (and {more} more problem{'s' * (more > 1)})" if more > 0 else "")


def read_plan_file(path: str | Path) -> dict[str, Any]:
    """A plan file's JSON, checked for shape only (the words come later); InputError if bad.

    Cheap enough for the input checks that run before any model loads: a missing file, bad
    JSON or a malformed phase stops the job at once with one line.
    """
    spath = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("plan file not found", file=spath, field="plan") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the plan: {exc}", file=spath, field="plan") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not valid JSON ({exc.msg})", file=spath, field="plan", line=exc.lineno
        ) from None
    if not isinstance(data, dict):
        raise InputError(
            "the plan must be a JSON object with 'base' and 'phases'", file=spath, field="plan"
        )
    shape = dict(data)
    shape.setdefault("planner", "edit")
    shape["phases"] = [
        {"start": 0.0, "end": 0.0, **p} if isinstance(p, dict) else p
        for p in data.get("phases") or []
    ]
    try:
        Plan.model_validate(shape)
    except ValidationError as exc:
        e = exc.errors()[0]
        raise InputError(f"{_loc(e['loc'])}: {e['msg']}", file=spath) from None
    return data


def check_given_plan(data: Any, request: PlanRequest, *, file: str) -> Plan:
    """The given plan, or InputError (exit 2) naming the phase and the rule it breaks."""
    plan, errors = plan_from_data(data, request)
    if errors or plan is None:
        raise InputError(one_line(errors), file=file)
    return plan


__all__ = [
    "check_given_plan",
    "one_line",
    "plan_from_data",
    "read_plan_file",
]
