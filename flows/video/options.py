"""The job options contract: every option a video job takes, with its default, description and
validation, in one pydantic model.

`JobOptions` is the `produce-video` flow's `options` parameter (the Prefect UI's run form shows
each field with its description), and everything else that takes job options is derived from it
or checked against it by `tests/flows/test_options_contract.py`:

- `avatar-flow run` has one `--option` per field (help text and default read from here);
- `avatar-flow batch` has one per field but the per-row `out`, `plan` and `webhook` (its rows'
  defaults, with the same help and defaults);
- `Studio.produce` has one keyword argument per field;
- a batch manifest's reserved columns are `id script template` plus the field names, and a row's
  cells are validated by this model;
- the batch "already done" rule compares `JobInputs.input_key`, which hashes `key_values()`.

Adding an option: its one definition is a field here (type, default, `description=`, and a
`field_validator` if it needs more than its type), listed in `NOT_IN_KEY` if it cannot change the
video (like `force`). The Prefect form, the manifest columns, the row validation and the input key
follow by themselves. The typed signatures written by hand get one line each: its typer alias in
`orchestrator/job_options.py` (help read from the field), `avatar-flow run` and `avatar-flow
batch` (default read from the field; each also passes it to `JobOptions.parse`) and
`Studio.produce`; the contract test fails until they do. Then read the value where the job uses it (`options.<name>`).

Defaults that come from the environment (`checkpoint`, `steps`) are `None` here and filled by
`resolved()`, so a run from the UI, the CLI and the SDK resolves them the same way.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flows.runtime.contract import validation_input_error
from flows.runtime.errors import InputError
from flows.video.finish.settings import CAPTION_MODES, parse_loudness, parse_variables
from flows.video.renderers import CONTINUITY_MODES, renderer_names
from generator.sampling import SamplingRequest
from planners.registry import planner_names


def _enum(names: Callable[[], tuple[str, ...]]) -> Callable[[dict[str, Any]], None]:
    """A field's JSON-schema `enum`, read from a registry when the schema is built, so a
    plugin's renderer or planner is a choice in the Prefect form too."""

    def extra(schema: dict[str, Any]) -> None:
        schema["enum"] = list(names())

    return extra


SOLVERS = ("unipc", "unipc-3", "dpm++2m", "euler")  # generator.sampling.SOLVERS (checked by a test)
# Options left out of the job's input key, so a job is found again whatever their values: those
# that do not change the finished video, and `plan`, which makes a new plan version of the same
# job (recorded in PlanVersion; a batch row with a plan always runs, its segments cached).
NOT_IN_KEY = ("out", "force", "webhook", "plan", "replan", "strict")


