"""How people and schedulers drive avatar-flow: the CLI, the Python SDK and job queries.

This is the application layer, so importing it is where Prefect's home is chosen (before Prefect
itself is imported, which reads its settings once): under AVATAR_FLOW_HOME unless the user set
Prefect up. The library packages below (flows, generator, planners, storage) change nothing when
imported (`tests/flows/test_import_graph.py`).
"""

from flows.runtime.home import configure_prefect_home

configure_prefect_home()

from orchestrator.studio import JobResult, Studio  # noqa: E402  (after Prefect's home is set)

__all__ = ["JobResult", "Studio"]
