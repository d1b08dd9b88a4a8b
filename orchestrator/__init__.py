"""How people and schedulers drive avatar-flow: the CLI, the Python SDK and job queries."""

from orchestrator.studio import JobResult, Studio

__all__ = ["JobResult", "Studio"]
