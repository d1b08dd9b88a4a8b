"""Terminal output shared by every CLI module: results on stdout, messages on stderr, and one
rule for how failures end (input errors exit 2 with one line, anything else exits 1)."""

import typer
from rich.console import Console

console = Console(stderr=True)
out = Console()


def fail(exc: BaseException) -> None:
    """Print `exc` as one line and leave with its exit code."""
    from flows.errors import InputError

    if isinstance(exc, InputError):
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    console.print(
        f"[bold red]failed:[/] {type(exc).__name__}: {exc}", highlight=False, soft_wrap=True
    )
    raise typer.Exit(1)
