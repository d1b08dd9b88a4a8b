"""Training commands: `dataset build`, `train stage1|stage2`, `checkpoints ...`.

Added to the main app by `orchestrator.cli`. Inputs (folders, configs, ids) are checked
before Prefect or torch start; bad input is one line naming the file and field, exit code 2.
"""

import json
import math
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.training.options import DatasetOptions, TrainOptions
from orchestrator.console import one_line_errors, out, with_progress

dataset_app = typer.Typer(help="Build training datasets from talking videos.", no_args_is_help=True)
train_app = typer.Typer(
    help="Train ActAvatar: stage 1 (audio adapter), stage 2 (full, PACA), distill (students).",
    no_args_is_help=True,
)
checkpoints_app = typer.Typer(
    help="Trained checkpoints: list, show, export, push, pull.", invoke_without_command=True
)

# `train stage1|stage2|distill` take the stage contract's fields (flows.training.options.
# TrainOptions), help texts read from it; tests/flows/test_options_contract.py checks the set.
T = TrainOptions
ConfigArg = Annotated[Path, typer.Argument(help=T.describe("config"))]
SetOpt = Annotated[list[str], typer.Option("--set", help=T.describe("overrides"))]
AccelOpt = Annotated[Path | None, typer.Option(help=T.describe("accelerate_config"))]
NprocOpt = Annotated[int | None, typer.Option(help=T.describe("nproc"))]
StopOpt = Annotated[int | None, typer.Option(help=T.describe("stop_after"))]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


def _quiet() -> None:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


# ------------------------------------------------------------------------------------- dataset
# `dataset build`'s options are the dataset contract's fields (flows.training.options.
# DatasetOptions): help texts and defaults are read from it, and tests/flows/
# test_options_contract.py checks that the names are the same set.
D = DatasetOptions


def _bucket_texts() -> list[str]:
    return [f"{h}x{w}" for h, w in D.default("buckets")]


