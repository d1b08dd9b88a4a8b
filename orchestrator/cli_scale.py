"""Scale-out commands: `serve`, `deploy`, `worker`, `batch` and `db upgrade|current|stamp`.

Added to the main app by `orchestrator.cli`. Inputs are checked before Prefect starts, and
bad input is one line naming the file, row and field, with exit code 2.
"""

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flows.video.options import JobOptions, default
from orchestrator.console import (
    at_least,
    console,
    fail,
    hide_run_logs,
    one_line_errors,
    out,
    quiet_prefect,
)
from orchestrator.job_options import (
    BrandOpt,
    BurnCaptionsOpt,
    ChaptersOpt,
    CheckpointOpt,
    ColorAnchorOpt,
    ContinuityModeOpt,
    ContinuityOpt,
    FastOpt,
    ForceOpt,
    IntervalOpt,
    LoudnessOpt,
    MusicOpt,
    MusicVolumeOpt,
    PlannerOpt,
    RendererOpt,
    ReplanOpt,
    SegmentOpt,
    SolverOpt,
    StepCacheOpt,
    StepsOpt,
    StrictOpt,
    VoiceOpt,
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="deployments.yaml with parameters and cron schedules."),
]
GpusOpt = Annotated[
    int | None,
    typer.Option("--gpus", help="GPUs per segment (context parallelism; sets AVATAR_FLOW_GPUS)."),
]


def _set_gpus(gpus: int | None) -> None:
    if gpus is not None:
        if gpus < 1:
            from flows.runtime.errors import InputError

            fail(InputError(f"--gpus must be at least 1, got {gpus}", field="gpus"))
        os.environ["AVATAR_FLOW_GPUS"] = str(gpus)


def _api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def serve(
    config: ConfigOpt = None,
    limit: Annotated[
        int | None, typer.Option(help="Most flow runs at once in this process.")
    ] = None,
    gpus: GpusOpt = None,
) -> None:
    """Serve the flows as deployments with their schedules (runs from the UI execute here).

    Every registered flow: produce-video, produce-batch, build-dataset and the training flows.
    """
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    _set_gpus(gpus)
    at_least(limit, 1, "--limit")
    with one_line_errors():
        from flows.runtime.gpu import ensure_gpu_limits
        from orchestrator.deployments import build_deployments

        deployments = build_deployments(config)
        limits = ensure_gpu_limits()
    if not _api_url():
        console.print(
            "[yellow]PREFECT_API_URL is not set: serving against Prefect's ephemeral "
            "API (no UI). Start `prefect server start` and export PREFECT_API_URL.[/]"
        )
    for d in deployments:
        crons = ", ".join(s.schedule.cron for s in (d.schedules or [])) or "no schedule"
        console.print(f"serving [bold]{d.flow_name}/{d.name}[/] ({crons})", highlight=False)
    if limits:
        console.print(f"GPU limits: {', '.join(limits)}", highlight=False)
    from flows.runtime.results import result_storage

    console.print(f"job summaries: {result_storage()}", highlight=False)
    from prefect import serve as prefect_serve

    prefect_serve(*deployments, limit=limit, print_starting_message=False)


