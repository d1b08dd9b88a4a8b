"""Planners as registered specs: the one list of planner names, and what the pipeline asks of
a planner (is it configured, what identifies its plans in a cache, may its fallbacks be
cached) without comparing names.

The rule and MLLM planners are built in. Others come from Python entry points in the group
`avatar_flow.planners`, so a separate package adds one without editing this repository:

    [project.entry-points."avatar_flow.planners"]
    toy = "toy_planner:SPEC"      # a PlannerSpec (or a callable returning one)

Entry-point names are listed without importing them (CLI help, the Prefect form's enum); a
plugin's module is imported the first time its planner is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from planners.base import Planner
from planners.cache import plan_cache_key, plan_cacheable
from planners.mllm import MLLMPlanner
from planners.mllm_settings import MLLMSettings
from planners.rules import RulePlanner
from planners.schema import Plan, PlanRequest

ENTRY_POINT_GROUP = "avatar_flow.planners"


@dataclass(frozen=True)
class PlannerRuntime:
    """What the pipeline hands a planner besides its own settings: where an endpoint's learnt
    capabilities are remembered, and where streamed progress goes. Planners may ignore it."""

    capabilities: Any = None  # planners.endpoints.CapabilityStore
    on_progress: Callable[[Any], None] | None = None  # planners.llm.Progress -> None


def _always_configured() -> str | None:
    return None


def _rules_identity(request: PlanRequest) -> str:
    return plan_cache_key(request, None)


@dataclass(frozen=True)
class PlannerSpec:
    """One planner, as the pipeline sees it."""

    name: str
    description: str  # one line: the CLI help and the Prefect form
    create: Callable[..., Planner]  # create(runtime: PlannerRuntime | None, **settings)
    aliases: tuple[str, ...] = ()
    # None when the planner can run now, else why not (one line, e.g. a missing endpoint)
    unconfigured: Callable[[], str | None] = _always_configured
    # what identifies its plan for a request: request content, endpoint and model, version
    cache_identity: Callable[[PlanRequest], str] = _rules_identity
    # whether a plan may be served from a cache (a fallback for a temporary reason may not)
    cacheable: Callable[[Plan], bool] = plan_cacheable
    extras: dict[str, Any] = field(default_factory=dict)  # free-form, for plugins


# ------------------------------------------------------------------------------- the registry
_BUILTIN: dict[str, PlannerSpec] = {}
_LOADED: dict[str, PlannerSpec] = {}


def register_planner(spec: PlannerSpec) -> PlannerSpec:
    """Add a planner in-process (tests, notebooks); packages use the entry-point group."""
    _BUILTIN[spec.name] = spec
    _LOADED.pop(spec.name, None)
    return spec


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def planner_names(*, aliases: bool = False) -> tuple[str, ...]:
    """Every planner's name (built in first, then plugins); with `aliases`, every accepted one."""
    names = list(_BUILTIN)
    if aliases:
        names += [a for s in _BUILTIN.values() for a in s.aliases]
    names += sorted(n for n in _entry_points() if n not in _BUILTIN)
    return tuple(names)


def _canonical(name: str) -> str:
    key = name.strip().lower()
    for spec in _BUILTIN.values():
        if key in spec.aliases:
            return spec.name
    return key


def get_planner_spec(name: str) -> PlannerSpec:
    """The spec of `name` (or an alias); ValueError naming the choices when there is none."""
    key = _canonical(name)
    if key in _BUILTIN:
        return _BUILTIN[key]
    if key in _LOADED:
        return _LOADED[key]
    ep = _entry_points().get(key)
    if ep is None:
        raise ValueError(f"unknown planner '{name}' (one of: {', '.join(planner_names())})")
    obj = ep.load()
    spec = obj() if callable(obj) and not isinstance(obj, PlannerSpec) else obj
    if not isinstance(spec, PlannerSpec) or spec.name != key:
        raise ValueError(
            f"entry point '{key}' = {ep.value} in group {ENTRY_POINT_GROUP} is not a "
            f"PlannerSpec named '{key}'"
        )
    _LOADED[key] = spec
    return spec


def get_planner(name: str, runtime: PlannerRuntime | None = None, **kw: Any) -> Planner:
    """A planner by name: the rule planner (kwargs to RulePlanner), the MLLM planner (kwargs to
    MLLMSettings, or settings=/fallback=/client= passed through), or a plugin's."""
    return get_planner_spec(name).create(runtime, **kw)


# --------------------------------------------------------------------------------- built in
def _create_rules(runtime: PlannerRuntime | None, **kw: Any) -> Planner:
    return RulePlanner(**kw)


def _create_mllm(runtime: PlannerRuntime | None, **kw: Any) -> Planner:
    passthrough = {k: kw.pop(k) for k in ("settings", "fallback", "client") if k in kw}
    for name in ("capabilities", "on_progress"):  # explicit ones win over the runtime's
        value = kw.pop(name, None)
        if value is None and runtime is not None:
            value = getattr(runtime, name)
        if value is not None:
            passthrough[name] = value
    if "settings" not in passthrough:
        passthrough["settings"] = MLLMSettings(**kw)
    elif kw:
        passthrough["settings"] = passthrough["settings"].model_copy(update=kw)
    return MLLMPlanner(**passthrough)


def _mllm_unconfigured() -> str | None:
    """An endpoint or a key is set, by the same rules the planner itself reads them."""
    llm = MLLMSettings()
    if llm.base_url or llm.api_key.get_secret_value() not in ("", "EMPTY"):
        return None
    return "the mllm planner needs AVATAR_FLOW_LLM_BASE_URL or OPENAI_API_KEY"


def _mllm_identity(request: PlanRequest) -> str:
    return plan_cache_key(request, MLLMSettings())


RULES = register_planner(
    PlannerSpec(
        name="rule",
        description="offline rules: cues, a lexicon of gestures, word-boundary snapping",
        create=_create_rules,
        aliases=("rules",),
    )
)
MLLM = register_planner(
    PlannerSpec(
        name="mllm",
        description="a multimodal chat model on any OpenAI-compatible endpoint (from the "
        "environment), falling back to the rules",
        create=_create_mllm,
        aliases=("llm",),
        unconfigured=_mllm_unconfigured,
        cache_identity=_mllm_identity,
    )
)
