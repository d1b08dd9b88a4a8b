"""Where training weights come from and where they go: base resolution, encoders, export.

`base` is one of
  * `preset:tiny`: a tiny *plain Wan2.2* folder + tiny Wav2Vec2 folder, built offline once and
    cached (`generator.presets.build_tiny_wan_and_wav2vec_dirs`); the same code path as the
    real model, used by tests and benchmarks;
  * a Wan2.2-TI2V diffusers folder (`Wan-AI/Wan2.2-TI2V-5B-Diffusers` downloaded beforehand)
    plus `wav2vec` (a Wav2Vec2 folder);
  * an ActAvatar pipeline folder (`ActAvatarPipeline.save_pretrained`, e.g. an export).
Nothing here downloads: every path must already be on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "BaseModel",
    "export_pipeline",
    "load_encoders",
    "load_scheduler",
    "load_transformer",
    "resolve_base",
    "tiny_base_dirs",
]


@dataclass(frozen=True)
class BaseModel:
    """A resolved base: its folder, its Wav2Vec2 folder (None: inside the pipeline), its kind."""

    spec: str
    dir: Path
    wav2vec: Path | None
    kind: str  # "wan" | "actavatar"
    adapter_config: tuple[tuple[str, Any], ...] = ()  # preset adapter sizes (plain Wan has none)

    @property
    def audio_dir(self) -> Path:
        return self.wav2vec or self.dir / "audio_encoder"

    @property
    def feature_extractor_dir(self) -> Path:
        return self.wav2vec or self.dir / "audio_feature_extractor"


def tiny_base_dirs(seed: int = 0) -> tuple[Path, Path]:
    """Tiny plain-Wan and Wav2Vec2 folders, built once per machine (atomic publish)."""
    from generator.presets import build_tiny_wan_and_wav2vec_dirs, default_cache_dir

    root = default_cache_dir() / f"wan-base-{seed}"
    if not (root / "wan" / "model_index.json").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".wan-base-", dir=root.parent))
        build_tiny_wan_and_wav2vec_dirs(tmp, seed=seed)
        try:
            os.replace(tmp, root)
        except OSError:  # a concurrent builder published first
            shutil.rmtree(tmp, ignore_errors=True)
    return root / "wan", root / "wav2vec2"


def resolve_base(base: str, wav2vec: str | None = None) -> BaseModel:
    """Check that a base exists and tell a plain Wan folder from an ActAvatar pipeline."""
    if base.startswith("preset:"):
        name = base.split(":", 1)[1]
        if name != "tiny":
            raise ValueError(f"unknown preset {base!r} (only preset:tiny is built offline)")
        from generator.presets import TINY_TRANSFORMER_CONFIG

        wan, w2v = tiny_base_dirs()
        adapter = tuple(
            (k, v)
            for k, v in TINY_TRANSFORMER_CONFIG.items()
            if k.startswith("audio_") or k == "max_phases"
        )
        return BaseModel(base, wan, w2v, "wan", adapter)
    path = Path(base).expanduser()
    index = path / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{path}: not a diffusers pipeline folder (no model_index.json)")
    cls = json.loads(index.read_text()).get("_class_name", "")
    if cls == "ActAvatarPipeline":
        return BaseModel(base, path, Path(wav2vec).expanduser() if wav2vec else None, "actavatar")
    if not wav2vec:
        raise FileNotFoundError(f"{path} is a plain {cls or 'Wan'} folder: also give model.wav2vec")
    w2v = Path(wav2vec).expanduser()
    if not (w2v / "config.json").is_file():
        raise FileNotFoundError(f"{w2v}: not a Wav2Vec2 folder (no config.json)")
    return BaseModel(base, path, w2v, "wan")


def _audio_dims(base: BaseModel) -> dict[str, int]:
    cfg = json.loads((base.audio_dir / "config.json").read_text())
    return {"audio_in_dim": int(cfg["hidden_size"]), "audio_layers": int(cfg["num_hidden_layers"])}


def load_transformer(base: BaseModel, dtype: torch.dtype = torch.float32, **overrides: Any):
    """The ActAvatar transformer on CPU: Wan weights + identity adapter/PACA, or a saved one."""
    from generator.transformer_actavatar import ActAvatarTransformer3DModel

    config = {} if base.kind == "actavatar" else {**dict(base.adapter_config), **_audio_dims(base)}
    config.update({k: v for k, v in overrides.items() if v is not None})
    from diffusers.utils import logging as dlogging

    level = dlogging.get_verbosity()
    dlogging.set_verbosity_error()  # the adapter/PACA keys are missing by design (identity init)
    try:
        return ActAvatarTransformer3DModel.from_wan_pretrained(
            base.dir, subfolder="transformer", torch_dtype=dtype, **config
        )
    finally:
        dlogging.set_verbosity(level)


def load_encoders(base: BaseModel, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Tokenizer, umT5, VAE and Wav2Vec2 of a base (no transformer: caching needs none)."""
    from diffusers import AutoencoderKLWan
    from transformers import (
        AutoTokenizer,
        UMT5EncoderModel,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    return {
        "tokenizer": AutoTokenizer.from_pretrained(base.dir / "tokenizer"),
        "text_encoder": UMT5EncoderModel.from_pretrained(
            base.dir / "text_encoder", dtype=dtype, use_safetensors=True
        ).eval(),
        "vae": AutoencoderKLWan.from_pretrained(
            base.dir, subfolder="vae", dtype=torch.float32, use_safetensors=True
        ).eval(),
        "audio_encoder": Wav2Vec2Model.from_pretrained(
            base.audio_dir, dtype=torch.float32, use_safetensors=True
        ).eval(),
        "audio_feature_extractor": Wav2Vec2FeatureExtractor.from_pretrained(
            base.feature_extractor_dir
        ),
    }


def load_scheduler(base: BaseModel, flow_shift: float = 5.0):
    from diffusers import UniPCMultistepScheduler

    if (base.dir / "scheduler").is_dir():
        return UniPCMultistepScheduler.from_pretrained(base.dir, subfolder="scheduler")
    return UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        num_train_timesteps=1000,
        flow_shift=flow_shift,
    )


def build_pipeline(base: BaseModel, transformer: Any, encoders: dict[str, Any] | None = None):
    """An `ActAvatarPipeline` around a (trained) transformer and the base's other components."""
    from generator.pipeline_actavatar import ActAvatarPipeline

    encoders = encoders or load_encoders(base)
    return ActAvatarPipeline(scheduler=load_scheduler(base), transformer=transformer, **encoders)


def export_pipeline(
    transformer_dir: str | Path,
    out_dir: str | Path,
    base: BaseModel,
    encoders: dict[str, Any] | None = None,
) -> Path:
    """Write a complete pipeline folder (loadable by the `actavatar` renderer) for a trained
    transformer (`<checkpoint>/transformer`). Published atomically."""
    from generator.transformer_actavatar import ActAvatarTransformer3DModel

    out_dir = Path(out_dir)
    transformer = ActAvatarTransformer3DModel.from_pretrained(transformer_dir, use_safetensors=True)
    pipe = build_pipeline(base, transformer, encoders)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    pipe.save_pretrained(tmp, safe_serialization=True)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir
