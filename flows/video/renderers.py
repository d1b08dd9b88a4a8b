"""Renderers as registered specs: everything the pipeline asks of a renderer, in one record.

The options contract (choices, help, Prefect form enum), the input checks, the cached render
step (GPU slot, render key, identity), the multi-GPU worker and the review app all ask the
registry instead of comparing names. A renderer is one `RendererSpec`:

- `load(setup)`: the one loader, used in-process and by every torchrun rank;
- `uses_gpu`, `continues` (repeats the previous segment's tail: the continuity overlap),
  `continuity_modes` (how it takes that tail: `latent`, the previous segment's own latents, or
  `pixels`, its decoded frames as PNGs; the first is its default),
  `needs_checkpoint`, `supports_sampling`, `size_multiple`, `preview`;
- `check(ctx)`: extra cheap checks before any work (checkpoint limits, sampling files);
- `identity(checkpoint, sampling)` and `key_parts(job, spec)`: what goes into the render key;
- `parallel`: how one segment runs context-parallel on several GPUs (None: one device).

The two built-in renderers are defined at the bottom. Others come from Python entry points in
the group `avatar_flow.renderers` (the way pytest and Prefect find plugins), so a separate
package adds one without editing this repository:

    [project.entry-points."avatar_flow.renderers"]
    toy = "toy_renderer:SPEC"      # a RendererSpec (or a callable returning one)

Entry-point names are listed without importing them (CLI help, form enum); a plugin's module is
imported the first time its renderer is asked for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from flows.runtime.errors import InputError
from flows.video.render_job import RenderJob, segment_timeline
from flows.video.segments import SegmentSpec
from generator.render_types import Renderer
from generator.sampling import SamplingRequest
from storage import sha256_file

ENTRY_POINT_GROUP = "avatar_flow.renderers"
VAE_TEMPORAL_STRIDE = 4
CONTINUITY_MODES = ("latent", "pixels")  # latents handed on / decoded tail PNGs re-encoded


@dataclass(frozen=True)
class RenderSetup:
    """What loading a renderer takes (one loaded renderer per process and setup)."""

    checkpoint: str | None = None
    device: str | None = None  # None: the renderer's choice (CUDA when available)
    sampling: SamplingRequest = SamplingRequest()


@dataclass(frozen=True)
class CheckContext:
    """What the cheap input checks see of a job (before speech, before any model loads)."""

    checkpoint: str | None
    width: int
    height: int
    longest_frames: int  # frames of the longest segment render (4k + 1, overlap included)
    sampling: SamplingRequest
    script_file: str
    continuity_mode: str | None = None  # None: the renderer's default


@dataclass(frozen=True)
class ParallelSupport:
    """Context parallelism of one segment on `degree` GPUs (torchrun, one rank per GPU)."""

    check: Callable[[str | None, int, int], None]  # (checkpoint, render_frames, degree)
    enable: Callable[[Renderer, int], None]  # switch a loaded renderer to `degree` ranks


def _no_check(ctx: CheckContext) -> None:
    return None


def _no_key_parts(job: RenderJob, spec: SegmentSpec) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class RendererSpec:
    """One renderer, as the pipeline sees it."""

    name: str
    description: str  # one line: the CLI help and the Prefect form
    load: Callable[[RenderSetup], Renderer]
    uses_gpu: bool = False  # holds a GPU slot while it renders (when CUDA is there)
    continues: bool = False  # starts each segment from the previous one's last frames
    continuity_modes: tuple[str, ...] = ("pixels",)  # how it takes them; the first: default
    needs_checkpoint: bool = False
    supports_sampling: bool = False  # fast / solver / guidance interval / step cache
    size_multiple: int = 1  # width and height must be multiples of this
    preview: bool = False  # a cheap preview (the review app previews with it)
    check: Callable[[CheckContext], None] = _no_check
    identity: Callable[[str | None, SamplingRequest], str] | None = None
    key_parts: Callable[[RenderJob, SegmentSpec], dict[str, Any]] = _no_key_parts
    parallel: ParallelSupport | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # free-form, for plugins

    def overlap(self, continuity_frames: int) -> int:
        """Frames a segment repeats from the previous one's tail (0: no continuity)."""
        return continuity_frames if self.continues else 0

    def continuity_mode(self, requested: str | None) -> str:
        """The continuity mode a job of this renderer runs: `requested`, else the default; an
        unsupported one is an InputError (one line, exit 2) before any work."""
        if requested is None:
            return self.continuity_modes[0]
        if requested not in self.continuity_modes:
            raise InputError(
                f"the {self.name} renderer cannot continue in {requested} mode "
                f"(continuity_mode: {' or '.join(self.continuity_modes)})",
                field="continuity_mode",
            )
        return requested

    def render_identity(self, checkpoint: str | None, sampling: SamplingRequest) -> str:
        """What identifies this renderer's output (part of every render key)."""
        if self.identity is not None:
            return self.identity(checkpoint, sampling)
        return f"{self.name}:v1"

    def check_job(self, ctx: CheckContext) -> None:
        """Every cheap check of this renderer; InputError (exit code 2) on the first problem."""
        if self.needs_checkpoint and (
            not ctx.checkpoint or not (Path(ctx.checkpoint) / "model_index.json").is_file()
        ):
            raise InputError(
                f"the {self.name} renderer needs a pipeline directory with model_index.json, "
                f"got {ctx.checkpoint!r}",
                field="checkpoint",
            )
        m = self.size_multiple
        if ctx.width % m or ctx.height % m:
            raise InputError(
                f"{ctx.width}x{ctx.height}: the {self.name} renderer needs multiples of {m}",
                file=ctx.script_file,
                field="resolution",
            )
        if not self.supports_sampling and not ctx.sampling.is_reference:
            raise InputError(
                "--fast, --solver, --guidance-interval and --step-cache need --renderer "
                f"{' or --renderer '.join(sampling_renderers())} ({self.name} does not sample)",
                field="renderer",
            )
        self.continuity_mode(ctx.continuity_mode)
        self.check(ctx)