@dataset_app.command("build")
def dataset_build(
    videos: Annotated[Path, typer.Argument(help="Folder of talking videos with sound.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help=D.describe("out"))] = D.default(
        "out"
    ),
    planner: Annotated[str, typer.Option(help=D.describe("planner"))] = D.default("planner"),
    motion_threshold: Annotated[
        float, typer.Option(help=D.describe("motion_threshold"))
    ] = D.default("motion_threshold"),
    encoders: Annotated[str, typer.Option(help=D.describe("encoders"))] = D.default("encoders"),
    wav2vec: Annotated[Path | None, typer.Option(help=D.describe("wav2vec"))] = D.default(
        "wav2vec"
    ),
    dwpose: Annotated[Path | None, typer.Option(help=D.describe("dwpose"))] = D.default("dwpose"),
    fps: Annotated[int, typer.Option(help=D.describe("fps"))] = D.default("fps"),
    clip_frames: Annotated[int, typer.Option(help=D.describe("clip_frames"))] = D.default(
        "clip_frames"
    ),
    buckets: Annotated[
        list[str], typer.Option("--bucket", help=D.describe("buckets") + " Repeatable.")
    ] = _bucket_texts(),
    text_len: Annotated[int, typer.Option(help=D.describe("text_len"))] = D.default("text_len"),
    max_phases: Annotated[int, typer.Option(help=D.describe("max_phases"))] = D.default(
        "max_phases"
    ),
    shard_size: Annotated[int, typer.Option(help=D.describe("shard_size"))] = D.default(
        "shard_size"
    ),
    annotate_frames: Annotated[int, typer.Option(help=D.describe("annotate_frames"))] = D.default(
        "annotate_frames"
    ),
    as_json: JsonOpt = False,
) -> None:
    """Cut, score, transcribe, annotate and cache clips for training (resumable)."""
    _quiet()
    with one_line_errors():
        from flows.training.builder import prepare
        from flows.training.dataset import build_dataset

        options = DatasetOptions.parse(
            out=str(out_dir) if out_dir else None,
            planner=planner,
            motion_threshold=motion_threshold,
            encoders=encoders,
            wav2vec=str(wav2vec) if wav2vec else None,
            dwpose=str(dwpose) if dwpose else None,
            fps=fps,
            clip_frames=clip_frames,
            buckets=buckets,
            text_len=text_len,
            max_phases=max_phases,
            shard_size=shard_size,
            annotate_frames=annotate_frames,
        )
        prepare(str(videos), options)  # one-line input errors before Prefect starts
        report = with_progress(build_dataset, videos=str(videos), options=options)
    if as_json:
        out.print_json(json.dumps(report))
        return
    out.print(
        f"[bold green]dataset[/] {report['dataset']}: {report['clips']} clips "
        f"({report['stage2_clips']} for stage 2), {report['clips_new']} new, "
        f"{report['clips_cached']} encoded, {report['videos_skipped']} videos skipped",
        highlight=False,
    )
    for path, reason in report["skipped"].items():
        out.print(f"  skipped {path}: {reason}", highlight=False)


# ------------------------------------------------------------------------------------- train
def _train(
    stage: str, config: Path, overrides, accelerate_config, nproc, stop_after, as_json
) -> None:
    _quiet()
    with one_line_errors():
        from flows.training import train as train_flows

        options = TrainOptions.parse(
            config=str(config),
            overrides=overrides or [],
            accelerate_config=str(accelerate_config) if accelerate_config else None,
            nproc=nproc,
            stop_after=stop_after,
        )
        train_flows.check_stage(options, stage)  # fail fast, before Prefect starts
        fn = {
            "stage1": train_flows.train_stage1,
            "stage2": train_flows.train_stage2,
            "distill": train_flows.train_distill,
        }[stage]
        report = with_progress(fn, options=options)
    if as_json:
        out.print_json(json.dumps(report, default=str))
        return
    loss = report.get("loss")
    loss_text = f"loss {loss:.4f}" if isinstance(loss, (int, float)) else "no loss"
    rate = f", {report['steps_per_s']} steps/s" if report.get("steps_per_s") else ""
    ran = report.get("steps_run", 0)
    out.print(
        f"[bold green]{stage}[/] step {report.get('step')} ({loss_text}{rate}; {ran} steps this run); "
        f"checkpoints registered: {report['checkpoint_ids']}",
        highlight=False,
    )
    if report.get("adapter"):
        out.print(f"  adapter    {report['adapter']}", highlight=False)
    if report.get("checkpoint"):
        out.print(f"  checkpoint {report['checkpoint']}", highlight=False)
    if report.get("pipeline"):
        student = report.get("student", {})
        out.print(
            f"  student    {report['pipeline']} ({student.get('mode')}, "
            f"{student.get('evaluations_per_clip')} evaluations per clip)",
            highlight=False,
        )


@train_app.command("stage1")
def train_stage1(
    config: ConfigArg,
    overrides: SetOpt = T.default("overrides"),
    accelerate_config: AccelOpt = T.default("accelerate_config"),
    nproc: NprocOpt = T.default("nproc"),
    stop_after: StopOpt = T.default("stop_after"),
    as_json: JsonOpt = False,
) -> None:
    """Stage 1: train the audio adapter on the frozen backbone, then extract it."""
    _train("stage1", config, overrides, accelerate_config, nproc, stop_after, as_json)


@train_app.command("stage2")
def train_stage2(
    config: ConfigArg,
    overrides: SetOpt = T.default("overrides"),
    accelerate_config: AccelOpt = T.default("accelerate_config"),
    nproc: NprocOpt = T.default("nproc"),
    stop_after: StopOpt = T.default("stop_after"),
    as_json: JsonOpt = False,
) -> None:
    """Stage 2: inject the adapter, add PACA, fine-tune everything on phase annotations."""
    _train("stage2", config, overrides, accelerate_config, nproc, stop_after, as_json)


@train_app.command("distill")
def train_distill(
    config: ConfigArg,
    overrides: SetOpt = T.default("overrides"),
    accelerate_config: AccelOpt = T.default("accelerate_config"),
    nproc: NprocOpt = T.default("nproc"),
    stop_after: StopOpt = T.default("stop_after"),
    as_json: JsonOpt = False,
) -> None:
    """Distill a teacher into a few-evaluation student (guidance folded in); exports it."""
    _train("distill", config, overrides, accelerate_config, nproc, stop_after, as_json)


# ------------------------------------------------------------------------------------- checkpoints
def _row_dict(row) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "stage": row.stage,
        "step": row.step,
        "path": row.path,
        "sha256": row.sha256,
        "config_hash": row.config_hash,
        "data_hash": row.data_hash,
        "metrics": row.metrics,
        "created_at": str(row.created_at),
        "exists": Path(row.path).is_dir(),
    }


@checkpoints_app.callback()
def checkpoints_main(ctx: typer.Context) -> None:
    """Without a subcommand: list the registered checkpoints."""
    if ctx.invoked_subcommand is None:
        checkpoints_list(stage=None, as_json=False)


