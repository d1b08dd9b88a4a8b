"""Webhooks: a local receiver gets a signed body (after a failed first attempt) without secrets."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from flows.runtime import webhooks


class Receiver:
    """HTTP server on 127.0.0.1 recording requests; answers the first `fail_first` with 503."""

    def __init__(self, fail_first: int = 0, fail_code: int = 503) -> None:
        self.requests: list[tuple[dict, bytes]] = []
        self.fail_first, self.fail_code = fail_first, fail_code
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = outer.fail_code if len(outer.requests) <= outer.fail_first else 200
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook?token=abc"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver(fail_first=1)
    yield r
    r.close()


def test_signed_body_verifies_after_a_retry(receiver, monkeypatch):
    secret = "s3cret-for-tests"
    monkeypatch.setenv(webhooks.SECRET_ENV, secret)
    payload = {"event": "job.completed", "job_id": "abc", "status": "done"}
    assert webhooks.deliver(receiver.url, payload, backoff=0.05)
    assert len(receiver.requests) == 2  # 503, then 200
    headers, body = receiver.requests[-1]
    assert webhooks.verify(body, headers["x-avatarflow-signature"], secret)
    assert not webhooks.verify(body, headers["x-avatarflow-signature"], "wrong")
    assert not webhooks.verify(body + b" ", headers["x-avatarflow-signature"], secret)
    assert json.loads(body) == payload
    assert secret.encode() not in body and headers["x-avatarflow-event"] == "job.completed"


def test_gives_up_on_4xx_without_retrying_and_on_a_dead_port():
    r = Receiver(fail_first=5, fail_code=400)
    try:
        assert (
            webhooks.deliver(r.url, {"event": "x"}, secret="k", attempts=3, backoff=0.01) is False
        )
        assert len(r.requests) == 1
    finally:
        r.close()
    # Nothing listens any more: connection errors are retried, then False.
    assert webhooks.deliver(r.url, {"event": "x"}, secret="k", attempts=2, backoff=0.01) is False