@dataclass(frozen=True)
class Continuity:
    """How a job's segments continue from each other: the context frames and the mode."""

    frames: int  # overlap frames (0: every segment starts from the avatar)
    mode: str  # latent | pixels

    @property
    def latent(self) -> bool:
        """Segments hand latents on (`flows.video.segments.latent_handoff`)."""
        return self.mode == "latent" and self.frames > 0


def job_continuity(renderer: str, frames: int, mode: str | None) -> Continuity:
    """The one rule for a job's continuity (flow, input checks, review app, `plan`)."""
    spec = get_renderer_spec(renderer)
    return Continuity(spec.overlap(frames), spec.continuity_mode(mode))


# ------------------------------------------------------------------------------- the registry
_BUILTIN: dict[str, RendererSpec] = {}
_LOADED: dict[str, RendererSpec] = {}


def register(spec: RendererSpec) -> RendererSpec:
    """Add a renderer in-process (tests, notebooks); packages use the entry-point group."""
    _BUILTIN[spec.name] = spec
    _LOADED.pop(spec.name, None)
    return spec


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def renderer_names() -> tuple[str, ...]:
    """Every renderer's name: the built-in ones, then those of installed plugins."""
    names = list(_BUILTIN)
    names += sorted(n for n in _entry_points() if n not in _BUILTIN)
    return tuple(names)


def get_renderer_spec(name: str) -> RendererSpec:
    """The spec of `name`; ValueError naming the choices when there is none."""
    if name in _BUILTIN:
        return _BUILTIN[name]
    if name in _LOADED:
        return _LOADED[name]
    ep = _entry_points().get(name)
    if ep is None:
        raise ValueError(f"unknown renderer '{name}' (one of: {', '.join(renderer_names())})")
    obj = ep.load()
    spec = obj() if callable(obj) and not isinstance(obj, RendererSpec) else obj
    if not isinstance(spec, RendererSpec) or spec.name != name:
        raise ValueError(
            f"entry point '{name}' = {ep.value} in group {ENTRY_POINT_GROUP} is not a "
            f"RendererSpec named '{name}'"
        )
    _LOADED[name] = spec
    return spec


def sampling_renderers() -> list[str]:
    """Names of the built-in renderers that take sampling options (for error messages)."""
    return [s.name for s in _BUILTIN.values() if s.supports_sampling]


def preview_renderer() -> str:
    """The renderer the review app previews with (the first built-in preview renderer)."""
    return next(s.name for s in _BUILTIN.values() if s.preview)


# ------------------------------------------------------------------------- animatic (built-in)
def _load_animatic(setup: RenderSetup) -> Renderer:
    from generator.animatic import AnimaticRenderer

    return AnimaticRenderer()


def _animatic_key_parts(job: RenderJob, sp: SegmentSpec) -> dict[str, Any]:
    """The animatic also draws captions and a timeline bar (the segment's own phases, the
    cuts), so those change its pixels."""
    t0, t1 = sp.render_start, sp.render_start + sp.render_frames / sp.fps
    return {
        "captions": [
            (w.word, w.start, w.end) for w in job.transcript.words if w.end > t0 and w.start < t1
        ],
        "timeline": [(p.text, p.start, p.end) for p in segment_timeline(job.plan.phases, t0, t1)],
        "cuts": list(job.cuts),
        "duration": job.duration,
        "title": job.title,
    }


ANIMATIC = register(
    RendererSpec(
        name="animatic",
        description="CPU preview: the avatar still, karaoke captions, the active phase",
        load=_load_animatic,
        preview=True,
        key_parts=_animatic_key_parts,
    )
)


