"""The `avatar-flow` command line. Heavy imports (torch, Prefect) happen inside commands,
so `--help` and input errors answer at once."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flows.video.options import JobOptions, default
from orchestrator.cli_eval import eval_app
from orchestrator.cli_llm import llm_app
from orchestrator.cli_scale import batch, db_app, deploy, serve, worker
from orchestrator.cli_train import checkpoints_app, dataset_app, train_app
from orchestrator.console import (
    OneLineUsageGroup,
    console,
    fail,
    hide_run_logs,
    one_line_errors,
    out,
    progress_listener,
    quiet_prefect,
)

# `run`'s options are the job options contract's fields (flows.video.options.JobOptions):
# help text and defaults are read from it, and a test checks that the names are the same set.
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
    OutOpt,
    PlannerOpt,
    PlanOpt,
    RendererOpt,
    ReplanOpt,
    SegmentOpt,
    SolverOpt,
    StepCacheOpt,
    StepsOpt,
    StrictOpt,
    VarsOpt,
    VoiceOpt,
    WebhookOpt,
)
from orchestrator.review.serve import review

app = typer.Typer(
    cls=OneLineUsageGroup,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Turn a written script into a talking-avatar video with word-timed gestures.",
)


@app.callback()
def _end_children_with_the_cli() -> None:
    """Whatever a command starts (Prefect's ephemeral API server, flow-run processes, torchrun,
    the trainer) is stopped when the command's process ends, even by SIGKILL (issue 18)."""
    from flows.runtime.lifetime import end_children_with_this_process

    end_children_with_this_process()


jobs_app = typer.Typer(help="List and inspect jobs.", invoke_without_command=True)
app.add_typer(jobs_app, name="jobs")

ScriptArg = Annotated[Path, typer.Argument(help="Script: Markdown with YAML front matter.")]


def _warn_fallback(plan_or_report: dict) -> None:
    """One warning line on stderr when the planner fell back (also with --json, whose stdout
    stays the JSON alone)."""
    reason = plan_or_report.get("fallback_reason")
    if reason:
        kind = plan_or_report.get("fallback_kind")
        console.print(
            "[yellow]warning:[/] planner fell back to the rule planner"
            + (f" ({kind})" if kind else "")
            + f": {escape(reason)}",
            highlight=False,
            soft_wrap=True,
        )


def _warn_job(report: dict) -> None:
    """The job's own warnings (e.g. a checkpoint that drops the phase windows), one line each,
    on stderr: the report lists each once per job."""
    for line in report.get("warnings") or ():
        console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)


def _check_inputs(script: Path, options: JobOptions):
    """Validate before starting Prefect or loading any model; the checked inputs."""
    from flows.runtime.settings import get_settings
    from flows.video.inputs import prepare_inputs
    from storage import check_database

    inputs = prepare_inputs(script, options, get_settings())
    check_database(get_settings().db_url)  # before Prefect starts: one line, no work done
    return inputs


