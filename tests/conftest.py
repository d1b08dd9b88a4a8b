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
# Everything the code reads from the environment starts unset, so a developer's shell (an LLM
# endpoint, a GPU degree, a database, a Prefect server, Hub tokens) cannot change a test.
# AVATAR_FLOW_HOME (set above) and AVATAR_FLOW_TINY_CACHE (a cache of built tiny models, no
# effect on results) are the exceptions.
KEEP = {"AVATAR_FLOW_HOME", "AVATAR_FLOW_TINY_CACHE"}
for key in list(os.environ):
    if (key.startswith("AVATAR_FLOW_") and key not in KEEP) or key in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "PREFECT_API_URL",
        "PREFECT_API_KEY",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "NLTK_DATA",
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
