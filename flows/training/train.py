"""The training flows: `train-stage1`, `train-stage2`, `train` (both stages in turn) and
`train-distill` (a few-evaluation student from a teacher, `generator.train.distill`).

A flow checks the config (one-line errors, exit 2, before anything heavy), then runs the
trainer as a subprocess: `python -m generator.train CONFIG` on one device, `accelerate launch
--config_file X -m generator.train CONFIG` for DDP/FSDP, or torchrun with `nproc` processes
(the CPU path: accelerate's own multi-CPU launcher needs MPI). The trainer prints one JSON
event per line; the flow turns `step` events into progress and registers every `checkpoint`
event as a `Checkpoint` row (stage, step, config hash, data hash, metrics, path, sha256 of the
transformer safetensors). Training in a subprocess keeps the Prefect worker alive if a run is
killed (OOM, preemption) and lets the same code scale out; resuming is just running again
(`train.resume: auto`).

The registry lives in `flows.training.checkpoints`, the Hub transfer in `flows.training.hub`.
"""

import json
import os
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Any

from prefect import flow

from flows.runtime import progress
from flows.runtime.errors import InputError
from flows.runtime.lifetime import die_with_parent
from flows.training.checkpoints import register_checkpoint
from flows.training.options import TrainOptions

REPO_ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------- config
def check_config(config: str | Path, stage: str, overrides: list[str] | None = None) -> Any:
    """Load and check a training config for `stage`; every problem is an InputError."""
    from generator.train.config import ConfigError, load_config
    from generator.train.data import find_cache_dir

    try:
        cfg = load_config(config, overrides)
    except ConfigError as exc:
        raise InputError(exc.detail, file=exc.file, field=exc.field) from None
    if cfg.stage != stage:
        raise InputError(
            f"this is a {cfg.stage} config; use `avatar-flow train {cfg.stage}`",
            file=str(config),
            field="stage",
        )
    try:
        find_cache_dir(cfg.data.dataset)
    except FileNotFoundError as exc:
        raise InputError(str(exc), file=str(config), field="data.dataset") from None
    if (
        stage == "distill"
        and not (Path(cfg.distill.teacher) / "transformer" / "config.json").is_file()
    ):
        raise InputError(
            f"not an ActAvatar pipeline or checkpoint folder (no transformer/config.json): "
            f"{cfg.distill.teacher}",
            file=str(config),
            field="distill.teacher",
        )
    if stage == "stage2" and not Path(cfg.model.adapter).is_file():
        raise InputError(
            f"adapter not found: {cfg.model.adapter}", file=str(config), field="model.adapter"
        )
    base = cfg.model.base
    if not base.startswith("preset:") and not (Path(base) / "model_index.json").is_file():
        raise InputError(
            f"not a diffusers pipeline folder: {base}", file=str(config), field="model.base"
        )
    return cfg


def check_launch(options: TrainOptions) -> None:
    """The launcher's files, checked with the config before Prefect starts (where the run
    starts: the paths are that machine's); the counts are checked by TrainOptions."""
    accel = options.accelerate_config
    if accel is None:
        return
    if not Path(accel).is_file():
        raise InputError(f"accelerate config not found: {accel}", field="accelerate_config")
    import yaml

    try:
        data = yaml.safe_load(Path(accel).read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(
            f"not a YAML accelerate config: {accel} ({type(exc).__name__})",
            field="accelerate_config",
        ) from None
    if not isinstance(data, dict):
        raise InputError(
            f"not an accelerate config (a YAML mapping): {accel}", field="accelerate_config"
        )


def launch_command(options: TrainOptions) -> list[str]:
    """The trainer command line: plain python, `accelerate launch`, or torchrun."""
    if options.accelerate_config:
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(options.accelerate_config),
            "-m",
            "generator.train",
        ]
    elif options.nproc and options.nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(options.nproc),
            "-m",
            "generator.train",
        ]
    else:
        cmd = [sys.executable, "-m", "generator.train"]
    cmd.append(str(options.config))
    for item in options.overrides:
        cmd += ["--set", item]
    if options.stop_after is not None:
        cmd += ["--stop-after", str(options.stop_after)]
    return cmd


# ------------------------------------------------------------------------------------- running
def _drain(stream: Any, sink: deque) -> None:
    for line in stream:
        sink.append(line)


