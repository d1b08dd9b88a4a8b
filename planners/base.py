"""The planner interface the flows code against: a request in, a plan out, never a model."""

from typing import Protocol, runtime_checkable

from planners.schema import Plan, PlanRequest


@runtime_checkable
class Planner(Protocol):
    """Anything that turns a PlanRequest into a Plan (rule-based, MLLM, a test double)."""

    name: str

    def plan(self, request: PlanRequest) -> Plan: ...
