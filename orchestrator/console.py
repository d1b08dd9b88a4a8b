"""Terminal output shared by every CLI module: results on stdout, messages on stderr, progress
bars, and one rule for how failures end.

The failure rule is `flows.runtime.errors.failure` (the same for the SDK, flows, batch rows and
the review app): an input error (`InputError`, raised before the run or inside any task) prints
as its one line `error: FILE: field 'F': reason` and exits 2; anything else prints one
`failed: Type: message` line and exits 1 (3 for `PlannerFallback`: `--strict` refused the
rule planner's stand-in). Prefect's run logs (task tracebacks) stay off the terminal unless
`--verbose`; `produce-video` keeps them in the job's `job.log`.
"""

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

console = Console(stderr=True)
out = Console()
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def fail(exc: BaseException) -> None:
    """Print `exc` as its one line and leave with its exit code (`flows.runtime.errors.failure`:
    2 bad input, 3 strict planner fallback, else 1)."""
    from flows.runtime.errors import failure

    ended = failure(exc)
    label, _, line = ended.terminal.partition(": ")
    # Escaped: a message quoting a cue `[[points to the chart]]` must not be read as markup.
    console.print(f"[bold red]{label}:[/] {escape(line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(ended.exit_code)


def at_least(value: float | None, minimum: float, flag: str) -> None:
    """A count given on the command line is at least `minimum`, else the one error line."""
    if value is not None and not value >= minimum:
        from flows.runtime.errors import InputError

        fail(InputError(f"{flag} must be at least {minimum}, got {value}", field=flag.lstrip("-")))


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a flow run (Prefect turns it into its TerminationSignal inside one, and
    sends it again once the flow's hooks ran): stop like Ctrl-C, with SIGTERM's exit code."""

    signal = signal.SIGTERM


def _terminated(signum: int, _frame: Any) -> None:
    raise Terminated()


def stopped(exc: BaseException) -> None:
    """Ctrl-C or SIGTERM: one `cancelled` line, exit 130 (SIGINT) or 143 (SIGTERM). The job is
    marked cancelled by the flow's hook; what finished is kept and a re-run resumes."""
    sig = getattr(exc, "signal", signal.SIGINT)
    name = signal.Signals(sig).name
    console.print(
        f"[bold yellow]cancelled:[/] {name} (finished steps and segments are kept: run the "
        "same command again to resume)",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(128 + int(sig))


def _is_stop(exc: BaseException) -> bool:
    return isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "TerminationSignal"


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Run a command body under the failure rule (`fail`); typer's own exits pass through.
    Ctrl-C and SIGTERM stop it with one `cancelled` line (`stopped`)."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except BaseException as exc:
        if _is_stop(exc):
            stopped(exc)
        if not isinstance(exc, Exception):
            raise
        fail(exc)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# typer may vendor click: its usage errors are found through the one exception it exports.
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def usage_line(exc: Exception, command: str) -> str:
    """A usage error (bad or unknown flag, missing argument) as one line naming the flag and,
    when typer parsed one, the value: the same shape as an input error's line."""
    param = getattr(exc, "param", None)
    cause = exc.__cause__
    value = None
    if cause is not None and hasattr(cause, "errors"):  # a pydantic coercion error
        with contextlib.suppress(Exception):
            value = cause.errors()[0].get("input")
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    if param is not None and type(exc).__name__ == "BadParameter":
        flags = [o for o in param.opts if o.startswith("--")] or [param.name.upper()]
        message = f"{flags[0]}: {getattr(exc, 'message', message)}"
        if value is not None:
            message = f"{flags[0]} {value!r}: {getattr(exc, 'message', message)}"
    message = " ".join(message.split()).rstrip(".") or type(exc).__name__
    return f"error: {message[0].lower()}{message[1:]} (see `{command} --help`)"


class OneLineUsageGroup(TyperGroup):
    """The CLI's top group: usage errors (a word for a number, an unknown flag, a missing
    argument) are one `error:` line with exit code 2, like every other bad input, instead of
    typer's usage text and boxed message."""

    def main(self, args: Any = None, prog_name: str | None = None, *a: Any, **kw: Any) -> Any:
        if not kw.get("standalone_mode", True):
            return super().main(args, prog_name, *a, **kw)
        kw["standalone_mode"] = False
        try:
            code = super().main(args, prog_name, *a, **kw)
        except _USAGE_ERROR as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help is printed already
                sys.exit(exc.exit_code)
            ctx = getattr(exc, "ctx", None)
            command = ctx.command_path if ctx is not None else (prog_name or "avatar-flow")
            console.print(
                f"[bold red]error:[/]{escape(usage_line(exc, command)[6:])}",
                highlight=False,
                soft_wrap=True,
            )
            sys.exit(2)
        except typer.Abort:
            console.print("[bold red]aborted[/]", highlight=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def quiet_prefect(verbose: bool) -> None:
    """Prefect logs INFO with `--verbose`, else only warnings; set before Prefect is imported."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")


class _NotRunLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(RUN_LOGGERS)


def hide_run_logs(verbose: bool) -> None:
    """Keep flow and task run records (and their tracebacks) off the terminal unless verbose.

    Call after Prefect configured logging (after importing a flow). Only the terminal handlers
    are filtered: the records still reach Prefect's API and the job's log file.
    """
    if verbose:
        return
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _NotRunLogs) for f in handler.filters):
            handler.addFilter(_NotRunLogs())


def progress_listener():
    """Rich progress bars fed by flow progress events: (bar, listener).

    Drawn only on a terminal: piped or captured stderr gets the one result or error line alone.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )
    tasks: dict[str, int] = {}

    def on_event(ev) -> None:
        if ev.stage == "done":
            return
        if ev.stage not in tasks:
            tasks[ev.stage] = bar.add_task(ev.stage, total=max(ev.total, 1), note="")
        bar.update(tasks[ev.stage], completed=ev.done, total=max(ev.total, 1), note=ev.message)

    return bar, on_event


def with_progress(fn, *args, **kwargs):
    """Call a flow with progress bars on the terminal, its run logs kept off it (the one
    failure line is `fail`'s)."""
    from flows.runtime import progress

    hide_run_logs(verbose=False)
    bar, on_event = progress_listener()
    with bar, progress.listening(on_event):
        return fn(*args, **kwargs)
