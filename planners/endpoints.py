"""What an OpenAI-compatible endpoint accepts, learnt once and remembered.

`ask_json` negotiates the answer format and checks that the prompt (and the image) arrive.
On a CPU server every refused or truncated request costs minutes, so the outcome is kept per
endpoint (base URL without credentials + model) in a `CapabilityStore`:

* the flows implement the protocol with the `llmendpoint` table (flows/…/llm_endpoints.py);
* used alone, the planners keep a JSON file under AVATAR_FLOW_HOME (`JsonCapabilityStore`);
* tests may pass a `MemoryCapabilityStore`.

`reset()` forgets what was learnt (a server upgraded, a different model loaded).
"""

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field

# Strongest first. json_object+schema is llama.cpp's {"type": "json_object", "schema": ...}:
# the server compiles the schema into a grammar, so even a tiny model answers schema-valid JSON.
FORMATS: tuple[str, ...] = ("json_schema", "json_object+schema", "json_object", "text")
Format = Literal["json_schema", "json_object+schema", "json_object", "text"]

OPENAI_URL = "https://api.openai.com/v1"


class EndpointCapabilities(BaseModel):
    """Facts learnt about one endpoint; None = not known yet."""

    response_format: Format | None = None
    # True: image parts arrive; False: the server drops them (or all list content): text-only.
    images: bool | None = None
    # A 1-token probe showed the whole plain-text prompt arriving (usage.prompt_tokens).
    prompt_checked: bool = False
    # Request parameters the server refused (temperature, seed, max_tokens, stream_options).
    omit: list[str] = Field(default_factory=list)
    tools: bool | None = None


def endpoint_id(base_url: str | None) -> str:
    """The base URL without user info, query or trailing slash (OpenAI's when None)."""
    if not base_url:
        return OPENAI_URL
    parts = urlsplit(base_url.strip())
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme.lower(), host.lower(), parts.path.rstrip("/"), "", ""))


@runtime_checkable
class CapabilityStore(Protocol):
    """Where capabilities are remembered (implemented by the flows with the database)."""

    def load(self, endpoint: str, model: str) -> EndpointCapabilities | None: ...

    def save(self, endpoint: str, model: str, caps: EndpointCapabilities) -> None: ...

    def reset(self, endpoint: str | None = None, model: str | None = None) -> int:
        """Forget matching entries (None matches all); returns how many were forgotten."""
        ...


class MemoryCapabilityStore:
    """A dict: remembered for the life of the process only."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], EndpointCapabilities] = {}

    def load(self, endpoint: str, model: str) -> EndpointCapabilities | None:
        caps = self.entries.get((endpoint, model))
        return caps.model_copy(deep=True) if caps else None

    def save(self, endpoint: str, model: str, caps: EndpointCapabilities) -> None:
        self.entries[(endpoint, model)] = caps.model_copy(deep=True)

    def reset(self, endpoint: str | None = None, model: str | None = None) -> int:
        gone = [k for k in self.entries if _matches(k, endpoint, model)]
        for k in gone:
            del self.entries[k]
        return len(gone)


class JsonCapabilityStore:
    """A JSON file {"<endpoint> <model>": {...}}, written atomically (temp file + rename)."""

    _lock = threading.Lock()

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".llm-endpoints.")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def load(self, endpoint: str, model: str) -> EndpointCapabilities | None:
        raw = self._read().get(f"{endpoint} {model}")
        try:
            return EndpointCapabilities.model_validate(raw) if raw else None
        except ValueError:
            return None  # an old or hand-edited entry: negotiate again

    def save(self, endpoint: str, model: str, caps: EndpointCapabilities) -> None:
        with self._lock:
            data = self._read()
            data[f"{endpoint} {model}"] = caps.model_dump(mode="json")
            self._write(data)

    def reset(self, endpoint: str | None = None, model: str | None = None) -> int:
        with self._lock:
            data = self._read()
            gone = [k for k in data if _matches(tuple(k.split(" ", 1)), endpoint, model)]
            for k in gone:
                del data[k]
            if gone:
                self._write(data)
            return len(gone)


def _matches(key: tuple[str, ...], endpoint: str | None, model: str | None) -> bool:
    return (endpoint is None or key[0] == endpoint_id(endpoint)) and (
        model is None or key[-1] == model
    )


def default_store() -> JsonCapabilityStore:
    """The JSON file under AVATAR_FLOW_HOME (~/.avatar-flow) used when no store is given."""
    home = os.environ.get("AVATAR_FLOW_HOME") or str(Path.home() / ".avatar-flow")
    return JsonCapabilityStore(Path(home) / "llm-endpoints.json")
