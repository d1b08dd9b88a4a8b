"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions protocol.

Tests drive the real `openai` client against it, so request building, retries, timeouts and
status handling are exercised for real. Reusable by flow and CLI tests:

    with FakeOpenAIServer([plan_json, "garbage"]) as srv:
        settings = MLLMSettings(base_url=srv.url, api_key="sk-test", model="fake")
        ...
        srv.requests  # the JSON bodies received, in order

A response item is one of:
- str: the assistant message content;
- pydantic model / dict without control keys: JSON-encoded as the content;
- dict with control keys: ``content``, ``tool_calls`` (list of ``tool_call(...)``),
  ``status`` + ``error`` (an HTTP error), ``sleep`` (seconds before answering),
  ``chunk_sleep`` (seconds between streamed chunks), ``finish_reason``, ``usage``.
`responses` is a list (used in order; the last one repeats when it runs out) or a callable
``(body: dict, index: int) -> item``.

Like real servers it streams when asked (``stream: true``; usage in a last chunk when
``stream_options.include_usage`` and ``stream_usage``), and reports ``usage.prompt_tokens``
counted from what it received (one per word or punctuation character, 4 per message, 85 per
image part; ``drop_list_content`` / ``drop_images`` make it lose them the way some servers do).
Prompt-delivery probes (``max_tokens: 1``, not streamed) are answered at once without using a
scripted item and recorded in ``probes``, not ``requests``.
"""

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import BaseModel

_CONTROL = {"content", "tool_calls", "status", "error", "sleep", "finish_reason", "usage"}

Responses = list[Any] | Callable[[dict[str, Any], int], Any]


def tool_call(
    name: str, arguments: dict[str, Any] | str, call_id: str | None = None
) -> dict[str, Any]:
    """One tool call for the ``tool_calls`` key of a response item."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {
        "id": call_id or f"call_{name}_{abs(hash(args)) % 10**8}",
        "type": "function",
        "function": {"name": name, "arguments": args},
    }


def error(status: int, message: str) -> dict[str, Any]:
    """A response item that answers with an HTTP error in OpenAI's error format."""
    return {"status": status, "error": message}


