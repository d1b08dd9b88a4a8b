"""The `train-stage1` / `train-stage2` flows and the checkpoint registry.

A flow checks the config (one-line errors, exit 2, before anything heavy), then runs the
trainer as a subprocess: `python -m generator.train CONFIG` on one device, `accelerate launch
--config_file X -m generator.train CONFIG` for DDP/FSDP, or torchrun with `nproc` processes
(the CPU path: accelerate's own multi-CPU launcher needs MPI). The trainer prints one JSON
event per line; the flow turns `step` events into progress and registers every `checkpoint`
event as a `Checkpoint` row (stage, step, config hash, data hash, metrics, path, sha256 of the
transformer safetensors). Training in a subprocess keeps the Prefect worker alive if a run is
killed (OOM, preemption) and lets the same code scale out; resuming is just running again
(`train.resume: auto`).

Registry operations (used by `avatar-flow checkpoints`): list, show, export as a pipeline
folder for `--renderer actavatar`, push to / pull from the Hugging Face Hub.
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
from sqlmodel import select

from flows import progress
from flows.errors import InputError
from flows.settings import get_settings
from storage import Checkpoint, session_scope

REPO_ROOT = Path(__file__).resolve().parents[1]
PUSH_FILES = (
    "train_config.json",
    "trainer_state.json",
    "audio_adapter.safetensors",
    "ema.safetensors",
)


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


def launch_command(
    config: str | Path,
    overrides: list[str] | None = None,
    accelerate_config: str | None = None,
    nproc: int | None = None,
    stop_after: int | None = None,
) -> list[str]:
    """The trainer command line: plain python, `accelerate launch`, or torchrun."""
    if accelerate_config:
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(accelerate_config),
            "-m",
            "generator.train",
        ]
    elif nproc and nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(nproc),
            "-m",
            "generator.train",
        ]
    else:
        cmd = [sys.executable, "-m", "generator.train"]
    cmd.append(str(config))
    for item in overrides or []:
        cmd += ["--set", item]
    if stop_after is not None:
        cmd += ["--stop-after", str(stop_after)]
    return cmd


# ------------------------------------------------------------------------------------- registry
def register_checkpoint(
    name: str,
    stage: str,
    step: int,
    path: str,
    sha256: str,
    config_hash: str = "",
    data_hash: str = "",
    metrics: dict[str, Any] | None = None,
) -> int:
    """Add a Checkpoint row (idempotent on path + sha256); returns its id."""
    with session_scope(get_settings().db_url) as s:
        row = s.exec(
            select(Checkpoint).where(Checkpoint.path == path, Checkpoint.sha256 == sha256)
        ).first()
        if row is None:
            row = Checkpoint(
                name=name,
                stage=stage,
                step=step,
                config_hash=config_hash,
                data_hash=data_hash,
                metrics=metrics or {},
                path=path,
                sha256=sha256,
            )
            s.add(row)
            s.flush()
        return int(row.id)


def list_checkpoints(stage: str | None = None) -> list[Checkpoint]:
    with session_scope(get_settings().db_url) as s:
        q = select(Checkpoint).order_by(Checkpoint.id)
        if stage:
            q = q.where(Checkpoint.stage == stage)
        return list(s.exec(q).all())


def get_checkpoint(ref: str | int) -> Checkpoint:
    """A checkpoint by id, or the newest one with that name."""
    with session_scope(get_settings().db_url) as s:
        row = None
        if str(ref).isdigit():
            row = s.get(Checkpoint, int(ref))
        if row is None:
            row = s.exec(
                select(Checkpoint).where(Checkpoint.name == str(ref)).order_by(Checkpoint.id.desc())
            ).first()
        if row is None:
            raise InputError(
                f"no checkpoint '{ref}' (see `avatar-flow checkpoints list`)", field="ID"
            )
        return row


def _checkpoint_base(ckpt_dir: Path) -> Any:
    from generator.train.models import resolve_base

    info = json.loads((ckpt_dir / "train_config.json").read_text())
    base = info["base"]
    spec = base["spec"] if base["spec"].startswith("preset:") else base["dir"]
    try:
        return resolve_base(spec, base.get("wav2vec"))
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(
            f"the checkpoint's base model is not available: {exc}", field="base"
        ) from None


def export_checkpoint(
    ref: str | int, out_dir: str | Path, base: str | None = None, wav2vec: str | None = None
) -> Path:
    """Write a full ActAvatar pipeline folder (for `--renderer actavatar --checkpoint DIR`).

    The VAE, umT5 and Wav2Vec2 come from the base the run trained on (recorded in the
    checkpoint), or from `base`/`wav2vec` when given (e.g. a pulled checkpoint on a new machine).
    """
    from generator.train.models import export_pipeline, resolve_base

    row = get_checkpoint(ref)
    ckpt = Path(row.path)
    if not (ckpt / "transformer").is_dir():
        raise InputError(f"checkpoint folder is missing: {ckpt}", field="ID")
    if base:
        try:
            resolved = resolve_base(base, wav2vec)
        except (FileNotFoundError, ValueError) as exc:
            raise InputError(str(exc), field="base") from None
    else:
        resolved = _checkpoint_base(ckpt)
    return export_pipeline(ckpt / "transformer", out_dir, resolved)


def _hub_token() -> str | None:
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")


def _check_repo_id(repo: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError as exc:
        raise InputError(f"bad Hugging Face repo id '{repo}': {exc}", field="REPO") from None
    if "/" not in repo:
        raise InputError(f"repo id '{repo}' needs an owner: OWNER/NAME", field="REPO")


def push_checkpoint(
    ref: str | int, repo: str, private: bool = True, token: str | None = None
) -> str:
    """Upload a checkpoint's weights and records (not the optimizer state) to a Hub model repo."""
    from huggingface_hub import HfApi

    _check_repo_id(repo)
    token = token or _hub_token()
    if not token:
        raise InputError("no Hugging Face token: set HF_TOKEN (a write token)", field="HF_TOKEN")
    row = get_checkpoint(ref)
    ckpt = Path(row.path)
    if not (ckpt / "transformer").is_dir():
        raise InputError(f"checkpoint folder is missing: {ckpt}", field="ID")
    api = HfApi(token=token)
    api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
    card = (
        f"---\nlibrary_name: diffusers\ntags: [actavatar, talking-avatar, avatar-flow]\n---\n"
        f"# {row.name} ({row.stage}, step {row.step})\n\nTrained with avatar-flow.\n\n"
        f"- config hash: `{row.config_hash}`\n- data hash: `{row.data_hash}`\n"
        f"- transformer sha256: `{row.sha256}`\n- metrics: `{json.dumps(row.metrics)}`\n"
    )
    allow = ["transformer/*", *PUSH_FILES]
    api.upload_file(
        path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo, repo_type="model"
    )
    commit = api.upload_folder(
        folder_path=str(ckpt),
        repo_id=repo,
        repo_type="model",
        allow_patterns=allow,
        commit_message=f"{row.name} {row.stage} step {row.step}",
    )
    return str(getattr(commit, "commit_url", commit))