# ------------------------------------------------------------------------ actavatar (built-in)
def latent_frames(num_frames: int) -> int:
    """Wan VAE: 4k + 1 pixel frames -> k + 1 latent frames."""
    return (num_frames - 1) // VAE_TEMPORAL_STRIDE + 1


def check_ulysses(degree: int, heads: int, num_frames: int) -> None:
    """Raise InputError unless `degree` splits the heads and the latent frames evenly."""
    if degree < 1:
        raise InputError(f"--gpus must be at least 1, got {degree}", field="gpus")
    if heads % degree:
        raise InputError(
            f"--gpus {degree} does not divide the transformer's {heads} attention "
            f"heads (Ulysses splits heads across GPUs)",
            field="gpus",
        )
    frames = latent_frames(num_frames)
    if frames % degree:
        raise InputError(
            f"--gpus {degree} does not divide the segment's {frames} latent frames "
            f"({num_frames} frames); audio attention needs whole frames per GPU",
            field="gpus",
        )


def transformer_heads(checkpoint: str) -> int:
    """Attention heads from a saved pipeline's transformer config."""
    cfg = Path(checkpoint) / "transformer" / "config.json"
    if not cfg.is_file():
        raise InputError(f"no transformer/config.json in {checkpoint}", field="checkpoint")
    return int(json.loads(cfg.read_text())["num_attention_heads"])


def _load_actavatar(setup: RenderSetup) -> Renderer:
    if not setup.checkpoint:
        raise ValueError(
            "the actavatar renderer needs --checkpoint DIR (or AVATAR_FLOW_CHECKPOINT)"
        )
    from generator.renderer_actavatar import load_actavatar_renderer

    return load_actavatar_renderer(setup.checkpoint, device=setup.device, sampling=setup.sampling)


def _check_actavatar(ctx: CheckContext) -> None:
    """The checkpoint's RoPE limits (diffusers would fail deep inside the first render) and the
    sampling files `--fast` / `--step-cache` read, before speech synthesis."""
    from generator.limits import checkpoint_limits
    from generator.sampling import resolve_sampling

    ckpt = str(ctx.checkpoint)
    try:
        limits = checkpoint_limits(ckpt)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise InputError(str(exc), field="checkpoint") from None
    problem = limits.check(ctx.height, ctx.width, ctx.longest_frames)
    if problem:
        hint = (
            " (shorten segments with --segment-seconds)"
            if ctx.longest_frames > limits.max_frames
            else ""
        )
        raise InputError(problem + hint, file=ctx.script_file, field="checkpoint")
    try:
        resolve_sampling(ckpt, ctx.sampling)
    except ValueError as exc:  # no student, no calibration, a malformed sampling.json
        text = str(exc)
        field_name = (
            "fast" if "student" in text else "step_cache" if "step cache" in text else "checkpoint"
        )
        raise InputError(text, field=field_name) from None


def _actavatar_identity(checkpoint: str | None, sampling: SamplingRequest) -> str:
    """The checkpoint's index hash and steps, plus the fast-sampling options and the
    sampling.json they read (student, calibration)."""
    if not checkpoint:
        return "actavatar:v1"
    index = Path(checkpoint) / "model_index.json"
    ident = f"actavatar:{sha256_file(index)}:{Path(checkpoint).resolve()}:steps={sampling.steps}"
    active = sampling.active()
    if active:
        ident += ":" + json.dumps(active, sort_keys=True)
        cal = Path(checkpoint) / "sampling.json"
        if cal.is_file():
            ident += f":{sha256_file(cal)}"
    return ident


def _check_actavatar_parallel(checkpoint: str | None, render_frames: int, degree: int) -> None:
    if not checkpoint:
        raise InputError("multi-GPU rendering needs a checkpoint", field="checkpoint")
    check_ulysses(degree, transformer_heads(checkpoint), render_frames)


def _enable_actavatar_parallel(renderer: Renderer, degree: int) -> None:
    from diffusers import ContextParallelConfig

    renderer.pipeline.transformer.enable_parallelism(  # type: ignore[attr-defined]
        config=ContextParallelConfig(ulysses_degree=degree)
    )


ACTAVATAR = register(
    RendererSpec(
        name="actavatar",
        description="the ActAvatar diffusion model (GPU; needs --checkpoint)",
        load=_load_actavatar,
        uses_gpu=True,
        continues=True,
        continuity_modes=CONTINUITY_MODES,  # latent by default; pixels on request
        needs_checkpoint=True,
        supports_sampling=True,
        size_multiple=32,  # VAE stride 16 x patch 2
        check=_check_actavatar,
        identity=_actavatar_identity,
        parallel=ParallelSupport(
            check=_check_actavatar_parallel, enable=_enable_actavatar_parallel
        ),
    )
)
