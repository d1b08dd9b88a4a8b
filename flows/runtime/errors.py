"""User-facing errors: bad input (one line naming the file and field, exit code 2), a full
disk (one line naming the folder), a planner fallback refused with `strict` (exit code 3); and
the one rule (`failure`) for how any failure is written and which exit code it means, used by
the CLI, the SDK, the flows, batch rows and the review app."""

import contextlib
import errno
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class InputError(ValueError):
    """Bad input found before any heavy work. `str(err)` is the one-line message."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        self.file, self.field, self.line, self.detail = file, field, line, message
        where = file or ""
        if line is not None:
            where += f":{line}"
        parts = [p for p in (where, f"field '{field}'" if field else "") if p]
        super().__init__(f"{': '.join(parts)}: {message}" if parts else message)


class DiskFull(OSError):
    """No space left where a job writes: one line naming the folder. Never retried (the
    space does not come back by itself); what was finished is kept for the re-run."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        super().__init__(
            errno.ENOSPC,
            f"no space left on the device of {folder}: free some space and run again "
            "(finished steps and segments are kept)",
        )

    def __str__(self) -> str:
        return str(self.strerror)


@contextlib.contextmanager
def disk_full_names(folder: str | Path) -> Iterator[None]:
    """Turn 'no space left on device' (an OSError, or ffmpeg's message) inside the block into
    one `DiskFull` naming `folder`."""
    try:
        yield
    except DiskFull:
        raise
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise DiskFull(str(folder)) from exc
    except RuntimeError as exc:  # ffmpeg's MediaError and PyAV's errors carry the text only
        if "No space left on device" not in str(exc):
            raise
        raise DiskFull(str(folder)) from exc


class PlannerFallback(RuntimeError):
    """The MLLM planner gave no valid plan and the job asked for `strict`: no rule-planner
    stand-in. `kind` is the machine-readable reason (planners' fallback_kind)."""

    exit_code = 3

    def __init__(self, reason: str, kind: str | None = None) -> None:
        self.kind = kind
        super().__init__(reason)


class ReportedFailure(RuntimeError):
    """A failure the rule already wrote elsewhere, e.g. the job record of a flow run on another
    machine: reported again as that same line, not wrapped in another type."""

    def __init__(self, line: str, exit_code: int = 1) -> None:
        self.line, self.exit_code = line, exit_code
        super().__init__(line)


# ------------------------------------------------------------------------------ the failure rule
MAX_LINE = 2000  # a failure line is stored on the job row and the batch report


@dataclass(frozen=True)
class Failure:
    """How one failure ends, wherever it surfaces (the CLI, the SDK, a flow's job record, a
    batch row, the review app): its one `line` and the process `exit_code`.

    `line` is what is stored and returned (job.error, a batch row's `error`, a review run's
    `error`, `JobResult.error`); a terminal prints `terminal` (`error: ...` for bad input,
    `failed: ...` for everything else)."""

    line: str
    exit_code: int

    @property
    def terminal(self) -> str:
        return f"{'error' if self.exit_code == InputError.exit_code else 'failed'}: {self.line}"


def failure(exc: BaseException) -> Failure:
    """The one failure rule: an `InputError` is its own one line (exit 2); a `PlannerFallback`
    refused by `strict` is `PlannerFallback: reason` (exit 3); anything else is
    `Type: message` (exit 1). A message spread over lines is joined into one; a
    `ReportedFailure` (a line the rule wrote before) is passed on as it is."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    if isinstance(exc, ReportedFailure):
        return Failure(_capped(text), exc.exit_code)
    if isinstance(exc, InputError):
        return Failure(_capped(text), InputError.exit_code)
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    code = PlannerFallback.exit_code if isinstance(exc, PlannerFallback) else 1
    return Failure(_capped(line), code)


def _capped(line: str) -> str:
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"
