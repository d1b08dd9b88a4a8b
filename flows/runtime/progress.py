"""Progress events from inside a flow to whoever drives it (the CLI's progress bars).

Flow parameters must stay JSON (a run from the Prefect UI has no callback), so listeners
register here, process-wide, and the flow emits plain events.

A test hook, inert unless set: `AVATAR_FLOW_TEST_PAUSE_AT=STAGE[:N]` makes the process stop at
the event (STAGE, done=N) (N defaults to 0: the step's start; `render:2` is after two segments),
write the stage to the file `AVATAR_FLOW_TEST_PAUSE_FILE` and wait there until that file is
deleted. The fault-injection tests (tests/e2e/test_faults.py) use it to signal, kill or break
the database at a known step.
"""

import os
import threading
import time
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
PAUSE_AT, PAUSE_FILE = "AVATAR_FLOW_TEST_PAUSE_AT", "AVATAR_FLOW_TEST_PAUSE_FILE"
_listeners: list[Listener] = []
_lock = threading.Lock()


def emit(stage: str, done: int = 0, total: int = 1, message: str = "") -> None:
    if PAUSE_AT in os.environ:
        _pause_if_asked(stage, done)
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


def _pause_if_asked(stage: str, done: int) -> None:
    """The test hook (module docstring): wait at (stage, done) while the pause file exists."""
    want, _, n = os.environ[PAUSE_AT].partition(":")
    flag = os.environ.get(PAUSE_FILE)
    if want != stage or int(n or 0) != done or not flag:
        return
    partial = f"{flag}.partial"  # renamed into place: the waiting test never reads it empty
    with open(partial, "w") as f:
        f.write(f"{stage}:{done}\n")
    os.replace(partial, flag)
    while os.path.exists(flag):
        time.sleep(0.05)
