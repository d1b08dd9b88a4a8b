"""One chat completion against a real llama.cpp server, as scripts/install's check after it
installs llama-cpp-python[server] (issue 18): a build that imports but crashes on its first
completion (an AVX-512/AMX build on a VM that does not enable them: exit 139) fails the install
here, not later in the planner tests. Starts the server exactly as the tests do
(tests/planners/llama_server.py), always stops it, prints one line, exits 0 or 1.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "planners"))
from llama_server import LlamaServer  # noqa: E402


def exit_text(code: int) -> str:
    """`exited with 1`, or `was killed by SIGSEGV` (a shell reports that one as exit 139)."""
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with {code}"


def exit_code(server: LlamaServer) -> int | None:
    """The server's exit status once it has died (a crash closes the connection a moment
    before the process is reaped), None while it runs."""
    try:
        return server.proc.wait(5) if server.proc is not None else None
    except subprocess.TimeoutExpired:
        return None


def check(server: LlamaServer) -> str:
    """The reply's text; raises RuntimeError with the reason when there is none."""
    started = time.monotonic()
    try:
        reply = httpx.post(
            f"{server.url}/chat/completions",
            json={
                "model": server.model,
                # Under a JSON grammar, the planner's route: Gemma-3-270M is a base model
                # that ends a free chat answer at once (no tokens), a grammar makes it write.
                "messages": [{"role": "user", "content": "Answer in JSON: what is your name?"}],
                "response_format": {"type": "json_object"},
                "max_tokens": 8,
                "temperature": 0.0,
                "seed": 0,
            },
            timeout=240.0,
        )
    except httpx.HTTPError as err:
        code = exit_code(server)
        died = f"the server {exit_text(code)}" if code is not None else f"{err!r}"
        raise RuntimeError(f"no answer to a chat completion: {died}") from err
    if reply.status_code != 200:
        raise RuntimeError(f"chat completion answered HTTP {reply.status_code}: {reply.text[:200]}")
    body = reply.json()
    choice = body["choices"][0]
    if not choice["message"].get("content") or body["usage"]["completion_tokens"] < 1:
        raise RuntimeError(f"chat completion gave no tokens: {str(body)[:200]}")
    return f"{body['usage']['completion_tokens']} tokens in {time.monotonic() - started:.1f} s"


def main() -> int:
    server = None
    try:
        server = LlamaServer(log=Path(sys.argv[1]) if len(sys.argv) > 1 else None)
        server.start()
        done = check(server)
    except (RuntimeError, httpx.HTTPError, KeyError, ValueError) as err:
        code = exit_code(server) if server is not None else None
        reason = str(err).splitlines()[0][:300]
        if code is not None and "server exited" in reason:  # start() quotes the whole log
            reason = f"the server {exit_text(code)} before it was up"
        log = f"; server log: {server.log}" if server is not None else ""
        print(f"install: the llama.cpp server failed its check: {reason}{log}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
    print(f"install: llama.cpp server check passed (one chat completion, {done})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
