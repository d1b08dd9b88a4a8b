"""Planners: turn timed words into an ActAvatar structured prompt (base + phase blocks).

Imports nothing else of avatar-flow and knows nothing of models: the MLLM planner talks to
any OpenAI-compatible server, the rule planner runs offline and is the fallback. Planners are
registered specs (`planners.registry`); plugins add theirs through entry points.
"""

from planners.annotation import Annotation, make_annotation, normalised_anchors
from planners.base import Planner
from planners.cache import PLANNER_VERSION, plan_cache_key, plan_cacheable
from planners.endpoints import (
    FORMATS,
    CapabilityStore,
    EndpointCapabilities,
    JsonCapabilityStore,
    MemoryCapabilityStore,
    default_store,
    endpoint_id,
)
from planners.llm import (
    TEMPORARY_FAILURES,
    ChatEndpoint,
    JSONAnswer,
    LLMFailure,
    Progress,
    ask_json,
)
from planners.mllm import MLLMPlanner
from planners.mllm_settings import MLLMSettings
from planners.registry import (
    ENTRY_POINT_GROUP,
    PlannerRuntime,
    PlannerSpec,
    get_planner,
    get_planner_spec,
    planner_names,
    register_planner,
)
from planners.rules import RulePlanner, base_block
from planners.schema import (
    DEFAULT_ACTION_VOCABULARY,
    PLAN_SCHEMA_VERSION,
    BaseBlock,
    Cue,
    Phase,
    Plan,
    PlanConstraints,
    PlannerTurn,
    PlanRequest,
    Scene,
    Transcript,
    Word,
)
from planners.snapping import (
    nearest_boundary,
    phase_from_words,
    snap_window,
    span_seconds,
    word_boundaries,
)
from planners.validation import usable_cues, validate_plan

__all__ = [
    "ENTRY_POINT_GROUP",
    "PlannerRuntime",
    "PlannerSpec",
    "get_planner_spec",
    "planner_names",
    "register_planner",
    "DEFAULT_ACTION_VOCABULARY",
    "FORMATS",
    "PLANNER_VERSION",
    "PLAN_SCHEMA_VERSION",
    "TEMPORARY_FAILURES",
    "Annotation",
    "BaseBlock",
    "CapabilityStore",
    "ChatEndpoint",
    "Cue",
    "EndpointCapabilities",
    "JSONAnswer",
    "JsonCapabilityStore",
    "LLMFailure",
    "MemoryCapabilityStore",
    "Progress",
    "MLLMPlanner",
    "MLLMSettings",
    "Phase",
    "Plan",
    "PlanConstraints",
    "PlanRequest",
    "Planner",
    "PlannerTurn",
    "RulePlanner",
    "Scene",
    "Transcript",
    "Word",
    "ask_json",
    "base_block",
    "default_store",
    "endpoint_id",
    "get_planner",
    "make_annotation",
    "nearest_boundary",
    "normalised_anchors",
    "phase_from_words",
    "plan_cache_key",
    "plan_cacheable",
    "snap_window",
    "span_seconds",
    "usable_cues",
    "validate_plan",
    "word_boundaries",
]
