"""What the MLLM planner learns about an endpoint, remembered in the database and forgotten on
request (`avatar-flow llm list|reset`)."""

import json

from typer.testing import CliRunner

from flows.runtime.llm_endpoints import DatabaseCapabilityStore
from flows.runtime.settings import get_settings
from orchestrator.cli import app
from planners import ChatEndpoint, EndpointCapabilities, MLLMSettings


def test_database_store_round_trip_and_reset(fresh_home):
    store = DatabaseCapabilityStore(get_settings().db_url)
    url = "http://127.0.0.1:8080/v1"
    assert store.load(url, "gemma") is None
    caps = EndpointCapabilities(
        response_format="json_object+schema", images=False, prompt_checked=True, omit=["seed"]
    )
    store.save(url, "gemma", caps)
    store.save(url, "other", EndpointCapabilities(response_format="text"))
    assert store.load(url, "gemma") == caps
    # saved again: one row per endpoint and model, updated in place
    store.save(url, "gemma", caps.model_copy(update={"images": True}))
    assert store.load(url, "gemma").images is True and len(store.entries()) == 2
    # a ChatEndpoint (what the planner and judge use) reads and forgets through it
    settings = MLLMSettings(base_url="http://user:pw@127.0.0.1:8080/v1/", model="gemma")
    ep = ChatEndpoint(settings, store=store)
    assert ep.endpoint == url and ep.caps.response_format == "json_object+schema"
    assert ep.reset() == 1 and store.load(url, "gemma") is None
    assert store.load(url, "other").response_format == "text"


def test_llm_list_and_reset_commands(fresh_home):
    store = DatabaseCapabilityStore(get_settings().db_url)
    store.save(
        "http://a/v1", "m1", EndpointCapabilities(response_format="json_object", images=False)
    )
    store.save("http://b/v1", "m2", EndpointCapabilities(response_format="json_schema"))
    runner = CliRunner()
    listed = runner.invoke(app, ["llm", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {(r["base_url"], r["model"]): r for r in json.loads(listed.output)}
    assert rows[("http://a/v1", "m1")]["response_format"] == "json_object"
    assert rows[("http://a/v1", "m1")]["images"] is False
    gone = runner.invoke(app, ["llm", "reset", "--base-url", "http://A/v1/"])
    assert gone.exit_code == 0 and "forgot 1 endpoint" in gone.output
    assert [r.base_url for r in store.entries()] == ["http://b/v1"]
    assert "forgot 1 endpoint" in runner.invoke(app, ["llm", "reset"]).output
    assert store.entries() == []
