"""Progress events from inside a flow to whoever drives it (the CLI's progress bars).

Flow parameters must stay JSON (a run from the Prefect UI has no callback), so listeners
register here, process-wide, and the flow emits plain events.
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    stage: str  # speech | words | plan | segments | render | stitch | done
    done: int
    total: int
    message: str = ""


Listener = Callable[[ProgressEvent], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


def emit(stage: str, done: int = 0, total: int = 1, message: str = "") -> None:
    event = ProgressEvent(stage, done, total, message)
    with _lock:
        listeners = list(_listeners)
    for fn in listeners:
        fn(event)


@contextmanager
def listening(fn: Listener) -> Iterator[None]:
    with _lock:
        _listeners.append(fn)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(fn)
