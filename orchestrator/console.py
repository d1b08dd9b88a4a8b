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
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.markup import escape

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


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Run a command body under the failure rule (`fail`); typer's own exits pass through."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except (Exception, KeyboardInterrupt) as exc:
        fail(exc)


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
