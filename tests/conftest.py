"""Test isolation: every session gets its own AVATAR_FLOW_HOME and Prefect home.

Set before anything imports `flows` or `prefect` (both read the environment at import).
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from support import EXAMPLES, REPO, write_script  # noqa: F401

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="avatar-flow-tests-"))
os.environ["AVATAR_FLOW_HOME"] = str(_SESSION_HOME / "home")
os.environ["PREFECT_HOME"] = str(_SESSION_HOME / "prefect")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
for key in (
    "OPENAI_API_KEY",
    "AVATAR_FLOW_LLM_BASE_URL",
    "AVATAR_FLOW_DATABASE_URL",
    "AVATAR_FLOW_CHECKPOINT",
    "PREFECT_API_URL",
):
    os.environ.pop(key, None)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture
def examples() -> Path:
    return EXAMPLES


@pytest.fixture
def fresh_home(tmp_path, monkeypatch) -> Path:
    """A private AVATAR_FLOW_HOME (own database, assets and caches) for one test."""
    from flows.runtime.settings import get_settings

    home = tmp_path / "home"
    monkeypatch.setenv("AVATAR_FLOW_HOME", str(home))
    get_settings(refresh=True)
    yield home
    monkeypatch.undo()
    get_settings(refresh=True)