def _ensure_pool(name: str, pool_type: str) -> bool:
    """Create the work pool if it is missing; True if it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type=pool_type))
            return True


def deploy(
    pool: Annotated[str, typer.Option("--pool", help="Work pool the deployments run in.")],
    config: ConfigOpt = None,
    pool_type: Annotated[str, typer.Option(help="Type of a pool created here.")] = "process",
    create_pool: Annotated[bool, typer.Option(help="Create the pool if missing.")] = True,
    gpus: GpusOpt = None,
) -> None:
    """Register the deployments to a work pool, for workers on other machines.

    Start them with `avatar-flow worker --pool NAME` where avatar-flow is installed.
    """
    at_least(gpus, 1, "--gpus")
    with one_line_errors():
        from orchestrator.deployments import build_deployments

        env = {"AVATAR_FLOW_GPUS": str(gpus)} if gpus else {}
        deployments = build_deployments(
            config, work_pool=pool, job_variables={"env": env} if env else None
        )
    if not _api_url():
        fail(RuntimeError("deploy needs a Prefect server: set PREFECT_API_URL"))
    with one_line_errors():
        if create_pool and _ensure_pool(pool, pool_type):
            console.print(f"created work pool [bold]{pool}[/] ({pool_type})")
        # Module-path entrypoints need no image and no remote storage, so each deployment is
        # applied directly (prefect.deploy's online-worker check fails on prefect 3.8.8's API).
        ids = [d.apply(work_pool_name=pool) for d in deployments]
    for d, dep_id in zip(deployments, ids):
        out.print(f"{d.flow_name}/{d.name}  {dep_id}  pool={pool}", highlight=False)


def worker(
    pool: Annotated[str, typer.Option("--pool", help="Work pool to pull runs from.")],
    gpu: Annotated[
        str | None,
        typer.Option(
            "--gpu", help="GPU(s) of this worker, e.g. 0 or 2,3 (sets CUDA_VISIBLE_DEVICES)."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Worker name.")] = None,
    limit: Annotated[int, typer.Option(help="Flow runs at once.")] = 1,
) -> None:
    """Start a Prefect process worker bound to its GPU set (one worker per GPU or GPU group)."""
    at_least(limit, 1, "--limit")
    env = dict(os.environ)
    names: list[str] = []
    if gpu:
        ids = [g.strip() for g in gpu.split(",") if g.strip()]
        if not ids or not all(i.isdigit() for i in ids):
            from flows.runtime.errors import InputError

            fail(InputError(f"--gpu takes GPU indices like 0 or 2,3, got {gpu!r}", field="gpu"))
        env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
        env.setdefault("AVATAR_FLOW_GPUS", "1")
        from flows.runtime.gpu import host_name

        names = [f"gpu:{host_name()}:{i}" for i in ids]
    if names:
        from flows.runtime.gpu import ensure_gpu_limits

        ensure_gpu_limits(names)
        console.print(f"GPU limits: {', '.join(names)}", highlight=False)
    cmd = [
        sys.executable,
        "-m",
        "prefect",
        "worker",
        "start",
        "--pool",
        pool,
        "--type",
        "process",
        "--limit",
        str(limit),
    ]
    if name:
        cmd += ["--name", name]
    os.execvpe(cmd[0], cmd, env)


def batch(
    manifest: Annotated[
        Path, typer.Argument(help="manifest.csv|jsonl|yaml, or a folder of scripts.")
    ],
    template: Annotated[
        Path | None, typer.Option(help="Template script with {placeholders}.")
    ] = None,
    out_root: Annotated[
        Path | None, typer.Option("--out", help="Output folder (one sub-folder per row).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Rows at once.")] = 1,
    webhook: Annotated[
        str | None,
        typer.Option(help="URL POSTed the HMAC-signed summary when the batch finishes."),
    ] = None,
    # Defaults for every row: the job options contract's fields (flows.video.options.JobOptions)
    # but the per-row ones (`out`, `plan`, the job `webhook`: manifest columns); help texts and
    # defaults are the contract's, and tests/flows/test_options_contract.py checks the set.
    renderer: RendererOpt = default("renderer"),
    planner: PlannerOpt = default("planner"),
    voice: VoiceOpt = default("voice"),
    checkpoint: CheckpointOpt = default("checkpoint"),
    segment_seconds: SegmentOpt = default("segment_seconds"),
    steps: StepsOpt = default("steps"),
    continuity: ContinuityOpt = default("continuity"),
    continuity_mode: ContinuityModeOpt = default("continuity_mode"),
    color_anchor: ColorAnchorOpt = default("color_anchor"),
    fast: FastOpt = default("fast"),
    solver: SolverOpt = default("solver"),
    guidance_interval: IntervalOpt = default("guidance_interval"),
    step_cache: StepCacheOpt = default("step_cache"),
    force: ForceOpt = default("force"),
    replan: ReplanOpt = default("replan"),
    strict: StrictOpt = default("strict"),
    brand: BrandOpt = default("brand"),
    music: MusicOpt = default("music"),
    music_volume: MusicVolumeOpt = default("music_volume"),
    loudness: LoudnessOpt = default("loudness"),
    burn_captions: BurnCaptionsOpt = default("burn_captions"),
    chapters: ChaptersOpt = default("chapters"),
    gpus: GpusOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print batch.json.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Produce one video per manifest row; re-running skips what is done. Exit 1 if a row failed."""
    quiet_prefect(verbose)
    _set_gpus(gpus)
    with one_line_errors():
        from flows.video.batch import batch_root, check_batch_webhook, load_manifest

        check_batch_webhook(webhook)
        out_dir = batch_root(str(manifest), str(out_root) if out_root else None)
        options = JobOptions.parse(
            renderer=renderer,
            planner=planner,
            voice=voice,
            checkpoint=str(checkpoint) if checkpoint else None,
            segment_seconds=segment_seconds,
            steps=steps,
            continuity=continuity,
            continuity_mode=continuity_mode,
            color_anchor=color_anchor,
            fast=fast,
            solver=solver,
            guidance_interval=guidance_interval,
            step_cache=step_cache,
            force=force,
            replan=replan,
            strict=strict,
            brand=str(brand) if brand else None,
            music=str(music) if music else None,
            music_volume=music_volume,
            loudness=loudness,
            burn_captions=burn_captions,
            chapters=chapters,
        )
        from flows.video.inputs import check_option_paths

        check_option_paths(options)
        rows = load_manifest(
            manifest, template=str(template) if template else None, out_root=str(out_dir)
        )
        if concurrency < 1:
            from flows.runtime.errors import InputError

            raise InputError(
                f"--concurrency must be at least 1, got {concurrency}", field="concurrency"
            )
        from flows.runtime import progress
        from flows.video.batch import produce_batch

        hide_run_logs(verbose)
        bar, on_event = _batch_bar(len(rows))
        with bar, progress.listening(on_event):
            report = produce_batch(
                manifest=str(manifest),
                template=str(template) if template else None,
                out_root=str(out_dir),
                concurrency=concurrency,
                options=options,
                webhook=webhook,
            )
    if as_json:
        out.print_json(json.dumps(report, default=str))
    else:
        _print_batch(report, manifest.name)
    if report["summary"]["failed"]:
        raise typer.Exit(1)