def run_trainer(
    cmd: list[str], name: str, stage: str, log_path: Path | None = None
) -> dict[str, Any]:
    """Run the trainer, stream its JSON events into progress and the registry; the summary."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    stderr_tail: deque = deque(maxlen=200)
    checkpoints: list[int] = []
    summary: dict[str, Any] = {}
    error: str | None = None
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=die_with_parent(),  # the trainer (and its launcher's ranks) end with us
    )
    drain = threading.Thread(target=_drain, args=(proc.stderr, stderr_tail), daemon=True)
    drain.start()
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = ev.get("event")
        if kind == "start":
            progress.emit("train", ev["step"], ev["max_steps"], f"{ev['processes']} process(es)")
        elif kind == "step":
            note = f"loss {ev['loss']:.4f}"
            progress.emit("train", ev["step"], ev["max_steps"], note)
        elif kind == "checkpoint":
            checkpoints.append(
                register_checkpoint(
                    name=name,
                    stage=stage,
                    step=ev["step"],
                    path=ev["path"],
                    sha256=ev["weights_sha256"],
                    config_hash=ev["config_hash"],
                    data_hash=ev["data_hash"],
                    metrics=ev.get("metrics", {}),
                )
            )
        elif kind == "done":
            summary = ev
        elif kind == "error":
            error = ev.get("message")
    rc = proc.wait()
    drain.join(timeout=5)
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("".join(stderr_tail))
    if rc == 2 and error:
        raise InputError(error)
    if rc != 0:
        tail = "".join(list(stderr_tail)[-15:]).strip()
        raise RuntimeError(f"trainer exited with {rc}:\n{tail}")
    return {**summary, "checkpoint_ids": checkpoints, "command": cmd}


def check_stage(options: TrainOptions, stage: str) -> Any:
    """Everything a stage run needs checked before it starts (its config for `stage`, the
    accelerate config); every problem is an InputError. The loaded config."""
    cfg = check_config(options.config, stage, options.overrides)
    check_launch(options)
    return cfg


def _train(stage: str, options: TrainOptions) -> dict[str, Any]:
    cfg = check_stage(options, stage)
    cmd = launch_command(options)
    progress.emit("train", 0, cfg.train.max_steps, "starting")
    report = run_trainer(cmd, cfg.name, stage, Path(cfg.output_dir) / "trainer.stderr.log")
    progress.emit("done", 1, 1)
    return report


@flow(name="train-stage1", log_prints=False)
def train_stage1(options: TrainOptions) -> dict[str, Any]:
    """Stage 1: audio adapter on the frozen backbone; registers checkpoints and the adapter.

    Args:
        options: The stage's config, overrides and launcher; every field is described in the
            form.
    """
    return _train("stage1", options)


@flow(name="train-stage2", log_prints=False)
def train_stage2(options: TrainOptions) -> dict[str, Any]:
    """Stage 2: full fine-tuning with the stage-1 adapter and PACA; registers checkpoints.

    Args:
        options: The stage's config, overrides and launcher; every field is described in the
            form.
    """
    return _train("stage2", options)


@flow(name="train-distill", log_prints=False)
def train_distill(options: TrainOptions) -> dict[str, Any]:
    """Distillation: a guidance-distilled or few-step student from a teacher checkpoint;
    registers its checkpoints (stage `distill`) and exports the student pipeline folder.

    Args:
        options: The stage's config, overrides and launcher; every field is described in the
            form.
    """
    return _train("distill", options)


@flow(name="train", log_prints=False)
def train_both(stage1: TrainOptions, stage2: TrainOptions) -> dict[str, Any]:
    """Both stages: stage 1, then stage 2 with the adapter stage 1 just extracted.

    Args:
        stage1: Stage 1's config, overrides and launcher.
        stage2: Stage 2's (its `model.adapter` is set to the adapter stage 1 extracted).
    """
    for name, options in (("stage1", stage1), ("stage2", stage2)):
        if options.stop_after is not None:
            raise InputError(
                "stop_after stops one stage; run train-stage1 or train-stage2 for it",
                field=f"{name}.stop_after",
            )
    check_stage(stage1, "stage1")
    first = _train("stage1", stage1)
    if not first.get("adapter"):
        raise RuntimeError("stage 1 finished without an extracted adapter")
    adapter = f"model.adapter={first['adapter']}"
    second = _train("stage2", stage2.model_copy(update={"overrides": [*stage2.overrides, adapter]}))
    return {"stage1": first, "stage2": second}
