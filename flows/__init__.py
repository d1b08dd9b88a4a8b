"""The pipeline: script parsing, speech, words, planning, segments, rendering, stitching,
and the Prefect flows that run them. Settings come from the environment, because a run
started from the Prefect UI never passes through the CLI."""

import os
from pathlib import Path


def _configure_prefect_home() -> None:
    """Keep Prefect's ephemeral database under AVATAR_FLOW_HOME unless the user set Prefect up."""
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


_configure_prefect_home()