@checkpoints_app.command("list")
def checkpoints_list(
    stage: Annotated[str | None, typer.Option(help="stage1, stage2, distill or imported.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Registered checkpoints, oldest first."""
    with one_line_errors():
        from flows.training.checkpoints import list_checkpoints

        rows = [_row_dict(r) for r in list_checkpoints(stage)]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="Checkpoints")
    for col in ("id", "name", "stage", "step", "loss", "sha256", "path"):
        table.add_column(col)
    for r in rows:
        loss = r["metrics"].get("loss")
        table.add_row(
            str(r["id"]),
            r["name"],
            r["stage"],
            str(r["step"]),
            f"{loss:.4f}" if isinstance(loss, float) else "",
            r["sha256"][:12],
            r["path"] + ("" if r["exists"] else " (missing)"),
        )
    out.print(table)


@checkpoints_app.command("show")
def checkpoints_show(
    ref: Annotated[str, typer.Argument(metavar="ID", help="Checkpoint id or name.")],
) -> None:
    """One checkpoint as JSON (with its training config when the folder is present)."""
    with one_line_errors():
        from flows.training.checkpoints import get_checkpoint
        from generator.transformer_actavatar import read_timing_mechanism

        row = _row_dict(get_checkpoint(ref))
        cfg = Path(row["path"]) / "train_config.json"
        if cfg.is_file():
            row["train_config"] = json.loads(cfg.read_text())
        # how renders of this checkpoint time the phases (None: folder missing)
        row["timing"] = read_timing_mechanism(row["path"])
    out.print_json(json.dumps(row, default=str))


@checkpoints_app.command("export")
def checkpoints_export(
    ref: Annotated[str, typer.Argument(metavar="ID", help="Checkpoint id or name.")],
    out_dir: Annotated[Path, typer.Argument(metavar="DIR", help="Pipeline folder to write.")],
    base: Annotated[str | None, typer.Option(help="Other base for VAE/umT5/Wav2Vec2.")] = None,
    wav2vec: Annotated[
        Path | None, typer.Option(help="Wav2Vec2 folder (with a plain Wan base).")
    ] = None,
) -> None:
    """Write a pipeline folder usable with `avatar-flow run --renderer actavatar --checkpoint DIR`."""
    with one_line_errors():
        from flows.training.checkpoints import export_checkpoint

        path = export_checkpoint(ref, out_dir, base=base, wav2vec=str(wav2vec) if wav2vec else None)
    out.print(f"[bold green]exported[/] {path}", highlight=False)


@checkpoints_app.command("push")
def checkpoints_push(
    ref: Annotated[str, typer.Argument(metavar="ID", help="Checkpoint id or name.")],
    repo: Annotated[str, typer.Argument(metavar="REPO", help="Hub model repo: OWNER/NAME.")],
    public: Annotated[bool, typer.Option(help="Create the repo public (default private).")] = False,
) -> None:
    """Upload the weights, adapter and training records to the Hugging Face Hub (HF_TOKEN)."""
    with one_line_errors():
        from flows.training.hub import push_checkpoint

        url = push_checkpoint(ref, repo, private=not public)
    out.print(f"[bold green]pushed[/] {url}", highlight=False)


@checkpoints_app.command("pull")
def checkpoints_pull(
    repo: Annotated[str, typer.Argument(metavar="REPO", help="Hub model repo: OWNER/NAME.")],
    revision: Annotated[str | None, typer.Option(help="Branch, tag or commit.")] = None,
) -> None:
    """Download a pushed checkpoint and register it (export it to render with it)."""
    with one_line_errors():
        from flows.training.hub import pull_checkpoint

        cid = pull_checkpoint(repo, revision=revision)
    out.print(f"[bold green]pulled[/] {repo} as checkpoint {cid}", highlight=False)


@checkpoints_app.command("calibrate")
def checkpoints_calibrate(
    folder: Annotated[
        Path, typer.Argument(metavar="DIR", help="Pipeline folder (with model_index.json).")
    ],
    threshold: Annotated[
        float | None,
        typer.Option(min=0.0, help="MagCache threshold. Default: the synthetic bench's value."),
    ] = None,
    size: Annotated[str, typer.Option(help="HxW of the calibration probe.")] = "704x1280",
    frames: Annotated[int, typer.Option(min=5, help="Frames of the probe (4k + 1).")] = 125,
    steps: Annotated[int, typer.Option(min=2, help="Sampler steps calibrated.")] = 40,
) -> None:
    """Measure a checkpoint's step-cache ratios and write them to its sampling.json, so
    `run --step-cache` can use it."""
    with one_line_errors():
        from flows.runtime.errors import InputError
        from generator.calibration import calibrate_pipeline
        from generator.sampling import STEP_CACHE_THRESHOLD

        if not (folder / "model_index.json").is_file():
            raise InputError(f"{folder}: not a pipeline folder (no model_index.json)", field="DIR")
        try:
            h, w = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise InputError(
                f"--size must be HxW (e.g. 704x1280), got {size!r}", field="size"
            ) from None
        if frames % 4 != 1:
            raise InputError(f"--frames must be 4k + 1 (e.g. 125), got {frames}", field="frames")
        if threshold is not None and not math.isfinite(threshold):
            raise InputError(
                f"--threshold must be a finite number, got {threshold}", field="threshold"
            )
        path = calibrate_pipeline(
            folder,
            STEP_CACHE_THRESHOLD if threshold is None else threshold,
            h,
            w,
            num_frames=frames,
            steps=steps,
        )
    out.print(f"[bold green]calibrated[/] {path}", highlight=False)
