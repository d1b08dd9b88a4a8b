"""`plan_cache_key`: when two plan requests must give the same plan; `plan_cacheable`: whether
a plan may be served from a cache at all.

The key covers what changes the plan — transcript, cues, scenes, style, constraints, the
avatar image's *content* (not its path), the endpoint (base URL without credentials) and
model, the loop settings and the planner version — and nothing that does not: no run ids, no
paths, no timeouts, never the API key.
"""

import hashlib
import json
from pathlib import Path

from planners.endpoints import endpoint_id
from planners.llm import TEMPORARY_FAILURES
from planners.mllm_settings import MLLMSettings
from planners.schema import Plan, PlanRequest

# Bump when prompts, lexicon or rules change what a planner returns for the same request.
PLANNER_VERSION = "2"


def plan_cacheable(plan: Plan) -> bool:
    """False for a fallback caused by a temporary failure (server down, timeout, refused
    format...): such a plan is recorded with its job but must never be served from a cache,
    or the next call returns the old failure without asking the server again."""
    return plan.fallback_kind not in TEMPORARY_FAILURES


def file_sha256(path: str | Path | None) -> str | None:
    """sha256 of a file's bytes; 'missing' when it cannot be read, None when no path."""
    if not path:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "missing"


def plan_cache_key(request: PlanRequest, settings: MLLMSettings | None = None) -> str:
    """Hex sha256 identifying the plan for `request` (rule planner when settings is None)."""
    if settings is None:
        planner: dict[str, object] = {"planner": "rules"}
        image = audio = None
    else:
        planner = {
            "planner": "mllm",
            "endpoint": endpoint_id(settings.base_url),
            "model": settings.model,
            "send_image": settings.send_image,
            "send_audio": settings.send_audio,
            "use_tools": settings.use_tools,
            "structured_outputs": settings.structured_outputs,
            "max_repair_turns": settings.max_repair_turns,
            "max_tokens": settings.max_tokens,
            "max_string_chars": settings.max_string_chars,
            "temperature": settings.temperature,
            "seed": settings.seed,
        }
        image = file_sha256(request.avatar_image) if settings.send_image else None
        audio = file_sha256(request.speech_audio) if settings.send_audio else None
    payload = {
        "version": PLANNER_VERSION,
        "request": request.model_dump(mode="json", exclude={"avatar_image", "speech_audio"}),
        "image_sha256": image,
        "audio_sha256": audio,
        "planner": planner,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
