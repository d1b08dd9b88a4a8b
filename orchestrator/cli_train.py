"""Training commands: `dataset build`, `train stage1|stage2`, `checkpoints ...`.

Added to the main app by `orchestrator.cli`. Inputs (folders, configs, ids) are checked
before Prefect or torch start; bad input is one line naming the file and field, exit code 2.
"""

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from orchestrator.console import one_line_errors, out, with_progress

dataset_app = typer.Typer(help="Build training datasets from talking videos.", no_args_is_help=True)
train_app = typer.Typer(
    help="Train ActAvatar: stage 1 (audio adapter), stage 2 (full, PACA), distill (students).",
    no_args_is_help=True,
)
checkpoints_app = typer.Typer(
    help="Trained checkpoints: list, show, export, push, pull.", invoke_without_command=True
)

SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config value: KEY=VALUE (repeatable).")
]
AccelOpt = Annotated[
    Path | None,
    typer.Option(
        "--accelerate-config", help="accelerate config (DDP/FSDP) for a multi-GPU launch."
    ),
]
NprocOpt = Annotated[
    int | None, typer.Option("--nproc", help="Processes on this machine via torchrun (CPU DDP).")
]
StopOpt = Annotated[
    int | None, typer.Option("--stop-after", help="Stop (checkpointed) after N steps.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


def _quiet() -> None:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


# ------------------------------------------------------------------------------------- dataset
@dataset_app.command("build")
def dataset_build(
    videos: Annotated[Path, typer.Argument(help="Folder of talking videos with sound.")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Dataset folder (default: DIR-dataset).")
    ] = None,
    planner: Annotated[str, typer.Option(help="Annotator: rule (offline) or mllm.")] = "rule",
    motion_threshold: Annotated[
        float, typer.Option(help="Stage-2 clips need at least this motion.")
    ] = 0.02,
    encoders: Annotated[
        str,
        typer.Option(
            help="VAE/umT5/Wav2Vec2 source: a Wan2.2 or ActAvatar pipeline "
            "folder, or preset:tiny (tests only)."
        ),
    ] = "preset:tiny",
    wav2vec: Annotated[
        Path | None, typer.Option(help="Wav2Vec2 folder (with a plain Wan folder).")
    ] = None,
    dwpose: Annotated[
        Path | None, typer.Option(help="DWPose whole-body ONNX model for motion scores.")
    ] = None,
    fps: Annotated[int, typer.Option(help="Clip frame rate.")] = 25,
    clip_frames: Annotated[
        int, typer.Option(help="Frames per clip (4k+1; 125 = 5 s at 25 fps).")
    ] = 125,
    bucket: Annotated[
        list[str] | None, typer.Option("--bucket", help="HxW resolution bucket (repeatable).")
    ] = None,
    text_len: Annotated[int, typer.Option(help="umT5 sequence length.")] = 512,
    as_json: JsonOpt = False,
) -> None:
    """Cut, score, transcribe, annotate and cache clips for training (resumable)."""
    _quiet()
    with one_line_errors():
        from flows.runtime.errors import InputError
        from flows.training.builder import prepare
        from flows.training.dataset import build_dataset

        buckets = None
        if bucket:
            try:
                buckets = [[int(v) for v in b.lower().split("x")] for b in bucket]
            except ValueError:
                raise InputError(
                    f"bucket must be HxW (e.g. 704x1280), got {bucket}", field="bucket"
                ) from None
        options = dict(
            videos=str(videos),
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
        )
        prepare(**options)  # one-line input errors before Prefect starts
        report = with_progress(build_dataset, **options)
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

        train_flows.check_config(config, stage, overrides)  # fail fast, before Prefect starts
        fn = {
            "stage1": train_flows.train_stage1,
            "stage2": train_flows.train_stage2,
            "distill": train_flows.train_distill,
        }[stage]
        report = with_progress(
            fn,
            config=str(config),
            overrides=overrides or None,
            accelerate_config=str(accelerate_config) if accelerate_config else None,
            nproc=nproc,
            stop_after=stop_after,
        )
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
    config: Annotated[Path, typer.Argument(help="Training YAML (stage: stage1).")],
    set_: SetOpt = None,
    accelerate_config: AccelOpt = None,
    nproc: NprocOpt = None,
    stop_after: StopOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stage 1: train the audio adapter on the frozen backbone, then extract it."""
    _train("stage1", config, set_, accelerate_config, nproc, stop_after, as_json)


@train_app.command("stage2")
def train_stage2(
    config: Annotated[Path, typer.Argument(help="Training YAML (stage: stage2).")],
    set_: SetOpt = None,
    accelerate_config: AccelOpt = None,
    nproc: NprocOpt = None,
    stop_after: StopOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stage 2: inject the adapter, add PACA, fine-tune everything on phase annotations."""
    _train("stage2", config, set_, accelerate_config, nproc, stop_after, as_json)


@train_app.command("distill")
def train_distill(
    config: Annotated[Path, typer.Argument(help="Training YAML (stage: distill).")],
    set_: SetOpt = None,
    accelerate_config: AccelOpt = None,
    nproc: NprocOpt = None,
    stop_after: StopOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Distill a teacher into a few-evaluation student (guidance folded in); exports it."""
    _train("distill", config, set_, accelerate_config, nproc, stop_after, as_json)


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
        path = calibrate_pipeline(
            folder,
            STEP_CACHE_THRESHOLD if threshold is None else threshold,
            h,
            w,
            num_frames=frames,
            steps=steps,
        )
    out.print(f"[bold green]calibrated[/] {path}", highlight=False)
