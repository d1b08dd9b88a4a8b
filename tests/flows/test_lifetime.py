"""No orphans (issue 18): what a process starts on the user's behalf ends when that process is
killed with SIGKILL. Each test starts a parent as a subprocess, waits until the child it starts
(or that Prefect or torchrun starts for it) exists, SIGKILLs the parent and asserts that every
descendant it had is gone a few seconds later. Processes are read from /proc and identified by
pid + start time, so a reused pid is not mistaken for a survivor."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import EXAMPLES, REPO

from flows.runtime.lifetime import TOKEN_VAR, marked_processes

Proc = tuple[int, int]  # pid, start time in clock ticks since boot


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of `pid`, None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), fields[0], int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def descendants(root: int) -> dict[Proc, str]:
    """Every live descendant of `root`: (pid, start time) -> command line."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            children.setdefault(st[0], []).append(int(entry.name))
    found, todo = {}, [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            st = _stat(pid)
            if st is not None and st[1] != "Z":
                found[(pid, st[2])] = _cmdline(pid)
                todo.append(pid)
    return found


def alive(procs: dict[Proc, str]) -> dict[Proc, str]:
    """Those of `procs` still running (a zombie has ended; the same pid with another start
    time is another process)."""
    return {
        (pid, start): cmd
        for (pid, start), cmd in procs.items()
        if (st := _stat(pid)) is not None and st[2] == start and st[1] != "Z"
    }


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.2)


def kill_and_expect_no_survivors(
    parent: subprocess.Popen, ready: Callable[[dict[Proc, str]], bool], start_timeout: float
) -> dict[Proc, str]:
    """Wait until `ready(descendants)`, SIGKILL `parent`, assert its descendants (the ones seen
    then, plus any found by a last scan) are all gone within 15 s; the descendants seen."""
    seen: dict[Proc, str] = {}

    def is_ready() -> bool:
        assert parent.poll() is None, f"the parent exited early ({parent.returncode})"
        seen.update(descendants(parent.pid))
        return ready(seen)

    try:
        wait_for("the children to start", is_ready, start_timeout)
        seen.update(descendants(parent.pid))
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 15
    while alive(seen) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = alive(seen)
    for pid, _ in survivors:  # do not leave them behind for the next test
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"still running 15 s after SIGKILL of their parent: {survivors}"
    return seen


def _python(code: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(TOKEN_VAR, None)
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, **kw)


def test_a_child_started_with_die_with_parent_ends_with_its_parent():
    parent = _python(
        "import subprocess, time\n"
        "from flows.runtime.lifetime import die_with_parent\n"
        "subprocess.Popen(['sleep', '300'], preexec_fn=die_with_parent())\n"
        "time.sleep(300)\n"
    )
    seen = kill_and_expect_no_survivors(
        parent, lambda procs: any(c.startswith("sleep 300") for c in procs.values()), 60
    )
    assert any(c.startswith("sleep 300") for c in seen.values())


def test_the_watchdog_ends_a_grandchild_in_its_own_session():
    """The grandchild is in a new session and its parent has exited (so it was re-parented):
    neither a process group nor the tree reaches it, the token in its environment does."""
    parent = _python(
        "import subprocess, time\n"
        "from flows.runtime.lifetime import end_children_with_this_process\n"
        "end_children_with_this_process()\n"
        "subprocess.run(['sh', '-c', 'setsid sleep 301 & echo started'], check=True)\n"
        "time.sleep(300)\n",
        stdout=subprocess.PIPE,
    )
    mark = f"{parent.pid}."  # the token's prefix: this parent's, not a stray one's

    def grandchildren() -> list[int]:
        return [
            pid
            for pid in _pids_running("sleep 301")
            if any(t.startswith(mark) for t in _environ(pid).split(":"))
        ]

    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == b"started"
        wait_for("the grandchild", lambda: len(grandchildren()) == 1, 30)
    except BaseException:
        parent.kill()
        raise
    grandchild = [(pid, _stat(pid)[2]) for pid in grandchildren()]  # type: ignore[index]
    assert _stat(grandchild[0][0])[0] != parent.pid  # type: ignore[index]  # re-parented
    seen = kill_and_expect_no_survivors(parent, lambda procs: True, 30)
    watchdogs = [p for p, c in seen.items() if "flows.runtime.lifetime" in c]
    assert len(watchdogs) == 1  # one watchdog, ended with the rest
    deadline = time.monotonic() + 15
    while alive(dict.fromkeys(grandchild, "")) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = alive(dict.fromkeys(grandchild, ""))
    for pid, _ in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "the re-parented grandchild survived"