def pull_checkpoint(repo: str, revision: str | None = None, token: str | None = None) -> int:
    """Download a pushed checkpoint into `<home>/checkpoints/<repo>` and register it."""
    from huggingface_hub import snapshot_download

    from generator.train.trainer import model_files_sha256

    _check_repo_id(repo)
    dest = get_settings().home / "checkpoints" / repo.replace("/", "--")
    try:
        snapshot_download(
            repo,
            revision=revision,
            local_dir=str(dest),
            token=token or _hub_token(),
            allow_patterns=["transformer/*", *PUSH_FILES],
        )
    except Exception as exc:  # network, auth, missing repo: one line for the user
        raise InputError(
            f"could not download {repo}: {type(exc).__name__}: {str(exc).splitlines()[0]}",
            field="REPO",
        ) from None
    if not (dest / "transformer").is_dir():
        raise InputError(
            f"{repo} holds no transformer/ folder (not an avatar-flow checkpoint)", field="REPO"
        )
    info = (
        json.loads((dest / "train_config.json").read_text())
        if (dest / "train_config.json").is_file()
        else {}
    )
    state = (
        json.loads((dest / "trainer_state.json").read_text())
        if (dest / "trainer_state.json").is_file()
        else {}
    )
    return register_checkpoint(
        name=repo,
        stage=info.get("stage", "imported"),
        step=int(info.get("step", 0)),
        path=str(dest.resolve()),
        sha256=model_files_sha256(dest / "transformer"),
        config_hash=info.get("config_hash", ""),
        data_hash=info.get("data_hash", ""),
        metrics=state.get("metrics", {}),
    )


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
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
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


def _train(
    stage: str,
    config: str,
    overrides: list[str] | None,
    accelerate_config: str | None,
    nproc: int | None,
    stop_after: int | None,
) -> dict[str, Any]:
    cfg = check_config(config, stage, overrides)
    if accelerate_config and not Path(accelerate_config).is_file():
        raise InputError(
            f"accelerate config not found: {accelerate_config}", field="accelerate-config"
        )
    cmd = launch_command(config, overrides, accelerate_config, nproc, stop_after)
    progress.emit("train", 0, cfg.train.max_steps, "starting")
    report = run_trainer(cmd, cfg.name, stage, Path(cfg.output_dir) / "trainer.stderr.log")
    progress.emit("done", 1, 1)
    return report


@flow(name="train-stage1", log_prints=False)
def train_stage1(
    config: str,
    overrides: list[str] | None = None,
    accelerate_config: str | None = None,
    nproc: int | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Stage 1: audio adapter on the frozen backbone; registers checkpoints and the adapter."""
    return _train("stage1", config, overrides, accelerate_config, nproc, stop_after)


@flow(name="train-stage2", log_prints=False)
def train_stage2(
    config: str,
    overrides: list[str] | None = None,
    accelerate_config: str | None = None,
    nproc: int | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Stage 2: full fine-tuning with the stage-1 adapter and PACA; registers checkpoints."""
    return _train("stage2", config, overrides, accelerate_config, nproc, stop_after)


@flow(name="train", log_prints=False)
def train_both(
    stage1_config: str,
    stage2_config: str,
    stage1_overrides: list[str] | None = None,
    stage2_overrides: list[str] | None = None,
    accelerate_config: str | None = None,
    nproc: int | None = None,
) -> dict[str, Any]:
    """Both stages: stage 1, then stage 2 with the adapter stage 1 just extracted."""
    check_config(stage1_config, "stage1", stage1_overrides)
    first = _train("stage1", stage1_config, stage1_overrides, accelerate_config, nproc, None)
    if not first.get("adapter"):
        raise RuntimeError("stage 1 finished without an extracted adapter")
    second_overrides = [*(stage2_overrides or []), f"model.adapter={first['adapter']}"]
    second = _train("stage2", stage2_config, second_overrides, accelerate_config, nproc, None)
    return {"stage1": first, "stage2": second}
