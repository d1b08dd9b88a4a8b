"""The checkpoint registry: every checkpoint a training run writes is a `Checkpoint` row.

Used by the training flows (registration), `avatar-flow checkpoints` (list, show, export) and the
Hub transfer (`flows.training.hub`). Export writes a full ActAvatar pipeline folder that
`--renderer actavatar --checkpoint DIR` loads.
"""

import json
from pathlib import Path
from typing import Any

from sqlmodel import select

from flows.runtime.errors import InputError
from flows.runtime.settings import get_settings
from storage import Checkpoint, session_scope


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


STAGES = ("stage1", "stage2", "distill", "imported")  # what `register_checkpoint` is given


def list_checkpoints(stage: str | None = None) -> list[Checkpoint]:
    """Registered checkpoints, oldest first (only `stage`'s: an unknown stage is an error)."""
    if stage is not None and stage not in STAGES:
        raise InputError(f"unknown stage {stage!r} (one of: {', '.join(STAGES)})", field="stage")
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


def _checkpoint_base(ckpt_dir: Path, wav2vec: str | None = None) -> Any:
    """The base the checkpoint trained on; `wav2vec` (given on the command line) replaces its
    recorded Wav2Vec2 folder."""
    from generator.train.models import resolve_base

    info = json.loads((ckpt_dir / "train_config.json").read_text())
    base = info["base"]
    spec = base["spec"] if base["spec"].startswith("preset:") else base["dir"]
    try:
        return resolve_base(spec, wav2vec or base.get("wav2vec"))
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
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise InputError(f"DIR must be a folder, got the file {str(out_dir)!r}", field="DIR")
    if wav2vec and not (Path(wav2vec).expanduser() / "config.json").is_file():
        raise InputError(f"not a Wav2Vec2 folder (no config.json): {wav2vec}", field="wav2vec")
    if base:
        try:
            resolved = resolve_base(base, wav2vec)
        except (FileNotFoundError, ValueError) as exc:
            raise InputError(str(exc), field="base") from None
    else:
        resolved = _checkpoint_base(ckpt, wav2vec)
    return export_pipeline(ckpt / "transformer", out_dir, resolved)
