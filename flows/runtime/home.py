"""Where Prefect keeps its ephemeral API database when avatar-flow is the application.

Prefect reads its settings once, when it is first imported, so this runs before that, from the
application layer (`orchestrator/__init__.py`: the CLI and the SDK). Importing `flows` (or any
library package) changes nothing; a flow run started by a Prefect worker uses the worker's own
Prefect settings.
"""

import os
from pathlib import Path


def configure_prefect_home() -> None:
    """Keep Prefect's ephemeral database under AVATAR_FLOW_HOME unless the user set Prefect up
    (PREFECT_HOME, PREFECT_API_URL, or a Prefect profile of their own)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # opt in explicitly
    if "PREFECT_HOME" in os.environ or "PREFECT_API_URL" in os.environ:
        if "PREFECT_HOME" in os.environ:  # the ephemeral server cannot create its own folder
            Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
        return
    if (Path.home() / ".prefect" / "profiles.toml").is_file():
        return  # an existing Prefect profile (e.g. pointing at a server) wins
    home = Path(os.environ.get("AVATAR_FLOW_HOME") or Path.home() / ".avatar-flow")
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(home / "prefect")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