class JobOptions(BaseModel):
    """What the caller chose for one video job (CLI flags, SDK arguments, Prefect UI form,
    batch manifest columns)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    out: str | None = Field(
        None,
        description="Output folder. Default: <AVATAR_FLOW_HOME>/outputs/<script name>-<8 hex of "
        "the job's input key> (the same rule for CLI, SDK and Prefect runs).",
    )
    renderer: str = Field(
        "animatic",
        description="Renderer: animatic (CPU preview), actavatar (the diffusion model, needs a "
        "checkpoint), or one a plugin registers (entry-point group avatar_flow.renderers).",
        json_schema_extra=_enum(renderer_names),
    )
    planner: str = Field(
        "rule",
        description="Planner: rule (offline), mllm (OpenAI-compatible endpoint from the "
        "environment), or one a plugin registers (entry-point group avatar_flow.planners).",
        json_schema_extra=_enum(planner_names),
    )
    voice: str | None = Field(
        None, description="Override the script's voice: piper, piper:<voice>, openai:<voice>."
    )
    checkpoint: str | None = Field(
        None,
        description="ActAvatar pipeline folder for the actavatar renderer. Default: "
        "AVATAR_FLOW_CHECKPOINT.",
    )
    segment_seconds: float | None = Field(
        None,
        description="Longest segment in seconds. Default: the script's segment_seconds, else 5.",
    )
    steps: int | None = Field(
        None,
        description="Denoising steps per segment (actavatar), 1-200. Default: "
        "AVATAR_FLOW_RENDER_STEPS (40).",
    )
    continuity: int = Field(
        1,
        description="Frames of the previous segment the next one continues from (actavatar): "
        "0 = restart from the avatar, 1 = the TI2V rule, 5/9/... = more (1 + 4k, at most 33).",
    )
    continuity_mode: str | None = Field(
        None,
        description="How a segment takes the previous one's last shown frames: latent (its "
        "own latents, kept in the segment cache: no decode and re-encode at the join, so no "
        "colour shift there) or pixels (its decoded frames as PNGs, encoded again). Default: "
        "the renderer's (latent for actavatar; the animatic does not continue).",
        json_schema_extra={"enum": [*CONTINUITY_MODES, None]},  # None: the form may send null
    )
    color_anchor: bool = Field(
        False,
        description="Match each segment's colour statistics (per-channel mean and spread) to "
        "the avatar image after rendering: a cheap post-process against colour drift over "
        "long videos.",
    )
    plan: str | None = Field(
        None,
        description="A plan.json to use instead of planning (e.g. one edited in `avatar-flow "
        "review`). Checked against the job's words with the planner's own rules before "
        "anything renders; only the segments whose inputs it changes are rendered again. It "
        "is a new plan version of the same job, so it is not part of the job's input key.",
    )
    fast: bool = Field(
        False,
        description="Render with the checkpoint's distilled student (one forward per step, e.g. "
        "8 or 4 steps instead of 40 x 3 guidance predictions); a checkpoint without one is an "
        "error. The run report says which model rendered.",
    )
    solver: str | None = Field(
        None,
        description="Flow-matching solver for fewer steps (actavatar): unipc (the default "
        "sampler), unipc-3, dpm++2m or euler. Default: the checkpoint's scheduler.",
        json_schema_extra={"enum": [*SOLVERS, None]},  # None: the form may send null
    )
    guidance_interval: str | None = Field(
        None,
        description="Run text/audio guidance only while the noise level sigma is in LO,HI "
        "(e.g. 0,0.9); other steps take one forward instead of three (actavatar).",
    )
    step_cache: bool = Field(
        False,
        description="Skip transformer steps by the checkpoint's calibrated MagCache rule "
        "(its sampling.json); an error when the checkpoint has no calibration (actavatar).",
    )
    force: bool = Field(False, description="Recompute every step instead of reusing results.")
    replan: bool = Field(
        False,
        description="Ask the planner again instead of reusing the cached plan (speech, words "
        "and segments whose inputs stay the same still come from the cache).",
    )
    strict: bool = Field(
        False,
        description="With the mllm planner: fail with exit code 3 instead of falling back to "
        "the rule planner when the model gives no valid plan (for batch users who want to know).",
    )
    webhook: str | None = Field(
        None,
        description="URL POSTed an HMAC-signed JSON body when the job finishes or fails.",
    )
    # Finishing (flows/video/finish): changing these re-runs only the finishing step.
    variables: dict[str, str] | None = Field(
        None,
        description="Values for a template script's {{ name }} placeholders (CLI: --var "
        "name=Ada, repeatable). Each filled script is its own job.",
    )
    brand: str | None = Field(
        None,
        description="Brand kit YAML (logo, intro/outro clips, lower third, music). Default: "
        "the script's `brand:` key.",
    )
    music: str | None = Field(
        None,
        description="Background music file mixed under the speech and ducked while the speaker "
        "talks. Default: the script's `music:` key, else the brand kit's.",
    )
    music_volume: float = Field(
        -8.0,
        description="Music level in the pauses, in dB relative to the speech (-40 to 0); it "
        "ducks 15 dB further under words.",
    )
    loudness: str = Field(
        "web",
        description="Target loudness of the final mix (ITU-R BS.1770, true peak under -1 dBTP): "
        "web or podcast (-16 LUFS), streaming (-14), broadcast (-23, EBU R128), a number of "
        "LUFS, or off.",
    )
    burn_captions: str = Field(
        "off",
        description="Burn captions into the picture: off, lines, or words (the spoken word "
        "highlighted). The SRT/VTT files are written either way.",
        json_schema_extra={"enum": list(CAPTION_MODES)},
    )
    chapters: bool = Field(
        True,
        description="Chapters from the script's headings in the MP4 and as chapters.txt.",
    )

    @field_validator("renderer")
    @classmethod
    def _known_renderer(cls, v: str) -> str:
        names = renderer_names()
        if v not in names:
            raise ValueError(f"unknown renderer '{v}' (one of: {', '.join(names)})")
        return v

    @field_validator("planner")
    @classmethod
    def _known_planner(cls, v: str) -> str:
        if v not in planner_names():
            raise ValueError(f"unknown planner '{v}' (one of: {', '.join(planner_names())})")
        return v

    @field_validator("segment_seconds")
    @classmethod
    def _positive_seconds(cls, v: float | None) -> float | None:
        if v is not None and not 0 < v <= 60:
            raise ValueError(f"segment_seconds must be above 0 and at most 60, got {v}")
        return v

    @field_validator("steps")
    @classmethod
    def _steps_range(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= 200:
            raise ValueError(f"steps must be between 1 and 200, got {v}")
        return v

    @field_validator("continuity")
    @classmethod
    def _continuity_frames(cls, v: int) -> int:
        if not (v == 0 or (1 <= v <= 33 and v % 4 == 1)):
            raise ValueError(
                f"continuity must be 0 or 1, 5, 9, ... 33 frames (1 + 4k, one latent frame "
                f"per 4 video frames), got {v}"
            )
        return v

    @field_validator("continuity_mode")
    @classmethod
    def _known_continuity_mode(cls, v: str | None) -> str | None:
        if v is not None and v not in CONTINUITY_MODES:
            raise ValueError(
                f"unknown continuity_mode '{v}' (one of: {', '.join(CONTINUITY_MODES)})"
            )
        return v

    @field_validator("solver")
    @classmethod
    def _known_solver(cls, v: str | None) -> str | None:
        if v is not None and v not in SOLVERS:
            raise ValueError(f"unknown solver '{v}' (one of: {', '.join(SOLVERS)})")
        return v

    @field_validator("guidance_interval")
    @classmethod
    def _interval(cls, v: str | None) -> str | None:
        if v is not None:
            parse_interval(v)
        return v

    @field_validator("voice")
    @classmethod
    def _known_voice(cls, v: str | None) -> str | None:
        if v is not None:
            from flows.video.speech import parse_voice  # imported only when a voice is given

            try:
                parse_voice(v)
            except InputError as exc:
                raise ValueError(exc.detail) from None
        return v

    @field_validator("out")
    @classmethod
    def _a_folder(cls, v: str | None) -> str | None:
        if v is not None:
            check_out_folder(v, "out")
        return v

    @field_validator("plan")
    @classmethod
    def _json_file(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("plan must be the path of a plan.json file")
        return v

    @field_validator("variables", mode="before")
    @classmethod
    def _variables(cls, v: Any) -> Any:
        return parse_variables(v)

    @field_validator("music_volume")
    @classmethod
    def _music_volume(cls, v: float) -> float:
        if not -40.0 <= v <= 0.0:
            raise ValueError(f"music_volume must be between -40 and 0 dB, got {v}")
        return v

    @field_validator("loudness")
    @classmethod
    def _loudness(cls, v: str) -> str:
        parse_loudness(v)
        return v

    @field_validator("burn_captions")
    @classmethod
    def _caption_mode(cls, v: str) -> str:
        if v not in CAPTION_MODES:
            raise ValueError(f"burn_captions must be one of {', '.join(CAPTION_MODES)}, got {v!r}")
        return v

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None:
            check_webhook(v)
        return v

    # ------------------------------------------------------------------ building and resolving
    @classmethod
    def parse(
        cls, *, file: str | None = None, row: int | None = None, **values: Any
    ) -> "JobOptions":
        """Build from loose values (CLI flags, SDK keywords, manifest cells); a bad value is one
        InputError naming the field (and the manifest row when given)."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise input_error(exc, file=file, row=row) from None

    def resolved(self, settings: Any) -> "JobOptions":
        """Environment defaults filled in (checkpoint, steps), as the job will use them."""
        updates: dict[str, Any] = {}
        if self.checkpoint is None and settings.checkpoint:
            updates["checkpoint"] = str(settings.checkpoint)
        if self.steps is None:
            updates["steps"] = settings.render_steps
        return self.model_copy(update=updates) if updates else self

    def sampling(self, default_steps: int = 40) -> SamplingRequest:
        """The typed sampling request the renderer gets (steps, solver, guidance interval, step
        cache, student): one frozen value, hashed into the render key, unpacked once by
        `generator.sampling.resolve_sampling`."""
        return SamplingRequest(
            steps=self.steps or default_steps,
            solver=self.solver,
            guidance_interval=parse_interval(self.guidance_interval)
            if self.guidance_interval
            else None,
            step_cache=self.step_cache,
            fast=self.fast,
        )

    def key_values(self) -> dict[str, Any]:
        """The options that change the video: hashed into the job's input key."""
        return self.model_dump(mode="json", exclude=set(NOT_IN_KEY))


