"""The `avatar-flow` command line. Heavy imports (torch, Prefect) happen inside commands,
so `--help` and input errors answer at once."""

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from orchestrator.console import console, fail, out

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Turn a written script into a talking-avatar video with word-timed gestures.",
)
jobs_app = typer.Typer(help="List and inspect jobs.", invoke_without_command=True)
app.add_typer(jobs_app, name="jobs")

ScriptArg = Annotated[Path, typer.Argument(help="Script: Markdown with YAML front matter.")]
RendererOpt = Annotated[str, typer.Option(help="animatic (CPU preview) or actavatar (GPU model).")]
PlannerOpt = Annotated[
    str, typer.Option(help="rule (offline) or mllm (OpenAI-compatible endpoint).")
]
VoiceOpt = Annotated[str | None, typer.Option(help="Override the voice: piper, openai:<name>.")]


def _quiet_prefect(verbose: bool) -> None:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")


def _progress_listener():
    """Rich progress bars fed by flow progress events."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, int] = {}

    def on_event(ev) -> None:
        if ev.stage == "done":
            return
        if ev.stage not in tasks:
            tasks[ev.stage] = bar.add_task(ev.stage, total=max(ev.total, 1), note="")
        bar.update(tasks[ev.stage], completed=ev.done, total=max(ev.total, 1), note=ev.message)

    return bar, on_event


def _check_inputs(script: Path, **options) -> None:
    """Validate before starting Prefect or loading any model."""
    from flows.inputs import JobOptions, prepare_inputs
    from flows.settings import get_settings

    prepare_inputs(script, JobOptions(**options), get_settings())


@app.command()
def run(
    script: ScriptArg,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder.")] = None,
    renderer: RendererOpt = "animatic",
    planner: PlannerOpt = "rule",
    voice: VoiceOpt = None,
    checkpoint: Annotated[Path | None, typer.Option(help="ActAvatar pipeline directory.")] = None,
    segment_seconds: Annotated[float | None, typer.Option(help="Longest segment, seconds.")] = None,
    steps: Annotated[
        int | None, typer.Option(help="Denoising steps per segment (actavatar).")
    ] = None,
    continuity: Annotated[
        int,
        typer.Option(
            help="Frames of the previous segment the next one continues from (actavatar): "
            "0 = restart from the avatar, 1 = TI2V rule, 5/9 = more."
        ),
    ] = 1,
    force: Annotated[bool, typer.Option(help="Recompute every step.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job report as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show Prefect logs.")] = False,
) -> None:
    """Produce the video: speech, words, plan, segments, render, stitch."""
    _quiet_prefect(verbose)
    ckpt = str(checkpoint) if checkpoint else None
    try:
        _check_inputs(
            script,
            renderer=renderer,
            planner=planner,
            voice=voice,
            checkpoint=ckpt,
            segment_seconds=segment_seconds,
            steps=steps,
            continuity_frames=continuity,
        )
        out_dir = out_dir or Path("out") / script.stem
        from flows import progress
        from flows.produce import produce_video

        bar, on_event = _progress_listener()
        with bar, progress.listening(on_event):
            report = produce_video(
                script=str(script),
                out=str(out_dir),
                renderer=renderer,
                planner=planner,
                voice=voice,
                checkpoint=ckpt,
                segment_seconds=segment_seconds,
                steps=steps,
                continuity=continuity,
                force=force,
            )
    except (Exception, KeyboardInterrupt) as exc:
        fail(exc)
    if as_json:
        out.print_json(json.dumps(report))
        return
    out.print(
        f"[bold green]done[/] job {report['job_id']}: {report['segments']} segments "
        f"({report['segments_rendered']} rendered, {report['segments_cached']} cached), "
        f"{report['duration']:.1f} s of video"
    )
    for kind, path in report["outputs"].items():
        out.print(f"  {kind:<13} {path}", highlight=False)
    if report.get("fallback_reason"):
        out.print(f"[yellow]planner fell back to the rule planner:[/] {report['fallback_reason']}")


def _plan_table(plan: dict, words: list[dict]) -> Table:
    from planners.schema import BaseBlock

    base = BaseBlock.model_validate(plan["base"]).render()
    table = Table(title=f"Plan ({plan['planner']})", caption=f"Base: {base}", show_lines=False)
    for col in ("#", "start", "end", "words", "action", "source"):
        table.add_column(col)
    for i, p in enumerate(plan["phases"], start=1):
        text = " ".join(w["word"] for w in words[p["first_word"] : p["last_word"] + 1])
        table.add_row(
            str(i), f"{p['start']:.2f}", f"{p['end']:.2f}", text, p["action"], p["source"]
        )
    return table


@app.command()
def plan(
    script: ScriptArg,
    planner: PlannerOpt = "rule",
    voice: VoiceOpt = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Where plan.json and timeline.png go (default out/<script>)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Speak, time and plan the script without rendering; show the plan."""
    _quiet_prefect(verbose)
    try:
        _check_inputs(script, planner=planner, voice=voice)
        from flows.produce import plan_script

        result = plan_script(script=str(script), planner=planner, voice=voice)
        out_dir = out_dir or Path("out") / script.stem
        from flows.segments import plan_segments
        from flows.timeline import draw_timeline
        from planners.schema import Plan, Transcript
        from storage import atomic_write_text

        p, t = Plan.model_validate(result["plan"]), Transcript.model_validate(result["transcript"])
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "plan.json", p.model_dump_json(indent=2) + "\n")
        specs = plan_segments(
            t.words, t.duration, p, fps=result["fps"], max_seconds=result["segment_seconds"]
        )
        draw_timeline(
            t.words,
            p.phases,
            [s.end for s in specs[:-1]],
            t.duration,
            out_dir / "timeline.png",
            title=result["title"],
        )
    except (Exception, KeyboardInterrupt) as exc:
        fail(exc)
    if as_json:
        out.print_json(json.dumps(result["plan"]))
        return
    out.print(_plan_table(result["plan"], result["transcript"]["words"]))
    out.print(f"wrote {out_dir / 'plan.json'} and {out_dir / 'timeline.png'}", highlight=False)
    if result["plan"].get("fallback_reason"):
        out.print(f"[yellow]fell back:[/] {result['plan']['fallback_reason']}")


