"""`avatar-flow review`: open one finished job in the review app, on 127.0.0.1 by default.

The app has no login: whoever reaches it can watch the job, save plan versions and start
renders. So it binds to the loopback interface unless `--host` names another address
explicitly, and then says what that exposes.
"""

import ipaddress
from typing import Annotated

import typer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int) -> str:
    return (
        f"the review app listens on {host}:{port}, not only on this computer: anyone who can "
        "reach that address can watch this job's video and audio, read its words and plans, "
        "save plan versions and start renders (on this machine or the configured Prefect "
        "server) - there is no login. Use it only on a network you trust, or keep the "
        "default 127.0.0.1 and use an SSH tunnel."
    )


def bind_settings(host: str | None, *, explicit: bool) -> tuple[str, list[str], str | None]:
    """(address to bind, Host headers to accept, warning to print) for a requested host.

    A non-loopback address is refused unless it was given explicitly (`--host`): a default
    or a setting picked up from elsewhere must never expose the app by accident.
    """
    host = host or DEFAULT_HOST
    if is_loopback(host):
        return host, ["127.0.0.1", "localhost", "::1", "[::1]"], None
    if not explicit:
        from flows.runtime.errors import InputError

        raise InputError(
            f"refusing to listen on {host}: not a loopback address; pass --host {host} "
            "explicitly to expose the review app",
            field="host",
        )
    return host, ["*"], exposure_warning(host, 0)


def serve(
    target: str,
    *,
    host: str | None = None,
    port: int = DEFAULT_PORT,
    explicit_host: bool = False,
    log_level: str = "warning",
) -> None:
    """Load the job and serve the review app until interrupted."""
    import uvicorn

    from orchestrator.console import console
    from orchestrator.review.app import create_app
    from orchestrator.review.job import open_job

    bind, allowed, warning = bind_settings(host, explicit=explicit_host)
    job = open_job(target)
    app = create_app(job, allowed_hosts=allowed)
    if warning:
        console.print(f"[bold yellow]warning:[/] {exposure_warning(bind, port)}", soft_wrap=True)
    shown = f"[{bind}]" if ":" in bind else bind
    console.print(
        f"review: job {job.job_id} ({job.title}) at http://{shown}:{port}/  (Ctrl+C stops)",
        highlight=False,
    )
    uvicorn.run(app, host=bind, port=port, log_level=log_level)


def review(
    target: Annotated[
        str, typer.Argument(help="Output folder of a finished job, or a job id.")
    ] = ".",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on (default 127.0.0.1). Another address exposes the app "
            "to the network, without login."
        ),
    ] = None,
) -> None:
    """Watch the preview, edit the plan on the timeline, re-render only what changed."""
    from orchestrator.console import fail

    if not 1 <= port <= 65535:
        from flows.runtime.errors import InputError

        fail(InputError(f"--port must be between 1 and 65535, got {port}", field="port"))
    try:
        serve(target, host=host, port=port, explicit_host=host is not None)
    except (Exception, KeyboardInterrupt) as exc:
        fail(exc)
