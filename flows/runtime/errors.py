"""User-facing errors: bad input (one line naming the file and field, exit code 2), and a
planner fallback refused with `strict` (exit code 3)."""


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


class PlannerFallback(RuntimeError):
    """The MLLM planner gave no valid plan and the job asked for `strict`: no rule-planner
    stand-in. `kind` is the machine-readable reason (planners' fallback_kind)."""

    exit_code = 3

    def __init__(self, reason: str, kind: str | None = None) -> None:
        self.kind = kind
        super().__init__(reason)
