"""Processes started on the user's behalf end when the process that started them dies, by any
signal (issue 18). Without this, kill -9 of `avatar-flow run` left Prefect's ephemeral API server
running (a uvicorn child that Prefect stops only from atexit), re-parented to init, and so would
a torchrun group or a trainer.

Two mechanisms, because we spawn some children ourselves and others are spawned for us:

- `die_with_parent()`, a preexec_fn for children we start (torchrun, the trainer): the kernel
  sends the child SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG, Linux). SIGTERM rather
  than SIGKILL so a launcher such as torchrun can stop its own workers, which run in sessions of
  their own. The signal follows the *thread* that started the child, so call it from a thread
  that waits for the child (subprocess.run, or Popen then wait, in the same thread).
- `end_children_with_this_process()`, for everything else below a process (Prefect's ephemeral
  server, the flow-run processes of `serve`/`worker`, their own children): the process's
  environment gets a token in AVATAR_FLOW_LIFETIME, which every descendant inherits in its
  environment, and a small watchdog process waits for the process to end (pidfd) and then stops
  each process whose environment carries the token: SIGTERM, SIGKILL after a grace period. The
  token survives re-parenting to init, which a walk of the process tree would not.

`python -m flows.runtime.lifetime PID TOKEN` is the watchdog.
"""

import contextlib
import ctypes
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

TOKEN_VAR = "AVATAR_FLOW_LIFETIME"
PR_SET_PDEATHSIG = 1
GRACE_S = 5.0  # SIGTERM, then this long before SIGKILL
ON_LINUX = sys.platform.startswith("linux")

_watchdogs: dict[int, tuple[str, subprocess.Popen]] = {}  # our pid -> (token, watchdog)


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A preexec_fn that makes the child receive `sig` when the calling thread's process dies
    (None where there is no prctl: pass it to Popen either way)."""
    if not ON_LINUX:
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the forked child
    parent = os.getpid()

    def set_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: no signal would come
            os.kill(os.getpid(), sig)

    return set_death_signal


def run_ending_with_us(
    cmd: Sequence[str], *, timeout: float | None = None, **popen: Any
) -> subprocess.CompletedProcess:
    """subprocess.run that also ends the child when we die (`die_with_parent`) and stops it
    with SIGTERM, not SIGKILL, on a timeout or Ctrl-C, so a launcher stops its own children;
    SIGKILL only if it is still there after the grace period."""
    with subprocess.Popen(cmd, preexec_fn=die_with_parent(), **popen) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            proc.terminate()
            try:
                proc.communicate(timeout=GRACE_S * 6)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def end_children_with_this_process() -> str | None:
    """Start this process's watchdog (once per process) and put its token in os.environ, so
    every process started from here on, at any depth, is stopped when this process ends, even
    by SIGKILL. The token (None where /proc or pidfd-style waiting is missing: not Linux)."""
    if not ON_LINUX:
        return None
    pid = os.getpid()
    if pid not in _watchdogs:
        token = f"{pid}.{secrets.token_hex(6)}"
        watchdog = subprocess.Popen(
            [sys.executable, "-m", __name__, str(pid), token],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to our process group must not stop it first
            env=dict(os.environ),  # without this process's own token: it must not end itself
        )
        _watchdogs[pid] = (token, watchdog)
    token = _watchdogs[pid][0]
    tokens = [t for t in os.environ.get(TOKEN_VAR, "").split(":") if t]
    if token not in tokens:  # outer tokens stay: a dying grandparent stops us and ours too
        os.environ[TOKEN_VAR] = ":".join([*tokens, token])
    return token


def marked_processes(token: str) -> list[int]:
    """Pids of the live processes (other than this one) whose environment carries `token`."""
    prefix = f"{TOKEN_VAR}=".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes()
        except OSError:  # gone, a zombie's, or another user's
            continue
        for var in environ.split(b"\0"):
            if var.startswith(prefix) and token in var[len(prefix) :].decode(
                errors="replace"
            ).split(":"):
                found.append(int(entry.name))
                break
    return found


def end_marked(token: str, grace: float = GRACE_S) -> int:
    """SIGTERM every process carrying `token`, SIGKILL those left after `grace` seconds
    (scanning again, for children started meanwhile); how many were signalled."""
    signalled: set[int] = set()
    started = time.monotonic()
    while (alive := marked_processes(token)) and time.monotonic() - started < grace + 10:
        late = time.monotonic() - started > grace
        for pid in alive:
            if late or pid not in signalled:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL if late else signal.SIGTERM)
                signalled.add(pid)
        time.sleep(0.1)
    return len(signalled)


def wait_for_parent(pid: int) -> None:
    """Return once `pid`, this process's parent, has ended (at once if it already has)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # no pidfd (kernel < 5.3): poll
        while os.getppid() == pid:
            time.sleep(0.5)
        return
    try:
        if os.getppid() == pid:  # still ours (not a reused pid): wait for its exit
            select.select([fd], [], [])
    finally:
        os.close(fd)


def watchdog_main(argv: list[str]) -> None:
    pid, token = int(argv[0]), argv[1]
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # stopped only by its parent's end
    wait_for_parent(pid)
    end_marked(token)


if __name__ == "__main__":
    watchdog_main(sys.argv[1:])
