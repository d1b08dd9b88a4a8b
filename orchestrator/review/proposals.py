"""Ask the planner: a proposal from the MLLM planner for the whole job or one phase.

A proposal is never applied by itself: the page shows it next to the current plan with its
diff and validation, and the person accepts (it becomes the editor's content, saved like any
edit) or rejects it. One phase is re-planned by asking for a whole plan and taking the
phases it puts between the neighbours of the chosen phase, so the rest stays untouched.
"""

from typing import Any

from flows.video.given_plan import plan_from_data
from orchestrator.review.editing import error_rows
from orchestrator.review.job import ReviewJob
from storage.plan_versions import diff_plans


def llm_configured() -> bool:
    """An endpoint or a key is set, by the rules the planner itself reads them."""
    from planners import MLLMSettings

    llm = MLLMSettings()
    return bool(llm.base_url) or llm.api_key.get_secret_value() not in ("", "EMPTY")


def _phase_window(current: dict[str, Any], index: int, n_words: int) -> tuple[int, int]:
    """Words the re-planned phase may use: from after its left neighbour to before its right."""
    phases = current["phases"]
    lo = phases[index - 1]["last_word"] + 1 if index > 0 else 0
    hi = phases[index + 1]["first_word"] - 1 if index + 1 < len(phases) else n_words - 1
    return lo, hi


def propose(job: ReviewJob, current: dict[str, Any], phase: int | None) -> dict[str, Any]:
    """The MLLM planner's proposal against `current` (the editor's plan dict)."""
    import planners

    if not llm_configured():
        raise RuntimeError(
            "no MLLM planner is configured: set AVATAR_FLOW_LLM_BASE_URL (and "
            "AVATAR_FLOW_LLM_MODEL, OPENAI_API_KEY if the server needs them)"
        )
    planned = planners.get_planner("mllm").plan(job.request)
    if planned.fallback_reason:
        raise RuntimeError(f"the MLLM planner gave no plan: {planned.fallback_reason}")
    new = planned.model_dump(mode="json")
    if phase is None:
        proposal = {**current, "base": new["base"], "phases": new["phases"]}
        scope = "whole job"
    else:
        if not 0 <= phase < len(current["phases"]):
            raise ValueError(f"no phase {phase} in the plan")
        lo, hi = _phase_window(current, phase, len(job.words))
        old = current["phases"][phase]
        picked = [
            p
            for p in new["phases"]
            if lo <= p["first_word"]
            and p["last_word"] <= hi
            and p["last_word"] >= old["first_word"]
            and p["first_word"] <= old["last_word"]
        ]
        phases = current["phases"][:phase] + picked + current["phases"][phase + 1 :]
        proposal = {**current, "phases": phases}
        scope = f"phase {phase + 1}"
    plan, errors = plan_from_data(proposal, job.request)
    return {
        "scope": scope,
        "phase": phase,
        "plan": plan.model_dump(mode="json") if plan else proposal,
        "errors": error_rows(errors),
        "diff": diff_plans(current, proposal),
        "model": planned.trace[-1].model if planned.trace else "",
    }
