"""One render per GPU at a time, across every process and machine, and what it cost.

Each physical GPU is a Prefect global concurrency limit named `gpu:<host>:<index>` with
limit 1. Limits are created at start-up (`ensure_gpu_limits`, called by `avatar-flow serve`,
`deploy` and `worker`) and taken with `strict=True`, so a missing limit is an error rather
than a silent free-for-all. Without a reachable Prefect server (the ephemeral local API)
the same names are guarded by file locks under `AVATAR_FLOW_HOME/locks`, which serialise
every process on this host that shares that home.

GPU-seconds are wall-clock seconds multiplied by the GPUs held; they are summed per flow run
in a process-local ledger (tasks run in the flow's process) and stored on the job.
"""

import contextlib
import fcntl
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger("avatar_flow.gpu")

GPU_ENV = "AVATAR_FLOW_GPUS"  # context-parallel degree for one segment (default 1)
HOST_ENV = "AVATAR_FLOW_GPU_HOST"  # name used in limit names (default: the hostname)
_NAME = re.compile(r"^gpu:[^:]+:\d+$")


def host_name() -> str:
    """Host part of the limit names: stable per machine, overridable for containers."""
    return os.environ.get(HOST_ENV) or socket.gethostname()


def physical_index(local: int) -> int:
    """The physical GPU behind torch's index `local` (CUDA_VISIBLE_DEVICES renumbers)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not visible:
        return local
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    if local < len(ids) and ids[local].isdigit():
        return int(ids[local])
    return local  # UUID-style ids: keep torch's numbering


def limit_name(device: str | int, host: str | None = None) -> str:
    """`cuda:1` / `1` -> `gpu:<host>:<physical index>`; a full `gpu:h:i` name passes through."""
    if isinstance(device, str) and _NAME.match(device):
        return device
    text = str(device)
    if text == "cuda":
        local = 0
    else:
        m = re.fullmatch(r"(?:cuda:)?(\d+)", text)
        if not m:
            raise ValueError(f"not a CUDA device or GPU limit name: {device!r}")
        local = int(m.group(1))
    return f"gpu:{host or host_name()}:{physical_index(local)}"


def cuda_device_count() -> int:
    """Visible CUDA devices (0 without torch or without a GPU)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def requested_gpus() -> int:
    """GPUs one segment may use (context parallelism), from AVATAR_FLOW_GPUS."""
    raw = os.environ.get(GPU_ENV, "1").strip() or "1"
    if not raw.isdigit() or int(raw) < 1:
        from flows.runtime.errors import InputError

        raise InputError(f"{GPU_ENV} must be a positive integer, got {raw!r}", field=GPU_ENV)
    return int(raw)


def render_devices(uses_gpu: bool, device: str | None, *, parallel: bool = False) -> list[str]:
    """CUDA devices a render will occupy; empty when it runs on CPU (a CPU renderer such as the
    animatic never waits). `parallel`: the renderer can split one segment over several GPUs
    (AVATAR_FLOW_GPUS of them); otherwise it takes one."""
    if not uses_gpu:
        return []
    if device is not None and not str(device).startswith("cuda"):
        return []
    count = cuda_device_count()
    if count == 0:
        return []
    n = min(requested_gpus(), count) if parallel else 1
    if n == 1 and device and ":" in str(device):
        return [str(device)]
    return [f"cuda:{i}" for i in range(n)]


# --- Prefect global concurrency limits -------------------------------------------------------


def _api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


@lru_cache(maxsize=4)
def _server_reachable(url: str) -> bool:
    """One health check per process and URL: decides GCL versus file lock."""
    import httpx

    try:
        return httpx.get(f"{url.rstrip('/')}/health", timeout=3.0).status_code == 200
    except httpx.HTTPError:
        return False


def server_available() -> bool:
    url = _api_url()
    return bool(url) and _server_reachable(url)


_ensured: set[str] = set()
_ensure_lock = threading.Lock()


def ensure_gpu_limits(names: list[str] | None = None) -> list[str]:
    """Upsert a limit of 1 for each GPU name (default: every visible CUDA device).

    Returns the names ensured; empty when no Prefect server is reachable (file locks then).
    """
    if names is None:
        names = [limit_name(i) for i in range(cuda_device_count())]
    names = [limit_name(n) for n in names]
    if not names or not server_available():
        return []
    from prefect.client.orchestration import get_client

    with _ensure_lock, get_client(sync_client=True) as client:
        for name in names:
            client.upsert_global_concurrency_limit_by_name(name, limit=1)
            _ensured.add(name)
    return names


# --- taking slots ---------------------------------------------------------------------------


@dataclass
class GpuClock:
    """What a slot cost: wall seconds and GPU-seconds (wall x GPUs held)."""

    names: list[str] = field(default_factory=list)
    mode: str = "none"  # none | prefect | filelock
    wall: float = 0.0
    waited: float = 0.0

    @property
    def gpu_seconds(self) -> float:
        return self.wall * len(self.names)


def _lock_dir() -> Path:
    from flows.runtime.settings import get_settings

    d = get_settings().home / "locks"
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def _file_locks(names: list[str]) -> Iterator[None]:
    """Exclusive flock per name, always in sorted order (no deadlock between multi-GPU jobs)."""
    handles = []
    try:
        for name in sorted(names):
            fh = open(_lock_dir() / (name.replace(":", "_") + ".lock"), "a+")  # noqa: SIM115
            handles.append(fh)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        for fh in reversed(handles):
            with contextlib.suppress(OSError):
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()


