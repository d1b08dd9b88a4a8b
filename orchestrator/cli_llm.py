"""`avatar-flow llm list|reset`: what the MLLM planner and judge learnt about each endpoint.

The planner negotiates the answer format and checks that prompts and images arrive; the
outcome is remembered per base URL and model in the database. `reset` forgets it (after a
server upgrade or a new model under the same name) so the next plan negotiates again.
"""

import json
from typing import Annotated

import typer
from rich.table import Table

from orchestrator.console import one_line_errors, out

llm_app = typer.Typer(
    help="What the MLLM planner learnt about each LLM endpoint (format, images).",
    no_args_is_help=True,
)


def _store():
    from flows.runtime.llm_endpoints import DatabaseCapabilityStore
    from flows.runtime.settings import get_settings

    return DatabaseCapabilityStore(get_settings().db_url)


@llm_app.command("list")
def llm_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Remembered endpoints: accepted answer format, whether images arrive, refused params."""
    with one_line_errors():
        rows = _store().entries()
    if as_json:
        out.print_json(json.dumps([r.model_dump(mode="json", exclude={"id"}) for r in rows]))
        return
    table = Table(title="LLM endpoints")
    for col in ("base URL", "model", "format", "images", "prompt checked", "refused", "updated"):
        table.add_column(col)
    for r in rows:
        data = r.data or {}
        table.add_row(
            r.base_url,
            r.model,
            r.response_format or "-",
            {True: "yes", False: "no (text-only)", None: "-"}[r.images],
            "yes" if data.get("prompt_checked") else "-",
            ", ".join(data.get("omit") or []) or "-",
            r.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    out.print(table)


@llm_app.command("reset")
def llm_reset(
    base_url: Annotated[
        str | None, typer.Option(help="Only this endpoint (default: every endpoint).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
) -> None:
    """Forget what was learnt, so the next request negotiates again."""
    with one_line_errors():
        n = _store().reset(base_url, model)
    out.print(f"forgot {n} endpoint{'s' if n != 1 else ''}")
