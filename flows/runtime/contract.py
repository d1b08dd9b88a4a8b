"""What every options contract shares (`JobOptions`, `DatasetOptions`, `TrainOptions`): a frozen
pydantic model that refuses unknown names, each field with its default, description (the CLI
help and the Prefect form) and validation, and one way a bad value becomes an `InputError` line
naming the field."""

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from flows.runtime.errors import InputError


class Contract(BaseModel):
    """Base of an options contract: frozen, unknown names refused; `parse` turns a validation
    error into one InputError naming the field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def parse(cls, *, file: str | None = None, row: int | None = None, **values: Any):
        """Build from loose values (CLI flags, deployment parameters); a bad value is one
        InputError naming the field (and the row when given)."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise validation_input_error(
                exc, fields=tuple(cls.model_fields), file=file, row=row
            ) from None

    @classmethod
    def describe(cls, name: str) -> str:
        """A field's description: the help text of its CLI option."""
        return cls.model_fields[name].description or ""

    @classmethod
    def default(cls, name: str) -> Any:
        """A field's default (the default of its CLI option)."""
        return cls.model_fields[name].get_default(call_default_factory=True)


def validation_input_error(
    exc: ValidationError,
    *,
    fields: tuple[str, ...],
    file: str | None = None,
    row: int | None = None,
) -> InputError:
    """The first problem of a contract's validation error as one InputError line; `fields`
    are the contract's names (listed when an unknown one is given)."""
    return error_line_of(exc.errors()[0], fields=fields, file=file, row=row)


def error_line_of(
    err: Any, *, fields: tuple[str, ...], file: str | None = None, row: int | None = None
) -> InputError:
    """One pydantic error (an item of `ValidationError.errors()`) as one InputError line."""
    loc = [str(part) for part in err.get("loc") or ()]
    field = ".".join(loc) if loc else None
    if err.get("type") == "value_error" and "error" in err.get("ctx", {}):
        message = str(err["ctx"]["error"])
    elif err.get("type") == "extra_forbidden":
        message = f"unknown option '{field}' (one of: {', '.join(fields)})"
    elif err.get("type", "").startswith(("float_", "int_")):
        message = f"'{err.get('input')}' is not a number"
    else:
        message = f"{err['msg'].lower()}, got {err.get('input')!r}"
    if row is not None:
        message = f"row {row}: {message}"
    return InputError(message, file=file, field=field)