@contextlib.contextmanager
def gpu_slots(devices: list[str | int], timeout_seconds: float | None = None) -> Iterator[GpuClock]:
    """Hold every listed GPU for the block; a no-op (mode `none`) for an empty list."""
    names = sorted({limit_name(d) for d in devices})
    clock = GpuClock(names=names)
    if not names:
        t0 = time.perf_counter()
        try:
            yield clock
        finally:
            clock.wall = time.perf_counter() - t0
        return
    t_wait = time.perf_counter()
    if server_available():
        from prefect.concurrency.sync import concurrency

        missing = [n for n in names if n not in _ensured]
        if missing:
            ensure_gpu_limits(missing)
        clock.mode = "prefect"
        guard = concurrency(names, occupy=1, strict=True, timeout_seconds=timeout_seconds)
    else:
        clock.mode = "filelock"
        guard = _file_locks(names)
    with guard:
        clock.waited = time.perf_counter() - t_wait
        t0 = time.perf_counter()
        try:
            yield clock
        finally:
            clock.wall = time.perf_counter() - t0


@contextlib.contextmanager
def gpu_slot(device: str | int | None, timeout_seconds: float | None = None) -> Iterator[GpuClock]:
    """One GPU (`cuda:0`, `0` or a limit name `gpu:host:0`); `None` holds nothing."""
    with gpu_slots([] if device is None else [device], timeout_seconds) as clock:
        yield clock


# --- out of memory ------------------------------------------------------------------------


def is_oom(exc: BaseException | None) -> bool:
    """CUDA (or CPU allocator) out-of-memory, also when wrapped in another exception."""
    seen = 0
    while exc is not None and seen < 8:
        try:
            import torch

            if isinstance(exc, torch.OutOfMemoryError):
                return True
        except (ImportError, AttributeError):  # pragma: no cover
            pass
        if isinstance(exc, MemoryError):
            return True
        text = str(exc).lower()
        if "out of memory" in text or "cuda error: out of memory" in text:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def enable_offload(renderer: Any, device: str | None = None) -> bool:
    """Switch a renderer to CPU offloading (diffusers model offload); False if it cannot."""
    if getattr(renderer, "offloaded", False):
        return False
    if hasattr(renderer, "enable_offload"):
        renderer.enable_offload()
    else:
        pipe = getattr(renderer, "pipeline", None)
        if pipe is None or not hasattr(pipe, "enable_model_cpu_offload"):
            return False
        gpu_id = int(str(device).split(":")[1]) if device and ":" in str(device) else None
        pipe.enable_model_cpu_offload(gpu_id=gpu_id)
    renderer.offloaded = True
    return True


def _free_cuda_cache() -> None:
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def render_with_offload_fallback(renderer: Any, request: Any, device: str | None = None) -> Any:
    """Render; on out-of-memory switch offloading on and try once more in the same slot."""
    try:
        return renderer.render(request)
    except Exception as exc:
        if not is_oom(exc):
            raise
        _free_cuda_cache()
        if not enable_offload(renderer, device):
            raise
        log.warning(
            "segment %s ran out of GPU memory; retrying with CPU offloading",
            getattr(request, "index", "?"),
        )
        return renderer.render(request)


# --- GPU-seconds ledger -------------------------------------------------------------------

_ledger: dict[str, float] = {}
_ledger_lock = threading.Lock()


def _current_flow_run_id() -> str | None:
    from prefect.context import FlowRunContext, TaskRunContext

    task_ctx = TaskRunContext.get()
    if task_ctx is not None and task_ctx.task_run.flow_run_id is not None:
        return str(task_ctx.task_run.flow_run_id)
    flow_ctx = FlowRunContext.get()
    return str(flow_ctx.flow_run.id) if flow_ctx and flow_ctx.flow_run else None


def charge(gpu_seconds: float, flow_run_id: str | None = None) -> None:
    """Add GPU-seconds to the current flow run's account."""
    if gpu_seconds <= 0:
        return
    key = flow_run_id or _current_flow_run_id() or "-"
    with _ledger_lock:
        _ledger[key] = _ledger.get(key, 0.0) + gpu_seconds


def settle(flow_run_id: str | None = None) -> float:
    """Take (and clear) the GPU-seconds charged to a flow run."""
    key = flow_run_id or _current_flow_run_id() or "-"
    with _ledger_lock:
        return _ledger.pop(key, 0.0)


def per_output_second(gpu_seconds: float, duration: float | None) -> float | None:
    """GPU-seconds per second of finished video (None without a duration)."""
    return round(gpu_seconds / duration, 4) if duration else None


def record_gpu_seconds(db: str, job_id: str, seconds: float) -> float:
    """Add this run's GPU-seconds to the job (resumed jobs accumulate); returns the job total."""
    from storage import Job, session_scope

    with session_scope(db) as s:
        job = s.get(Job, job_id)
        job.gpu_seconds = round((job.gpu_seconds or 0.0) + seconds, 3)
        s.add(job)
        return job.gpu_seconds
