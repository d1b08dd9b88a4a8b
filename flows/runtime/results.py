"""Where `produce-video` keeps its result (the job summary), so that a Python caller of
`run_deployment(...)` gets it back from `flow_run.state.result()`.

The summary is written as JSON under `AVATAR_FLOW_HOME/results` of the process that runs the
flow (`avatar-flow run`, `avatar-flow serve` and the runs it starts, a worker's runs: each reads
the same environment). Prefect records the file's absolute path on the flow run's state, so any
caller that sees that folder (the same machine, or a shared mount) reads the summary back.
Workers on other machines point `AVATAR_FLOW_RESULT_STORAGE` at a folder they all mount, or at a
saved Prefect storage block (`s3-bucket/avatar-results`), which the caller then loads from the
server.
"""

import os
from pathlib import Path

STORAGE_ENV = "AVATAR_FLOW_RESULT_STORAGE"


def result_storage() -> Path | str:
    """The flow's result storage: a folder (a Path) or a Prefect block slug (`type/name`).

    Read from the environment when the flow module is imported, which is once per process that
    runs flows (Prefect starts every deployment run in a fresh process).
    """
    configured = os.environ.get(STORAGE_ENV, "").strip()
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_absolute() else configured
    home = os.environ.get("AVATAR_FLOW_HOME") or Path.home() / ".avatar-flow"
    return Path(home).expanduser() / "results"


def persisted_result() -> dict:
    """The flow decorator's options that persist its return value as JSON in `result_storage`."""
    return {"persist_result": True, "result_serializer": "json", "result_storage": result_storage()}


def step_cache_storage() -> Path | str:
    """Where the cached steps keep their records: Prefect's own default storage, named
    explicitly, because a task without one would inherit the flow's result storage and every
    existing step cache (a GPU render per segment) would be missed once."""
    from prefect.settings import get_current_settings

    results = get_current_settings().results
    return results.default_storage_block or Path(results.local_storage_path).expanduser()
