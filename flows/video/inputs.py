"""Validate a job's inputs cheaply, before any model is loaded or any job row is written."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from flows.runtime.errors import InputError
from flows.runtime.settings import Settings
from flows.video.avatar import check_avatar
from flows.video.finish.inputs import check_finishing
from flows.video.given_plan import read_plan_file
from flows.video.options import JobOptions, out_dir_for
from flows.video.renderers import CheckContext, get_renderer_spec, job_continuity
from flows.video.script import Script, parse_script
from flows.video.segments import LATENT_EXTRA, max_content_frames
from flows.video.speech import parse_voice, probe_audio
from planners.registry import get_planner_spec
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


def longest_render_frames(script: Script, options: JobOptions) -> int:
    """Frames of the longest segment render: the largest 4k+1 within segment_seconds."""
    seconds = options.segment_seconds or script.segment_seconds or 5.0
    c = job_continuity(options.renderer, options.continuity, options.continuity_mode)
    room = c.frames + (LATENT_EXTRA if c.latent else 0)  # a latent hand-off: up to 3 more
    return max_content_frames(seconds, script.fps, room) + room


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
    if options.brand is not None:  # a brand kit given as an option (a script's own is read later)
        from flows.video.finish.brand import load_brand

        load_brand(Path(options.brand).expanduser())
    if options.music is not None:
        from flows.video.finish.inputs import check_music

        check_music(Path(options.music).expanduser(), file=None)


def prepare_inputs(script_path: str | Path, options: JobOptions, settings: Settings) -> JobInputs:
    """Parse and check everything; raises InputError (exit code 2) on the first problem."""
    script = parse_script(script_path, options.variables)
    spath = str(script_path)
    check_option_paths(options)  # before `resolved()`: the caller's own checkpoint
    options = options.resolved(settings)
    renderer = get_renderer_spec(options.renderer)
    renderer.check_job(
        CheckContext(
            checkpoint=options.checkpoint,
            width=script.width,
            height=script.height,
            longest_frames=longest_render_frames(script, options),
            sampling=options.sampling(settings.render_steps),
            script_file=spath,
            continuity_mode=options.continuity_mode,
        )
    )
    unconfigured = get_planner_spec(options.planner).unconfigured()
    if unconfigured:
        raise InputError(unconfigured, field="planner")
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
    finish_key = check_finishing(script, options)  # brand kit, music: bad files stop here
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
            **({"finish": finish_key} if finish_key else {}),
        }
    )
    return JobInputs(
        script=script, options=options, avatar_sha=avatar_sha, audio_sha=audio_sha, input_key=key
    )
