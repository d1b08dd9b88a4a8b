"""Each planner test remembers endpoint capabilities in its own AVATAR_FLOW_HOME: a loopback
port reused by a later test must not inherit what an earlier fake server refused."""

import pytest


@pytest.fixture(autouse=True)
def private_llm_endpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("AVATAR_FLOW_HOME", str(tmp_path / "home"))
    yield tmp_path / "home" / "llm-endpoints.json"