def _batch_bar(total: int):
    """One progress bar over the rows (drawn on a terminal only) and its event listener."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("batch"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
        disable=not console.is_terminal,
    )
    task_id = bar.add_task("batch", total=total, note="")

    def on_event(ev) -> None:
        if ev.stage == "batch":
            bar.update(task_id, completed=ev.done, note=ev.message)

    return bar, on_event


def _print_batch(report: dict, name: str) -> None:
    """The batch report as a table (one row per manifest row) and a summary line."""
    table = Table(title=f"Batch {name}")
    for col in ("row", "id", "status", "job", "seconds", "video / error"):
        table.add_column(col, overflow="fold")
    style = {"done": "green", "skipped": "cyan", "failed": "red"}
    for r in report["rows"]:
        table.add_row(
            str(r["row"]),
            r["id"],
            f"[{style[r['status']]}]{r['status']}[/]",
            r.get("job_id") or "-",
            f"{r['seconds']:.1f}",
            escape(r.get("video") or r.get("error") or "-"),
        )
    out.print(table)
    s = report["summary"]
    out.print(
        f"{s['done']} done, {s['skipped']} skipped, {s['failed']} failed — "
        f"report: {report['report']}",
        highlight=False,
    )


db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url", help="Database URL (default: AVATAR_FLOW_DATABASE_URL or the SQLite file)."
    ),
]


def _db_url(url: str | None) -> str:
    """The database URL to migrate; a URL SQLAlchemy cannot read is the one error line."""
    from flows.runtime.settings import get_settings

    if url is not None:
        from sqlalchemy.engine import make_url

        try:
            make_url(url).get_dialect()
        except Exception as exc:  # ArgumentError, NoSuchModuleError
            from flows.runtime.errors import InputError

            fail(InputError(f"not a database URL SQLAlchemy can use: {url!r} ({exc})", field="url"))
    return url or get_settings().db_url


def _shown(url: str) -> str:
    """The URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@db_app.command("upgrade")
def db_upgrade(
    url: UrlOpt = None, revision: Annotated[str, typer.Argument(help="Target revision.")] = "head"
) -> None:
    """Apply migrations (adopts a database made by create_all when it matches the models)."""
    from storage.migrations import upgrade

    target = _db_url(url)
    with one_line_errors():
        before, after = upgrade(target, revision)
    out.print(f"{_shown(target)}: {before or 'empty'} -> {after}", highlight=False, soft_wrap=True)


@db_app.command("current")
def db_current(url: UrlOpt = None) -> None:
    """The database's revision and the newest one."""
    from storage.migrations import current, head

    target = _db_url(url)
    out.print(
        f"{_shown(target)}: {current(target) or 'none'} (head {head()})",
        highlight=False,
        soft_wrap=True,
    )


@db_app.command("stamp")
def db_stamp(
    revision: Annotated[str, typer.Argument(help="Revision the database already matches.")],
    url: UrlOpt = None,
) -> None:
    """Record a revision without running it (adopting an existing database)."""
    from storage.migrations import stamp

    stamp(_db_url(url), revision)
    out.print(f"stamped {revision}")


@db_app.command("revision")
def db_revision(
    message: Annotated[str, typer.Option("-m", "--message", help="What changed.")],
) -> None:
    """Write a new migration for a change to the models (autogenerate; review it)."""
    from storage.migrations import revision

    revision(message)
