"""scripts/check_llama_server.py, the install's check of the llama.cpp build (issue 18): a
server that crashes on its first chat completion (what a native AVX-512/AMX build did on a VM)
is reported as one line naming the signal, and an answer without tokens is not a pass."""

import importlib.util
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from support import REPO

spec = importlib.util.spec_from_file_location(
    "check_llama_server", REPO / "scripts" / "check_llama_server.py"
)
check_llama_server = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_llama_server)

# Answers /v1/models; on a chat completion either dies by SIGSEGV or answers `REPLY`.
FAKE = """
import json, os, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
mode = sys.argv[2]
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b'{"data": []}')
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        if mode == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        body = json.dumps({"choices": [{"message": {"content": ""}}],
                           "usage": {"completion_tokens": 0}}).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


class FakeServer:
    model = "fake"

    def __init__(self, mode: str, tmp: Path) -> None:
        from llama_server import free_port

        script = tmp / "fake.py"
        script.write_text(textwrap.dedent(FAKE))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/v1"
        self.proc = subprocess.Popen([sys.executable, str(script), str(port), mode])
        for _ in range(100):
            try:
                httpx.get(f"{self.url}/models", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the fake server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("crash", "no answer to a chat completion: the server was killed by SIGSEGV"),
        ("empty", "chat completion gave no tokens"),
    ],
)
def test_a_crash_or_an_empty_answer_fails_the_check(tmp_path, mode, reason):
    server = FakeServer(mode, tmp_path)
    try:
        with pytest.raises(RuntimeError) as err:
            check_llama_server.check(server)
    finally:
        server.stop()
    assert str(err.value).startswith(reason)
    assert "\n" not in str(err.value)
