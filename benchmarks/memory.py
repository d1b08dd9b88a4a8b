"""Peak resident memory of a block of CPU work, for the benchmarks in this folder."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import psutil


def release_freed_memory_to_os() -> Callable[[], None]:
    """Make RSS track live tensors: mmap every large block (glibc), and trim before measuring."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        # M_MMAP_THRESHOLD: fixed, so freed big blocks go back to the OS
        libc.mallopt(-3, 256 * 1024)
        return lambda: libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: figures are an upper bound
        return lambda: None


_TRIM: Callable[[], None] | None = None  # enabled on the first trimmed measurement


class PeakRSS:
    """Peak resident memory above the starting point, sampled every 2 ms in a thread.

    `trim=True` first hands freed heap back to the OS (and switches glibc to mmap for large
    blocks from then on), so the starting point is the live tensors, not the allocator's cache.
    """

    def __init__(self, trim: bool = False, interval: float = 0.002) -> None:
        self.proc = psutil.Process(os.getpid())
        self.trim = trim
        self.interval = interval  # seconds between samples

    def __enter__(self) -> PeakRSS:
        global _TRIM
        if self.trim:
            if _TRIM is None:
                _TRIM = release_freed_memory_to_os()
            _TRIM()
        self.base = self.peak = self._window = self.proc.memory_info().rss
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop:
            rss = self.proc.memory_info().rss
            self.peak, self._window = max(self.peak, rss), max(self._window, rss)
            time.sleep(self.interval)

    def window(self) -> int:
        """The peak RSS (bytes) since the last call (or the start), and a new window from now:
        memory per step of a long run, to see whether it grows with the steps."""
        rss = self.proc.memory_info().rss
        peak, self._window = max(self._window, rss), rss
        return peak

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def delta_mib(self) -> float:
        return (self.peak - self.base) / 2**20