def parse_interval(text: str) -> tuple[float, float]:
    """`LO,HI` (sigma, 0 <= LO <= HI <= 1) -> (lo, hi); ValueError with one line otherwise."""
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"guidance_interval must be LO,HI (e.g. 0,0.9), got {text!r}") from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"guidance_interval needs 0 <= LO <= HI <= 1, got {text!r}")
    return lo, hi


def check_webhook(url: str) -> None:
    """A webhook is an http(s) URL (a job's, and a batch's summary webhook)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"webhook must be an http:// or https:// URL, got {url!r}")


def check_out_folder(path: str | Path, field: str) -> None:
    """An output folder may be missing (it is made) or a folder, never a file: refused before
    any work (writing into it later fails after minutes of rendering)."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ValueError(f"{field} must be a folder, got the file {str(path)!r}")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{field} must be a folder, but {str(parent)!r} is a file")
            break


def option_fields() -> tuple[str, ...]:
    """The contract's field names, in declaration order."""
    return tuple(JobOptions.model_fields)


def describe(name: str) -> str:
    """A field's description: the help text of its CLI option (with the registered choices
    for the renderer and the planner, plugins included)."""
    text = JobOptions.model_fields[name].description or ""
    choices = {"renderer": renderer_names, "planner": planner_names}.get(name)
    return f"{text} Installed: {', '.join(choices())}." if choices else text


def default(name: str) -> Any:
    """A field's default: the default of its CLI option and SDK keyword."""
    return JobOptions.model_fields[name].default


def input_error(
    exc: ValidationError, *, file: str | None = None, row: int | None = None
) -> InputError:
    """The first problem of a JobOptions validation error as one InputError line (the rule
    every contract shares: `flows.runtime.contract`)."""
    return validation_input_error(exc, fields=option_fields(), file=file, row=row)


def default_out_dir(script: str | Path, input_key: str, settings: Any) -> Path:
    """The one default output folder rule (CLI, SDK, batch skip rule and Prefect runs)."""
    return settings.home / "outputs" / f"{Path(script).stem}-{input_key[:8]}"


def out_dir_for(script: str | Path, options: JobOptions, input_key: str, settings: Any) -> Path:
    """Where a job writes: `options.out` made absolute, else the default rule."""
    if options.out:
        return Path(options.out).expanduser().resolve()
    return default_out_dir(script, input_key, settings)