class FakeOpenAIServer:
    """OpenAI-compatible chat server with scripted answers (see module docstring)."""

    def __init__(
        self,
        responses: Responses,
        *,
        reject_json_schema: bool = False,
        reject_status: int = 400,
        reject_tools: bool = False,
        model: str = "fake-model",
        stream_usage: bool = True,
        drop_list_content: bool = False,
        drop_images: bool = False,
        port: int = 0,
    ) -> None:
        self.responses = responses
        self.reject_json_schema = reject_json_schema
        self.reject_status = reject_status
        self.reject_tools = reject_tools
        self.model = model
        self.stream_usage = stream_usage
        self.drop_list_content = drop_list_content
        self.drop_images = drop_images
        self.requests: list[dict[str, Any]] = []
        self.probes: list[dict[str, Any]] = []
        self.disconnects = 0  # streams the client closed before the end
        self.headers: list[dict[str, str]] = []  # lower-case header names
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL for the openai client (`base_url`)."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()  # wakes handlers that are sleeping to simulate a slow server
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- internals
    def _next_item(self, body: dict[str, Any]) -> Any:
        with self._lock:
            index = len(self.requests)
            self.requests.append(body)
        if callable(self.responses):
            return self.responses(body, index)
        if not self.responses:
            return error(500, "no scripted responses")
        return self.responses[min(index, len(self.responses) - 1)]

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        """What this server 'received' of the messages, in tokens."""
        n = 0
        for m in body.get("messages", []):
            n += 4
            content = m.get("content")
            if isinstance(content, list):
                if self.drop_list_content:
                    continue
                for part in content:
                    if part.get("type") == "text":
                        n += len(_TOKEN.findall(part["text"]))
                    elif not self.drop_images:
                        n += 85
            else:
                n += len(_TOKEN.findall(str(content or "")))
        return n

    def _answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        """(status, JSON body, delay) for one chat-completions request."""
        fmt = (body.get("response_format") or {}).get("type")
        limit = body.get("max_tokens", body.get("max_completion_tokens"))
        if limit == 1 and not body.get("stream"):
            with self._lock:
                self.probes.append(body)
            return 200, self._completion(body, {"content": "{", "finish_reason": "length"}), 0.0
        if self.reject_json_schema and fmt == "json_schema":
            with self._lock:
                self.requests.append(body)
            return (
                self.reject_status,
                _error_body(
                    "response_format.type: json_schema is not supported; "
                    "Input should be 'text' or 'json_object'"
                ),
                0.0,
            )
        if self.reject_tools and body.get("tools"):
            with self._lock:
                self.requests.append(body)
            return 400, _error_body('"auto" tool choice requires --enable-auto-tool-choice'), 0.0
        item = self._next_item(body)
        if isinstance(item, BaseModel):
            item = item.model_dump_json()
        if isinstance(item, str):
            item = {"content": item}
        if isinstance(item, dict) and not (set(item) & _CONTROL):
            item = {"content": json.dumps(item)}
        delay = float(item.get("sleep", 0.0))
        if "status" in item:
            return int(item["status"]), _error_body(item.get("error", "error")), delay
        return 200, self._completion(body, item), delay

    def _completion(self, body: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": item.get("content")}
        finish = item.get("finish_reason", "stop")
        if item.get("tool_calls"):
            message["tool_calls"] = item["tool_calls"]
            finish = item.get("finish_reason", "tool_calls")
        prompt = self.prompt_tokens(body)
        usage = item.get(
            "usage", {"prompt_tokens": prompt, "completion_tokens": 20, "total_tokens": prompt + 20}
        )
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
            "_chunk_sleep": float(item.get("chunk_sleep", 0.0)),
        }

    def _chunks(self, body: dict[str, Any], payload: dict[str, Any]) -> list[dict[str, Any]]:
        """The completion as streamed chunks (content in 8-character pieces)."""
        choice = payload["choices"][0]
        msg = choice["message"]
        head = {k: payload[k] for k in ("id", "created", "model")}
        head["object"] = "chat.completion.chunk"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                **head,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        out = [chunk({"role": "assistant", "content": ""})]
        text = msg.get("content") or ""
        out += [chunk({"content": text[i : i + 8]}) for i in range(0, len(text), 8)]
        for i, call in enumerate(msg.get("tool_calls") or []):
            out.append(chunk({"tool_calls": [{"index": i, **call}]}))
        out.append(chunk({}, choice["finish_reason"]))
        include = (body.get("stream_options") or {}).get("include_usage")
        if include and self.stream_usage:
            out.append({**head, "choices": [], "usage": payload["usage"]})
        return out

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _stream(self, body: dict[str, Any], payload: dict[str, Any]) -> None:
                pause = payload.pop("_chunk_sleep", 0.0)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for c in server._chunks(body, payload):
                        self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
                        self.wfile.flush()
                        if pause and server._stop.wait(pause):
                            return
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except OSError:  # the client closed the stream
                    with server._lock:
                        server.disconnects += 1

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                payload.pop("_chunk_sleep", None)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout test)
                    pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(
                        200, {"object": "list", "data": [{"id": server.model, "object": "model"}]}
                    )
                else:
                    self._send(404, _error_body("not found"))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, _error_body(f"no route {self.path}"))
                    return
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._send(400, _error_body("body is not JSON"))
                    return
                with server._lock:
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                try:
                    status, payload, delay = server._answer(body)
                except Exception as exc:  # a scripted callable failed: tell the client
                    status, payload, delay = 500, _error_body(f"fake server: {exc!r}"), 0.0
                if delay and server._stop.wait(delay):
                    return
                if status == 200 and body.get("stream"):
                    self._stream(body, payload)
                else:
                    self._send(status, payload)

        return Handler


_TOKEN = re.compile(r"\w+|[^\w\s]")


def _error_body(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": None}}
