"""Validate a job's inputs cheaply, before any model is loaded or any job row is written."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from flows.runtime.errors import InputError
from flows.runtime.settings import Settings
from flows.video.avatar import check_avatar
from flows.video.given_plan import read_plan_file
from flows.video.options import JobOptions, out_dir_for
from flows.video.render import renderer_overlap
from flows.video.script import Script, parse_script
from flows.video.segments import max_content_frames
from flows.video.speech import parse_voice, probe_audio
from storage import sha256_file

# Bump when a change to the pipeline must invalidate cached steps.
PIPELINE_VERSION = "1"
# Faster than any TTS voice speaks: a cheap upper bound on speech length before synthesis.
FAST_WORDS_PER_SECOND = 4.0


@dataclass(frozen=True)
class JobInputs:
    script: Script
    options: JobOptions  # resolved: environment defaults filled in
    avatar_sha: str
    audio_sha: str | None
    input_key: str  # content hash of everything that determines the output

    @property
    def voice(self) -> str:
        return self.options.voice or self.script.voice

    @property
    def segment_seconds(self) -> float:
        return self.options.segment_seconds or self.script.segment_seconds or 5.0

    def out_dir(self, settings: Settings) -> Path:
        """Where this job writes (`options.out`, else the one default rule)."""
        return out_dir_for(self.script.path, self.options, self.input_key, settings)


def _hash_json(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _llm_configured() -> bool:
    """An endpoint or a key is set, by the same rules the planner itself reads them."""
    from planners import MLLMSettings

    llm = MLLMSettings()
    return bool(llm.base_url) or llm.api_key.get_secret_value() not in ("", "EMPTY")


def longest_render_frames(script: Script, options: JobOptions) -> int:
    """Frames of the longest segment render: the largest 4k+1 within segment_seconds."""
    seconds = options.segment_seconds or script.segment_seconds or 5.0
    overlap = renderer_overlap(options.renderer, options.continuity)
    return max_content_frames(seconds, script.fps, overlap) + overlap


def _check_checkpoint_limits(ckpt: str, script: Script, options: JobOptions) -> None:
    """Refuse a resolution or segment length the checkpoint's RoPE table cannot position, before
    speech synthesis (diffusers would fail deep inside the first render)."""
    from generator.limits import checkpoint_limits

    try:
        limits = checkpoint_limits(ckpt)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise InputError(str(exc), field="checkpoint") from None
    frames = longest_render_frames(script, options)
    problem = limits.check(script.height, script.width, frames)
    if problem:
        hint = ""
        if frames > limits.max_frames:
            hint = " (shorten segments with --segment-seconds)"
        raise InputError(problem + hint, file=str(script.path), field="checkpoint")


def _check_sampling(ckpt: str, options: JobOptions) -> None:
    """A distilled student for --fast and a calibration for --step-cache, before any work."""
    from generator.sampling import find_student, read_sampling_file, step_cache_from_file

    try:
        student = find_student(ckpt) if options.fast else True
        cache = step_cache_from_file(read_sampling_file(ckpt)) if options.step_cache else True
    except ValueError as exc:  # a malformed sampling.json
        raise InputError(str(exc), field="checkpoint") from None
    if student is None:
        raise InputError(
            f"{ckpt}: no distilled student for --fast (its sampling.json lists none); "
            "train one with `avatar-flow train distill CONFIG`",
            field="fast",
        )
    if cache is None:
        raise InputError(
            f"{ckpt}: no calibrated step cache in sampling.json for --step-cache",
            field="step_cache",
        )


def check_option_paths(options: JobOptions) -> None:
    """The files an option names, checked where the job runs (a path given to a deployment is
    the worker's): a checkpoint the caller gives is a pipeline folder whatever the renderer,
    a given plan is a readable plan. `prepare_inputs` runs this; a batch runs it once for the
    options every row shares, before any row."""
    ckpt = options.checkpoint
    if ckpt is not None and not (Path(ckpt).expanduser() / "model_index.json").is_file():
        raise InputError(
            f"checkpoint must be a pipeline folder with model_index.json, got {ckpt!r}",
            field="checkpoint",
        )
    if options.plan is not None:
        read_plan_file(options.plan)  # missing file, bad JSON or a malformed phase: stop now


def prepare_inputs(script_path: str | Path, options: JobOptions, settings: Settings) -> JobInputs:
    """Parse and check everything; raises InputError (exit code 2) on the first problem."""
    script = parse_script(script_path)
    spath = str(script_path)
    check_option_paths(options)  # before `resolved()`: the caller's own checkpoint
    options = options.resolved(settings)
    if options.renderer == "actavatar":
        ckpt = options.checkpoint
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
        _check_checkpoint_limits(ckpt, script, options)
        _check_sampling(ckpt, options)
    elif options.fast or options.step_cache or options.solver or options.guidance_interval:
        raise InputError(
            "--fast, --solver, --guidance-interval and --step-cache need --renderer actavatar",
            field="renderer",
        )
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
            "options": options.key_values(),
            "voice": options.voice or script.voice,
            "version": PIPELINE_VERSION,
        }
    )
    return JobInputs(
        script=script, options=options, avatar_sha=avatar_sha, audio_sha=audio_sha, input_key=key
    )
