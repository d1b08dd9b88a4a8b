"""Each job keeps its own log file: Prefect's flow and task run records of that run (tracebacks
included), so a terminal can show one line per failure while the details stay findable.

Records are matched by flow run id (Prefect puts it on every flow and task run record), so jobs
running side by side in one process (a batch with concurrency) never write into each other's log.
"""

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
_log = logging.getLogger("prefect.flow_runs.avatar_flow")


class _SameRun(logging.Filter):
    def __init__(self, flow_run_id: str | None) -> None:
        super().__init__()
        self.flow_run_id = flow_run_id

    def filter(self, record: logging.LogRecord) -> bool:
        rid = getattr(record, "flow_run_id", None)
        return self.flow_run_id is None or rid is None or str(rid) == self.flow_run_id


class _JobLogHandler(logging.FileHandler):
    """A job log that cannot be written (a full disk) drops the record instead of printing
    logging's own traceback on the terminal: the failure itself is reported by the run."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        pass


def _current_flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None


@contextlib.contextmanager
def job_log(path: Path) -> Iterator[Path]:
    """Append this flow run's Prefect logs to `path` for the block; an exception leaving the
    block is written there with its traceback, then re-raised."""
    path.parent.mkdir(parents=True, exist_ok=True)
    run_id = _current_flow_run_id()
    handler = _JobLogHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(_SameRun(run_id))
    loggers = [logging.getLogger(name) for name in RUN_LOGGERS]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        yield path
    except BaseException:
        record = _log.makeRecord(
            _log.name, logging.ERROR, __file__, 0, "job failed", None, None, extra=None
        )
        record.exc_info = sys.exc_info()
        record.flow_run_id = run_id
        handler.handle(record)
        raise
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
        with contextlib.suppress(OSError):  # a full disk: the run's own error is the one shown
            handler.close()
