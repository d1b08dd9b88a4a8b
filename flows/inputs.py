"""Validate a job's inputs cheaply, before any model is loaded or any job row is written."""

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from flows.avatar import check_avatar
from flows.errors import InputError
from flows.render import RENDERERS
from flows.script import Script, parse_script
from flows.settings import Settings
from flows.speech import parse_voice, probe_audio
from storage import sha256_file

PLANNERS = ("rule", "mllm")
# Bump when a change to the pipeline must invalidate cached steps.
PIPELINE_VERSION = "1"
# Faster than any TTS voice speaks: a cheap upper bound on speech length before synthesis.
FAST_WORDS_PER_SECOND = 4.0


@dataclass(frozen=True)
class JobOptions:
    """What the caller chose (CLI flags, SDK arguments, Prefect UI parameters)."""

    renderer: str = "animatic"
    planner: str = "rule"
    voice: str | None = None  # overrides the script's voice
    checkpoint: str | None = None
    segment_seconds: float | None = None
    continuity_frames: int = 1
    steps: int | None = None  # denoising steps (actavatar); None = AVATAR_FLOW_RENDER_STEPS


@dataclass(frozen=True)
class JobInputs:
    script: Script
    options: JobOptions
    avatar_sha: str
    audio_sha: str | None
    input_key: str  # content hash of everything that determines the output

    @property
    def voice(self) -> str:
        return self.options.voice or self.script.voice

    @property
    def segment_seconds(self) -> float:
        return self.options.segment_seconds or self.script.segment_seconds or 5.0


def _hash_json(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _llm_configured() -> bool:
    """An endpoint or a key is set, by the same rules the planner itself reads them."""
    from planners import MLLMSettings

    llm = MLLMSettings()
    return bool(llm.base_url) or llm.api_key.get_secret_value() not in ("", "EMPTY")


def prepare_inputs(script_path: str | Path, options: JobOptions, settings: Settings) -> JobInputs:
    """Parse and check everything; raises InputError (exit code 2) on the first problem."""
    script = parse_script(script_path)
    spath = str(script_path)
    if options.renderer not in RENDERERS:
        raise InputError(
            f"unknown renderer '{options.renderer}' (one of: {', '.join(RENDERERS)})",
            field="renderer",
        )
    if options.planner not in PLANNERS:
        raise InputError(
            f"unknown planner '{options.planner}' (one of: {', '.join(PLANNERS)})", field="planner"
        )
    if options.renderer == "actavatar":
        ckpt = options.checkpoint or (str(settings.checkpoint) if settings.checkpoint else None)
        if not ckpt or not (Path(ckpt) / "model_index.json").is_file():
            raise InputError(
                f"the actavatar renderer needs a pipeline directory with model_index.json, "
                f"got {ckpt!r}",
                field="checkpoint",
            )
        if script.width % 32 or script.height % 32:
            raise InputError(
                f"{script.width}x{script.height}: the actavatar renderer needs multiples "
                "of 32 (VAE stride 16 x patch 2)",
                file=spath,
                field="resolution",
            )
    c = options.continuity_frames
    if not (c == 0 or (1 <= c <= 33 and c % 4 == 1)):
        raise InputError(
            f"continuity must be 0 or 1, 5, 9, ... 33 frames (1 + 4k, one latent frame "
            f"per 4 video frames), got {c}",
            field="continuity",
        )
    if options.steps is not None and not 1 <= options.steps <= 200:
        raise InputError(f"steps must be between 1 and 200, got {options.steps}", field="steps")
    if options.planner == "mllm" and not _llm_configured():
        raise InputError(
            "the mllm planner needs AVATAR_FLOW_LLM_BASE_URL or OPENAI_API_KEY", field="planner"
        )
    if options.voice is not None:
        parse_voice(options.voice, file=spath)
    if script.audio is None:
        voice = parse_voice(options.voice or script.voice, file=spath)
        if voice.engine == "openai" and settings.openai_api_key is None:
            raise InputError(
                "voice openai:* needs OPENAI_API_KEY in the environment", file=spath, field="voice"
            )
    if (
        script.audio is None
        and len(script.words) / FAST_WORDS_PER_SECOND > settings.max_audio_seconds
    ):
        raise InputError(
            f"{len(script.words)} words would take at least "
            f"{len(script.words) / FAST_WORDS_PER_SECOND:.0f} s to speak, over the limit of "
            f"{settings.max_audio_seconds:.0f} s (AVATAR_FLOW_MAX_AUDIO_SECONDS)",
            file=spath,
            field="text",
        )
    avatar_sha = "default"
    if script.avatar is not None:
        check_avatar(script.avatar, file=spath)
        avatar_sha = sha256_file(script.avatar)
    audio_sha = None
    if script.audio is not None:
        probe_audio(script.audio, max_seconds=settings.max_audio_seconds, file=spath)
        audio_sha = sha256_file(script.audio)
    key = _hash_json(
        {
            "script": script.content_hash(),
            "avatar": avatar_sha,
            "audio": audio_sha,
            "options": asdict(options),
            "voice": options.voice or script.voice,
            "version": PIPELINE_VERSION,
        }
    )
    return JobInputs(
        script=script, options=options, avatar_sha=avatar_sha, audio_sha=audio_sha, input_key=key
    )