def test_a_normal_exit_leaves_nothing_and_one_watchdog_per_process():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os\n"
            "from flows.runtime.lifetime import TOKEN_VAR, end_children_with_this_process\n"
            "a = end_children_with_this_process(); b = end_children_with_this_process()\n"
            "print(os.getpid(), a == b, os.environ[TOKEN_VAR])\n",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), TOKEN_VAR: "outer.0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    pid, same, tokens = out.stdout.split()
    assert same == "True" and tokens.split(":")[0] == "outer.0"  # the outer token is kept
    assert len(tokens.split(":")) == 2 and tokens.split(":")[1].startswith(f"{pid}.")
    watchdog = f"-m flows.runtime.lifetime {pid} "
    wait_for("the watchdog to exit", lambda: not _pids_running(watchdog, anywhere=True), 15)


def _pids_running(prefix: str, anywhere: bool = False) -> list[int]:
    """Pids of the processes whose command line starts with (or contains) `prefix`."""
    pids = [int(e.name) for e in os.scandir("/proc") if e.name.isdigit()]
    if anywhere:
        return [pid for pid in pids if prefix in _cmdline(pid)]
    return [pid for pid in pids if _cmdline(pid).startswith(prefix)]


def _environ(pid: int) -> str:
    """The value of the token variable in `pid`'s environment ("" if none or gone)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return ""
    for var in environ.split(b"\0"):
        if var.startswith(f"{TOKEN_VAR}=".encode()):
            return var.split(b"=", 1)[1].decode()
    return ""


@pytest.mark.slow
def test_kill_9_of_avatar_flow_run_leaves_no_prefect_server(tmp_path):
    """`avatar-flow run`: Prefect starts its ephemeral API server (uvicorn) as a child and stops
    it only from atexit, which SIGKILL skips; the CLI's watchdog stops it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AVATAR_FLOW_"))}
    env.update(
        PYTHONPATH=str(REPO),
        AVATAR_FLOW_HOME=str(tmp_path / "home"),
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    cli = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "run", str(EXAMPLES / "hello.md")]
        + ["--out", str(tmp_path / "out")],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = "prefect.server.api.server:create_app"
    seen = kill_and_expect_no_survivors(
        cli, lambda procs: any(server in c for c in procs.values()), 300
    )
    assert sum(server in c for c in seen.values()) == 1
    assert marked_processes(_token_of(seen)) == []


def _token_of(procs: dict[Proc, str]) -> str:
    """The token the killed CLI gave its watchdog (its last command-line argument)."""
    (cmd,) = [c for c in procs.values() if "flows.runtime.lifetime" in c]
    return cmd.split()[-1]


@pytest.mark.slow
def test_kill_9_of_a_torchrun_launch_leaves_no_worker():
    """`multigpu.launch` outside the CLI (no watchdog): torchrun gets SIGTERM when its parent
    dies and stops its ranks, which run in sessions of their own."""
    parent = _python(
        "from flows.video.multigpu import launch\n"
        "launch(2, {'kind': 'selftest', 'hold_s': 300}, timeout=600)\n"
    )
    workers = "-m flows.video.multigpu --payload"
    seen = kill_and_expect_no_survivors(
        parent,
        lambda procs: (
            sum(workers in c and "torch.distributed.run" not in c for c in procs.values()) == 2
        ),
        180,
    )
    assert sum("torch.distributed.run" in c for c in seen.values()) == 1
