"""User-facing errors: bad input (one line naming the file and field, exit code 2), a full
disk (one line naming the folder), and a planner fallback refused with `strict` (exit code 3)."""

import contextlib
import errno
from collections.abc import Iterator
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
