"""Share checkpoints through the Hugging Face Hub: push a registered checkpoint's weights and
records to a model repo, pull one back and register it (`avatar-flow checkpoints push|pull`).

The token is read from HF_TOKEN (or HUGGING_FACE_HUB_TOKEN) and never logged.
"""

import json
import os
from pathlib import Path

from flows.runtime.errors import InputError
from flows.runtime.settings import get_settings
from flows.training.checkpoints import get_checkpoint, register_checkpoint

PUSH_FILES = (
    "train_config.json",
    "trainer_state.json",
    "audio_adapter.safetensors",
    "ema.safetensors",
)


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
    row = get_checkpoint(ref)  # the checkpoint first: a token does not help a wrong id
    ckpt = Path(row.path)
    if not (ckpt / "transformer").is_dir():
        raise InputError(f"checkpoint folder is missing: {ckpt}", field="ID")
    token = token or _hub_token()
    if not token:
        raise InputError("no Hugging Face token: set HF_TOKEN (a write token)", field="HF_TOKEN")
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