@app.command()
def run(
    script: ScriptArg,
    out_dir: OutOpt = default("out"),
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
    webhook: WebhookOpt = default("webhook"),
    plan: PlanOpt = default("plan"),
    replan: ReplanOpt = default("replan"),
    strict: StrictOpt = default("strict"),
    variables: VarsOpt = default("variables"),
    brand: BrandOpt = default("brand"),
    music: MusicOpt = default("music"),
    music_volume: MusicVolumeOpt = default("music_volume"),
    loudness: LoudnessOpt = default("loudness"),
    burn_captions: BurnCaptionsOpt = default("burn_captions"),
    chapters: ChaptersOpt = default("chapters"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the job report as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show Prefect logs.")] = False,
) -> None:
    """Produce the video: speech, words, plan, segments, render, stitch."""
    quiet_prefect(verbose)
    with one_line_errors():
        options = JobOptions.parse(
            out=str(out_dir.resolve()) if out_dir else None,
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
            webhook=webhook,
            plan=str(plan.resolve()) if plan else None,
            replan=replan,
            strict=strict,
            variables=variables,
            brand=str(brand.resolve()) if brand else None,
            music=str(music.resolve()) if music else None,
            music_volume=music_volume,
            loudness=loudness,
            burn_captions=burn_captions,
            chapters=chapters,
        )
        _check_inputs(script, options)
        from flows.runtime import progress
        from flows.video.produce import produce_video

        hide_run_logs(verbose)
        bar, on_event = progress_listener()
        with bar, progress.listening(on_event):
            report = produce_video(script=str(script), options=options)
    _warn_fallback(report)
    _warn_job(report)
    if as_json:
        out.print_json(json.dumps(report))
        return
    out.print(
        f"[bold green]done[/] job {report['job_id']}: {report['segments']} segments "
        f"({report['segments_rendered']} rendered, {report['segments_cached']} reused from the "
        f"cache), {report['duration']:.1f} s of video, plan version {report['plan_version']}"
        + (" (given)" if report.get("plan_given") else "")
    )
    for kind, path in report["outputs"].items():
        out.print(f"  {kind:<13} {path}", highlight=False)


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
    planner: PlannerOpt = default("planner"),
    voice: VoiceOpt = default("voice"),
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where plan.json and timeline.png go (default: the folder `run` would use).",
        ),
    ] = None,
    force: ForceOpt = default("force"),
    replan: ReplanOpt = default("replan"),
    strict: StrictOpt = default("strict"),
    variables: VarsOpt = default("variables"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Speak, time and plan the script without rendering; show the plan."""
    quiet_prefect(verbose)
    with one_line_errors():
        options = JobOptions.parse(
            planner=planner,
            voice=voice,
            out=str(out_dir.resolve()) if out_dir else None,
            force=force,
            replan=replan,
            variables=variables,
            strict=strict,
        )
        _check_inputs(script, options)
        from flows.runtime import progress
        from flows.video.produce import plan_script
        from flows.video.segments import plan_segments
        from flows.video.timeline import draw_timeline
        from planners.schema import Plan, Transcript
        from storage import atomic_write_text

        hide_run_logs(verbose)
        bar, on_event = progress_listener()
        with bar, progress.listening(on_event):
            result = plan_script(script=str(script), options=options)
        folder = Path(result["out_dir"])
        p, t = Plan.model_validate(result["plan"]), Transcript.model_validate(result["transcript"])
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "plan.json", p.model_dump_json(indent=2) + "\n")
        specs = plan_segments(
            t.words, t.duration, p, fps=result["fps"], max_seconds=result["segment_seconds"]
        )
        draw_timeline(
            t.words,
            p.phases,
            [s.end for s in specs[:-1]],
            t.duration,
            folder / "timeline.png",
            title=result["title"],
        )
    _warn_fallback(result["plan"])
    if as_json:
        out.print_json(json.dumps(result["plan"]))
        return
    out.print(_plan_table(result["plan"], result["transcript"]["words"]))
    out.print(f"wrote {folder / 'plan.json'} and {folder / 'timeline.png'}", highlight=False)


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

    with one_line_errors():
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
        from flows.runtime.errors import InputError

        fail(InputError(f"no job with id '{job_id}' (see `avatar-flow jobs`)", field="JOB_ID"))
    if as_json:
        out.print_json(json.dumps(details, default=str))
        return
    job = details["job"]
    out.print(f"[bold]{job['id']}[/] {job['status']}  {job['title']}  ({job['script_path']})")
    if job.get("error"):
        out.print(f"[red]error:[/] {job['error']}")
    for line in (details.get("report") or {}).get("warnings") or ():
        out.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
    cont = (details.get("report") or {}).get("continuity")
    if cont:
        anchor = ", colour anchor" if cont.get("color_anchor") else ""
        out.print(f"continuity: {cont['mode']} ({cont['frames']} frames{anchor})", highlight=False)
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
    versions = Table(title="Plan versions")
    for col in ("v", "source", "author", "saved", "changes"):
        versions.add_column(col)
    for v in details["plan_versions"]:
        versions.add_row(
            str(v["number"]),
            v["source"],
            v["author"],
            v["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
            "\n".join(v["diff"]),
        )
    out.print(versions)
    turns = Table(title="Planner turns")
    for col in ("#", "kind", "format", "seconds", "tokens in/out", "error"):
        turns.add_column(col)
    for t in details["planner_turns"]:
        tokens = f"{t.get('prompt_tokens') or '-'}/{t.get('completion_tokens') or '-'}"
        turns.add_row(
            str(t.get("index", "")),
            t.get("kind", ""),
            t.get("response_format", ""),
            f"{t.get('seconds', 0.0):.1f}",
            tokens,
            "; ".join(t.get("errors") or [])[:200],
        )
    out.print(turns)


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


# Scale-out, training and evaluation commands live in their own modules.
app.command()(serve)
app.command()(deploy)
app.command()(worker)
app.command()(batch)
app.command()(review)
app.add_typer(db_app, name="db")
app.add_typer(dataset_app, name="dataset")
app.add_typer(train_app, name="train")
app.add_typer(checkpoints_app, name="checkpoints")
app.add_typer(eval_app, name="eval")
app.add_typer(llm_app, name="llm")


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