@jobs_app.callback()
def jobs_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="How many recent jobs.")] = 20,
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recent jobs (newest first)."""
    if ctx.invoked_subcommand:
        return
    from orchestrator.queries import list_jobs

    jobs = list_jobs(limit=limit, status=status)
    if as_json:
        out.print_json(json.dumps([j.model_dump(mode="json") for j in jobs]))
        return
    table = Table(title="Jobs")
    for col in ("id", "status", "title", "segments", "duration", "updated", "out"):
        table.add_column(col, no_wrap=col in ("id", "status", "updated"))
    for j in jobs:
        table.add_row(
            j.id,
            j.status,
            j.title,
            f"{j.segments_rendered}/{j.segments_total}",
            f"{j.duration:.1f} s" if j.duration else "-",
            j.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            j.out_dir,
        )
    out.print(table)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="Job id (see `avatar-flow jobs`).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One job with its segments, plan and assets."""
    from orchestrator.queries import job_details

    details = job_details(job_id)
    if details is None:
        console.print(f"[bold red]error:[/] no job with id '{job_id}'")
        raise typer.Exit(2)
    if as_json:
        out.print_json(json.dumps(details, default=str))
        return
    job = details["job"]
    out.print(f"[bold]{job['id']}[/] {job['status']}  {job['title']}  ({job['script_path']})")
    if job.get("error"):
        out.print(f"[red]error:[/] {job['error']}")
    seg = Table(title="Segments")
    for col in ("#", "start", "end", "frames", "status", "render s", "sha256"):
        seg.add_column(col)
    for s in details["segments"]:
        seg.add_row(
            str(s["index"]),
            f"{s['start']:.2f}",
            f"{s['end']:.2f}",
            str(s["num_frames"]),
            s["status"],
            f"{s['render_seconds']:.2f}" if s["render_seconds"] else "-",
            (s["video_sha256"] or "")[:12],
        )
    out.print(seg)
    assets = Table(title="Assets")
    for col in ("kind", "bytes", "sha256", "path"):
        assets.add_column(col)
    for a in details["assets"]:
        assets.add_row(a["kind"], str(a["bytes"]), a["sha256"][:12], a["path"])
    out.print(assets)


@app.command()
def doctor(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """What is installed, which models were found, GPU or not."""
    from orchestrator.doctor import collect

    report = collect()
    if as_json:
        out.print_json(json.dumps(report, default=str))
        return
    table = Table(title="avatar-flow doctor", show_header=False)
    table.add_column("check")
    table.add_column("value")
    for section, items in report.items():
        table.add_row(f"[bold]{section}[/]", "")
        for k, v in items.items():
            table.add_row(f"  {k}", str(v))
    out.print(table)


def _register_extensions() -> None:
    """Scale-out commands (serve, deploy, batch, db) live in their own module."""
    __import__("orchestrator.cli_eval").cli_eval.register(app)  # eval synthetic / judge
    __import__("orchestrator.cli_train").cli_train.register(app)  # dataset, train, checkpoints
    try:
        from orchestrator import cli_scale
    except ImportError:  # not built yet
        return
    cli_scale.register(app)


_register_extensions()


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
