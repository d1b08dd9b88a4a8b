"""GPU gate units: names, OOM detection and offload retry, file locks, GPU-seconds."""

import threading
import time

import pytest

from flows.runtime import gpu
from flows.runtime.errors import InputError


def test_limit_names_follow_physical_gpus(monkeypatch):
    monkeypatch.setenv(gpu.HOST_ENV, "node7")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert gpu.limit_name("cuda:0") == "gpu:node7:2"
    assert gpu.limit_name("cuda:1") == "gpu:node7:3"
    assert gpu.limit_name("cuda") == "gpu:node7:2"
    assert gpu.limit_name("gpu:other:5") == "gpu:other:5"
    with pytest.raises(ValueError):
        gpu.limit_name("cpu")


def test_cpu_renders_take_no_slot(monkeypatch):
    # Whatever this machine has: the CUDA device count is set by the test, both ways.
    monkeypatch.setattr(gpu, "cuda_device_count", lambda: 2)
    assert gpu.render_devices(False, None) == []  # the animatic never takes a GPU
    assert gpu.render_devices(True, "cpu") == []
    assert gpu.render_devices(True, None) == ["cuda:0"]
    assert gpu.render_devices(True, "cuda:1") == ["cuda:1"]
    monkeypatch.setenv(gpu.GPU_ENV, "2")
    assert gpu.render_devices(True, None, parallel=True) == ["cuda:0", "cuda:1"]
    assert gpu.render_devices(True, None) == ["cuda:0"]  # a renderer that cannot split takes 1
    monkeypatch.setattr(gpu, "cuda_device_count", lambda: 0)
    assert gpu.render_devices(True, None) == []  # no CUDA: runs on CPU, takes no slot
    monkeypatch.setenv(gpu.GPU_ENV, "zero")
    with pytest.raises(InputError, match="AVATAR_FLOW_GPUS"):
        gpu.requested_gpus()


def test_is_oom_sees_wrapped_errors():
    import torch

    assert gpu.is_oom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    try:
        try:
            raise RuntimeError("CUDA error: out of memory")
        except RuntimeError as inner:
            raise ValueError("render failed") from inner
    except ValueError as outer:
        assert gpu.is_oom(outer)
    assert not gpu.is_oom(ValueError("bad shape"))


class FakeRenderer:
    def __init__(self, fail: Exception | None) -> None:
        self.fail, self.calls, self.offload_calls = fail, 0, 0

    def enable_offload(self) -> None:
        self.offload_calls += 1

    def render(self, request):
        self.calls += 1
        if self.fail is not None and self.offload_calls == 0:
            raise self.fail
        return "frames"


def test_oom_retries_once_with_offloading():
    import torch

    r = FakeRenderer(torch.OutOfMemoryError("CUDA out of memory"))
    assert gpu.render_with_offload_fallback(r, object()) == "frames"
    assert (r.calls, r.offload_calls, r.offloaded) == (2, 1, True)
    other = FakeRenderer(ValueError("not memory"))
    with pytest.raises(ValueError):
        gpu.render_with_offload_fallback(other, object())
    assert other.offload_calls == 0


def test_file_locks_admit_one_holder_per_name(fresh_home):
    windows: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}

    def hold(name: str, key: str) -> None:
        with gpu.gpu_slot(name) as clock:
            t0 = time.monotonic()
            time.sleep(0.3)
            windows[key].append((t0, time.monotonic()))
        assert clock.mode == "filelock" and clock.gpu_seconds >= 0.3

    threads = [threading.Thread(target=hold, args=("gpu:h:0", "a")) for _ in range(2)]
    threads.append(threading.Thread(target=hold, args=("gpu:h:1", "b")))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (a0, a1), (b0, b1) = sorted(windows["a"])
    assert a1 <= b0, "two holders of gpu:h:0 overlapped"
    ((c0, c1),) = windows["b"]
    assert c0 < a1 and a0 < c1, "a different GPU must not wait for gpu:h:0"


def test_gpu_seconds_ledger_and_ratio():
    gpu.charge(3.0, "run-1")
    gpu.charge(1.5, "run-1")
    gpu.charge(2.0, "run-2")
    assert gpu.settle("run-1") == 4.5
    assert gpu.settle("run-1") == 0.0
    assert gpu.settle("run-2") == 2.0
    assert gpu.per_output_second(30.0, 10.0) == 3.0
    assert gpu.per_output_second(1.0, None) is None
