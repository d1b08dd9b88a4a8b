"""Training-free fast sampling for `ActAvatarPipeline`: solver choice, guidance on an interval
of the trajectory, and MagCache-style step caching of the transformer's residual.

Every option is off by default (the 40-step UniPC sampler with three guidance predictions per
step is the reference) and each is measured against that reference before anyone turns it on.

Solvers (`make_scheduler`). Of the flow-matching samplers in diffusers 0.42 we offer:
  * `unipc` (default, the teacher's): `UniPCMultistepScheduler`, `flow_prediction`,
    `use_flow_sigmas`, order 2, `bh2`. A predictor-corrector multistep method: the corrector
    re-uses the model output already computed at the next step, so it raises the order at no
    extra evaluation. UniPC's paper shows it ahead of DPM-Solver++ at 5-10 evaluations, and it
    is what Wan ships and what the checkpoint is sampled with, which makes it the best suited
    few-step solver here: shortening its schedule changes nothing but the step count.
  * `unipc-3`: the same with order 3 (more accurate on smooth trajectories, less stable at very
    few steps under strong guidance).
  * `dpm++2m`: `DPMSolverMultistepScheduler` (DPM-Solver++(2M), flow sigmas), Wan's other
    sampler (`sample_solver='dpm++'`), the usual comparison point.
  * `euler`: first order (DPM-Solver++ of order 1 = the Euler step of the velocity on the
    same flow-sigma grid); the step-count floor, and the few-step students' sampler.
All take the pipeline scheduler's own `flow_shift`, so the sigma schedule differs only where
the solver's own spacing does.

Guidance interval (`guidance_interval=(lo, hi)`, sigma units): the three-prediction guidance
runs only for steps whose sigma lies in [lo, hi]; elsewhere the step runs one forward, the
text+audio prediction (what the guidance formula gives with both scales at 1). Guidance in a
limited interval is Kynkäänniemi et al. 2024 ("Applying guidance in a limited interval improves
sample and distribution quality"): guidance matters least at the highest and lowest noise.

Step caching (`StepCacheConfig`): MagCache (Ma et al. 2025). Over consecutive steps, the
residual the block stack adds (`out(last block) - in(first block)`) changes in magnitude by a
ratio that is a property of the model and schedule, not of the input; MagCache calibrates
those per-step ratios once, then skips the block stack while the accumulated deviation
`sum |1 - prod(ratios)|` stays under a threshold (at most `max_skip_steps` in a row, never in
the first `retention_ratio` of the steps), re-using the last computed residual.
diffusers 0.42 ships `MagCacheConfig`, but its hook counts steps by itself per cache context:
with guidance on an interval the pipeline switches between a B=3 and a B=1 context, each
context would see only part of the steps (ratios misaligned with the schedule) and never
reach its reset, leaking state into the next clip. The hooks here use the same diffusers
machinery (`HookRegistry`, `ModelHook`, `StateManager`, `cache_context`) but take the step
index and step count from the `CacheContext` the pipeline passes (0.42's
`cache_context(name, step_index=, num_inference_steps=)`), and start a fresh state whenever
the step index does not move forward.

The calibrated ratios and threshold live with the checkpoint in `sampling.json` in the
pipeline folder (`read_sampling_file` / `write_sampling_file`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.hooks.hooks import BaseState, StateManager

__all__ = [
    "SAMPLING_FILE",
    "SOLVERS",
    "STEP_CACHE_THRESHOLD",
    "ResolvedSampling",
    "SamplingOptions",
    "SamplingRequest",
    "StepCacheConfig",
    "candidate_options",
    "choose_student",
    "disable_step_cache",
    "enable_step_cache",
    "find_student",
    "forward_flops",
    "guidance_on",
    "interpolate_ratios",
    "make_scheduler",
    "read_sampling_file",
    "resolve_sampling",
    "step_cache_stats",
    "write_sampling_file",
    "write_student_measurement",
]

SAMPLING_FILE = "sampling.json"
SOLVERS = ("unipc", "unipc-3", "dpm++2m", "euler")
# The step-cache threshold the synthetic bench calibrated (docs/eval/sampling/sampling.json:
# the largest threshold with relative latent distance <= 0.05 to the uncached teacher); the
# default of `calibrate_pipeline`, whose ratios come from the checkpoint itself.
STEP_CACHE_THRESHOLD = 0.02
_HOOK = "actavatar_step_cache"


# ---------------------------------------------------------------------------------- solvers
def make_scheduler(name: str, base_config: Any) -> Any:
    """A flow-matching scheduler named `name`, with the base scheduler's flow shift."""
    from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

    cfg = dict(base_config)
    shift = float(cfg.get("flow_shift", cfg.get("shift", 5.0)))
    train_steps = int(cfg.get("num_train_timesteps", 1000))
    common = {
        "num_train_timesteps": train_steps,
        "prediction_type": "flow_prediction",
        "use_flow_sigmas": True,
        "flow_shift": shift,
    }
    if name == "unipc":
        return UniPCMultistepScheduler(**common, solver_order=2, solver_type="bh2")
    if name == "unipc-3":
        return UniPCMultistepScheduler(**common, solver_order=3, solver_type="bh2")
    if name == "dpm++2m":
        return DPMSolverMultistepScheduler(
            **common, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero"
        )
    if name == "euler":
        # first-order DPM-Solver++ (data prediction) on flow sigmas is exactly the Euler step
        # x - (sigma - sigma_next) v, on the same grid as UniPC (tested); diffusers'
        # FlowMatchEulerDiscreteScheduler spaces its grid down to sigma ~ 0.02, which wastes
        # one of 4 steps on the last 2 % of the noise.
        return DPMSolverMultistepScheduler(
            **common, algorithm_type="dpmsolver++", solver_order=1, final_sigmas_type="zero"
        )
    raise ValueError(f"unknown solver {name!r} (choose from {', '.join(SOLVERS)})")


def guidance_on(sigma: float, interval: tuple[float, float] | None) -> bool:
    """Whether the three-prediction guidance runs at noise level `sigma` (None: always)."""
    if interval is None:
        return True
    lo, hi = interval
    return lo <= sigma <= hi


def forward_flops(
    cfg: dict[str, Any], frames: int = 125, height: int = 704, width: int = 1280
) -> dict[str, float]:
    """FLOPs of one ActAvatar forward (B=1) of transformer config `cfg` on a clip of `frames`
    video frames at height x width: `full`, and `skipped` (what a step-cache skip still runs:
    patch embedding, per-token time embedding, text projection, output head). The terms of
    benchmarks/generator.py and GENERATOR.md section 5; what benchmarks and the sampling study
    project GPU time from."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    f_ff, layers, text_len = cfg["ffn_dim"], cfg["num_layers"], 512
    lat_f, lat_h, lat_w = (frames - 1) // 4 + 1, height // 16, width // 16
    n = lat_f * (lat_h // 2) * (lat_w // 2)
    outside = (
        2 * n * (256 * d + d * d + 6 * d * d)  # per-token time embedding
        + 2 * text_len * (4096 * d + d * d)  # text projection
        + 2 * n * (48 * 4 * d)
        + 2 * n * d * 192  # patch embedding + output head
    )
    blocks = (
        2 * n * layers * (4 * d * d + 2 * d * d + 2 * d * f_ff)
        + 2 * layers * 2 * d * d * text_len
        + 4 * layers * n * n * d
        + 4 * layers * n * text_len * d
    )
    na, c = cfg["audio_tokens_per_frame"], cfg["audio_token_dim"]
    feat, hid = cfg["audio_layers"] * cfg["audio_in_dim"], cfg["audio_hidden_dim"]
    adapter = (
        2 * n * layers * 2 * d * d
        + 2 * layers * lat_f * na * 2 * c * d
        + 4 * layers * n * na * d
        + 2 * lat_f * (8 * feat * hid + hid * hid + hid * na * c)
    )
    return {"full": float(outside + blocks + adapter), "skipped": float(outside), "tokens": n}


# ---------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class StepCacheConfig:
    """MagCache rule. `mag_ratios[i]`: mean |residual_i| / |residual_{i-1}| over tokens at
    step i of a `num_steps`-step schedule (interpolated to other step counts)."""

    threshold: float
    mag_ratios: tuple[float, ...]
    max_skip_steps: int = 3
    retention_ratio: float = 0.2

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError(f"step cache threshold must be >= 0, got {self.threshold}")
        if len(self.mag_ratios) < 2:
            raise ValueError("step cache needs calibrated mag_ratios (at least 2 steps)")
        if not 0.0 <= self.retention_ratio <= 1.0:
            raise ValueError(f"retention_ratio must be in [0, 1], got {self.retention_ratio}")


@dataclass(frozen=True)
class SamplingOptions:
    """What a caller may change about sampling; the defaults are the reference sampler."""

    steps: int = 40
    solver: str = "unipc"
    guidance_interval: tuple[float, float] | None = None
    step_cache: StepCacheConfig | None = None
    # None: the caller's scales (5.0 / 5.0 by default); a distilled student runs at 1.0 / 1.0
    guidance_scale: float | None = None
    audio_guidance_scale: float | None = None

    def pipeline_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `ActAvatarPipeline.__call__` for these options."""
        kw: dict[str, Any] = {
            "num_inference_steps": self.steps,
            "solver": self.solver,
            "guidance_interval": self.guidance_interval,
            "step_cache": self.step_cache,
        }
        if self.guidance_scale is not None:
            kw["guidance_scale"] = self.guidance_scale
        if self.audio_guidance_scale is not None:
            kw["audio_guidance_scale"] = self.audio_guidance_scale
        return kw

    def evaluations(self) -> int:
        """Model evaluations per clip before caching (three per guided step, one otherwise)."""
        guided = not (self.guidance_scale == 1.0 and self.audio_guidance_scale == 1.0)
        if not guided:
            return self.steps
        if self.guidance_interval is None:
            return 3 * self.steps
        sched = make_scheduler(self.solver, {"flow_shift": 5.0})
        sched.set_timesteps(self.steps)
        on = sum(guidance_on(float(s), self.guidance_interval) for s in sched.sigmas[: self.steps])
        return 3 * on + (self.steps - on)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r} (choose from {', '.join(SOLVERS)})")
        if self.guidance_interval is not None:
            lo, hi = self.guidance_interval
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"guidance_interval must be 0 <= lo <= hi <= 1, got ({lo}, {hi})")


@dataclass(frozen=True)
class SamplingRequest:
    """The sampling a render job asks for, before the checkpoint is read: what travels from the
    job options to the renderer (frozen and hashable: it is part of the loaded-renderer cache
    and of the render key). `resolve_sampling` turns it into the pipeline's arguments; the
    defaults are the reference sampler (the checkpoint's own scheduler, full guidance)."""

    steps: int = 40
    solver: str | None = None  # None: the checkpoint's scheduler
    guidance_interval: tuple[float, float] | None = None
    step_cache: bool = False  # the checkpoint's calibrated MagCache rule (sampling.json)
    fast: bool = False  # the checkpoint's distilled student (its own steps and solver)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.solver is not None and self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r} (choose from {', '.join(SOLVERS)})")
        if self.guidance_interval is not None:
            lo, hi = self.guidance_interval
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"guidance_interval must be 0 <= lo <= hi <= 1, got ({lo}, {hi})")
            object.__setattr__(self, "guidance_interval", (float(lo), float(hi)))

    @property
    def is_reference(self) -> bool:
        """True when nothing but the step count differs from the reference sampler."""
        return not self.active()

    def active(self) -> dict[str, Any]:
        """The options switched on (JSON values), for the render identity and the report."""
        data = {
            "fast": self.fast,
            "solver": self.solver,
            "guidance_interval": list(self.guidance_interval) if self.guidance_interval else None,
            "step_cache": self.step_cache,
        }
        return {k: v for k, v in data.items() if v}


@dataclass(frozen=True)
class ResolvedSampling:
    """A `SamplingRequest` read against a checkpoint: which folder renders, with what."""

    folder: Path  # the checkpoint itself, or its distilled student
    note: str  # which model renders, for the run report ("teacher" or the student and why)
    renderer_kwargs: dict[str, Any]  # ActAvatarRenderer arguments (steps, solver, scales...)


def resolve_sampling(checkpoint: str | Path, request: SamplingRequest) -> ResolvedSampling:
    """The one place a request is unpacked: the student for `fast`, the calibrated cache for
    `step_cache`, the solver and interval; a checkpoint without what is asked for is a one-line
    ValueError before any weights load."""
    folder = Path(checkpoint)
    kwargs: dict[str, Any] = {
        "num_inference_steps": request.steps,
        "solver": request.solver,
        "guidance_interval": request.guidance_interval,
    }
    note = "teacher"
    if request.fast:
        found = choose_student(folder)
        if found is None:
            raise ValueError(
                f"{folder}: no distilled student for --fast (sampling.json lists none); train "
                "one with `avatar-flow train distill CONFIG`"
            )
        folder, student, why = found
        note = (
            f"distilled student {folder} ({student['mode']}, {student['steps']} steps, "
            f"{student['evaluations_per_clip']} evaluations per clip; {why})"
        )
        kwargs.update(
            num_inference_steps=int(student["steps"]),
            solver=student.get("solver"),
            guidance_scale=float(student.get("guidance_scale", 1.0)),
            audio_guidance_scale=float(student.get("audio_guidance_scale", 1.0)),
        )
    if request.step_cache:
        cache = step_cache_from_file(read_sampling_file(folder))
        if cache is None:
            raise ValueError(
                f"{folder}: no calibrated step cache in sampling.json (calibrate it with "
                "`avatar-flow checkpoints calibrate DIR`)"
            )
        kwargs["step_cache"] = cache
    return ResolvedSampling(folder=folder, note=note, renderer_kwargs=kwargs)


def candidate_options(step_cache: StepCacheConfig | None = None) -> dict[str, SamplingOptions]:
    """The fast settings every benchmark and evaluation compares with the reference (named
    rows). `one-forward-*` rows are what a distilled student costs (scales 1: one forward per
    step); with the teacher's weights they measure cost only, not a student's quality."""
    rows = {
        "teacher": SamplingOptions(),
        "unipc-20": SamplingOptions(steps=20),
        "unipc-12": SamplingOptions(steps=12),
        "unipc-8": SamplingOptions(steps=8),
        "dpm++2m-12": SamplingOptions(steps=12, solver="dpm++2m"),
        "interval-40": SamplingOptions(guidance_interval=(0.0, 0.9)),
        "unipc-12+interval": SamplingOptions(steps=12, guidance_interval=(0.0, 0.9)),
        "one-forward-40": SamplingOptions(guidance_scale=1.0, audio_guidance_scale=1.0),
        "one-forward-8": SamplingOptions(
            steps=8, solver="euler", guidance_scale=1.0, audio_guidance_scale=1.0
        ),
        "one-forward-4": SamplingOptions(
            steps=4, solver="euler", guidance_scale=1.0, audio_guidance_scale=1.0
        ),
    }
    if step_cache is not None:
        rows["cache-40"] = SamplingOptions(step_cache=step_cache)
        rows["unipc-20+cache"] = SamplingOptions(steps=20, step_cache=step_cache)
    return rows


def interpolate_ratios(ratios: list[float] | tuple[float, ...], steps: int) -> list[float]:
    """Per-step magnitude ratios for a `steps`-step schedule from a calibration at another count.

    The residual magnitude is a smooth function of the position in the schedule, so the log
    magnitude curve is accumulated, interpolated at the new step positions and differenced:
    a ratio over one coarse step is the product of the fine ratios it spans.
    """
    n = len(ratios)
    if n == steps:
        return [float(r) for r in ratios]
    logs = [0.0]
    for r in ratios[1:]:
        logs.append(logs[-1] + math.log(max(float(r), 1e-8)))
    pos = [i / (n - 1) for i in range(n)]

    def at(x: float) -> float:
        j = min(int(x * (n - 1)), n - 2)
        w = (x - pos[j]) / (pos[j + 1] - pos[j])
        return logs[j] * (1 - w) + logs[j + 1] * w

    grid = [i / (steps - 1) for i in range(steps)] if steps > 1 else [1.0]
    out = [1.0]
    for i in range(1, steps):
        out.append(math.exp(at(grid[i]) - at(grid[i - 1])))
    return out


def read_sampling_file(folder: str | Path) -> dict[str, Any] | None:
    """The checkpoint's `sampling.json` (calibration + measured settings), or None."""
    path = Path(folder) / SAMPLING_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("version") != 1:
        raise ValueError(f"{path}: expected a mapping with version 1")
    return data


def write_sampling_file(folder: str | Path, data: dict[str, Any]) -> Path:
    """Atomically write `sampling.json` into a pipeline folder."""
    folder = Path(folder)
    path = folder / SAMPLING_FILE
    fd, tmp = tempfile.mkstemp(prefix=".sampling.", dir=folder)
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)  # mkstemp's 0600 would hide it from other users
    with os.fdopen(fd, "w") as fh:
        json.dump({"version": 1, **data}, fh, indent=1)
    os.replace(tmp, path)
    return path


def _student_rank(student: dict[str, Any]) -> tuple[int, int, int, int]:
    """Sort key of `choose_student`: measured before unmeasured; within the reference's noise
    first; then the fewest metrics worse than the reference; then the fewest evaluations."""
    evals = int(student.get("evaluations_per_clip", 10**9))
    m = student.get("measured")
    if not m:
        return (1, 0, 0, evals)
    return (0, 0 if m.get("within_noise") else 1, len(m.get("worse", [])), evals)


def choose_student(checkpoint: str | Path) -> tuple[Path, dict[str, Any], str] | None:
    """The distilled student `--fast` renders, and why: the folder itself when it is a student,
    else the best *measured* registered student (in the teacher's `sampling.json`; a student's
    `measured` record comes from the sampling study, `write_student_measurement`): one within
    the reference's noise on every metric with the fewest evaluations, else the one that fails
    the fewest metrics; students without a measurement come after, fewest evaluations first."""
    folder = Path(checkpoint)
    data = read_sampling_file(folder) or {}
    if "student" in data:
        return folder, data["student"], "the checkpoint is a distilled student"
    found = []
    for entry in data.get("students", []):
        path = Path(entry["path"])
        if not path.is_absolute():
            path = folder / path
        student = (read_sampling_file(path) or {}).get("student")
        if student is not None:
            found.append((_student_rank(student), str(path), path, student))
    if not found:
        return None
    _, _, path, student = min(found, key=lambda f: (f[0], f[1]))
    m = student.get("measured")
    of = f" of {len(found)} registered students" if len(found) > 1 else ""
    if not m:
        why = f"fewest evaluations{of}; no measured quality in sampling.json"
    elif m.get("within_noise"):
        why = (
            f"best measured student{of}: within the reference's noise on every metric "
            f"({m.get('source', 'measured')})"
        )
    else:
        worse = ", ".join(m.get("worse", [])) or "?"
        why = (
            f"best measured student{of}, but NOT within the reference's noise ({worse}; "
            f"{m.get('source', 'measured')})"
        )
    return path, student, why


def find_student(checkpoint: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The distilled student for `--fast` (`choose_student` without the reason)."""
    found = choose_student(checkpoint)
    return None if found is None else (found[0], found[1])


def write_student_measurement(student: str | Path, measured: dict[str, Any]) -> Path:
    """Record a student's measured quality in its `sampling.json` (`student.measured`):
    `within_noise` (bool), `worse` (metrics worse than the reference, e.g. "identity_err
    +0.05"), and `source` / `reference` / `metrics` as the study gives them."""
    folder = Path(student)
    data = read_sampling_file(folder) or {}
    if "student" not in data:
        raise ValueError(f"{folder}: not a distilled student (sampling.json has no student)")
    if not isinstance(measured.get("within_noise"), bool):
        raise ValueError("measured quality needs within_noise (true/false)")
    data.pop("version", None)
    data["student"] = {**data["student"], "measured": measured}
    return write_sampling_file(folder, data)


def step_cache_from_file(data: dict[str, Any] | None) -> StepCacheConfig | None:
    """The calibrated cache of a `sampling.json` (None when it has none)."""
    sc = (data or {}).get("step_cache")
    if not sc:
        return None
    return StepCacheConfig(
        threshold=float(sc["threshold"]),
        mag_ratios=tuple(float(r) for r in sc["mag_ratios"]),
        max_skip_steps=int(sc.get("max_skip_steps", 3)),
        retention_ratio=float(sc.get("retention_ratio", 0.2)),
    )


def options_to_dict(options: SamplingOptions) -> dict[str, Any]:
    data = asdict(options)
    if options.guidance_interval is not None:
        data["guidance_interval"] = list(options.guidance_interval)
    return data


# ---------------------------------------------------------------------------------- step cache
class _CacheState(BaseState):
    def __init__(self) -> None:
        self.reset()

    def reset(self, *args: Any, **kwargs: Any) -> None:
        self.residual: torch.Tensor | None = None
        self.head_input: torch.Tensor | None = None
        self.skip = False
        self.last_step: int | None = None
        self.acc_ratio = 1.0
        self.acc_err = 0.0
        self.acc_steps = 0
        self.norms: dict[int, float] = {}  # calibration: per-step mean token norm of the residual


@dataclass
class _Counters:
    """Block-stack evaluations, per context: computed and skipped forwards (times batch)."""

    computed: int = 0
    skipped: int = 0
    ratios: dict[int, list[float]] = field(default_factory=dict)  # calibration records


class _StepCacheHook(ModelHook):
    _is_stateful = True

    def __init__(
        self,
        manager: StateManager,
        config: StepCacheConfig | None,
        counters: _Counters,
        head: bool,
        tail: bool,
    ):
        super().__init__()
        self.manager, self.config, self.counters = manager, config, counters
        self.head, self.tail = head, tail

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        """End of a pipeline call (`maybe_free_model_hooks`): drop cached residuals; the
        counters survive (they are read after the call)."""
        self.manager.reset()
        return module

    def _decide(self, state: _CacheState, step: int, num_steps: int) -> bool:
        cfg = self.config
        if cfg is None or state.residual is None:
            return False
        ratios = interpolate_ratios(cfg.mag_ratios, num_steps)
        if step < int(cfg.retention_ratio * num_steps + 0.5) or step >= len(ratios):
            return False
        state.acc_ratio *= ratios[step]
        state.acc_steps += 1
        state.acc_err += abs(1.0 - state.acc_ratio)
        if state.acc_err <= cfg.threshold and state.acc_steps <= cfg.max_skip_steps:
            return True
        state.acc_ratio, state.acc_err, state.acc_steps = 1.0, 0.0, 0
        return False

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        ctx = self.manager._context
        if ctx is None or ctx.step_index is None or ctx.num_inference_steps is None:
            return self.fn_ref.original_forward(*args, **kwargs)  # not in a sampling loop
        hidden = args[0] if args else kwargs["hidden_states"]
        state: _CacheState = self.manager.get_state()
        step = int(ctx.step_index)
        if self.head:
            if state.last_step is not None and step <= state.last_step:
                state.reset()  # a new trajectory (next clip, or the same context re-entered)
            state.last_step = step
            state.skip = self._decide(state, step, int(ctx.num_inference_steps))
            state.head_input = hidden
            if state.skip:
                self.counters.skipped += hidden.shape[0]
                out = hidden + state.residual.to(hidden.device, hidden.dtype)
                return out
            self.counters.computed += hidden.shape[0]
        if state.skip:
            return hidden
        out = self.fn_ref.original_forward(*args, **kwargs)
        if self.tail:
            residual = (out.float() - state.head_input.float()).detach()
            norm = float(torch.linalg.norm(residual, dim=-1).mean())
            prev = state.norms.get(step - 1) if state.norms else None
            if prev:
                self.counters.ratios.setdefault(step, []).append(norm / prev)
            state.norms = {step: norm}
            state.residual = residual.to(out.dtype)
        return out


def enable_step_cache(transformer: torch.nn.Module, config: StepCacheConfig | None) -> _Counters:
    """Install the step cache on `transformer.blocks` (config None: record only, for
    calibration: nothing is skipped, the per-step magnitude ratios are collected).

    Returns the counters object (also at `transformer._step_cache_counters`)."""
    disable_step_cache(transformer)
    blocks = list(transformer.blocks)
    manager = StateManager(_CacheState)
    counters = _Counters()
    for i, block in enumerate(blocks):
        hook = _StepCacheHook(manager, config, counters, head=i == 0, tail=i == len(blocks) - 1)
        HookRegistry.check_if_exists_or_initialize(block).register_hook(hook, _HOOK)
    # the root registry must exist so `cache_context` reaches the block hooks' state manager
    registry = HookRegistry.check_if_exists_or_initialize(transformer)
    registry.invalidate_child_registries_cache()
    transformer._step_cache_counters = counters
    return counters


def disable_step_cache(transformer: torch.nn.Module) -> None:
    """Remove the step cache hooks (a no-op when none are installed)."""
    for block in transformer.blocks:
        registry = getattr(block, "_diffusers_hook", None)
        if registry is not None and registry.get_hook(_HOOK) is not None:
            registry.remove_hook(_HOOK, recurse=False)
    root = getattr(transformer, "_diffusers_hook", None)
    if root is not None:
        root.invalidate_child_registries_cache()
    transformer._step_cache_counters = None


def step_cache_stats(transformer: torch.nn.Module) -> dict[str, Any] | None:
    """Computed/skipped block-stack evaluations since the cache was enabled, and the
    calibration ratios (mean over every recorded trajectory) per step."""
    c = getattr(transformer, "_step_cache_counters", None)
    if c is None:
        return None
    steps = sorted(c.ratios)
    ratios = [1.0] + [sum(c.ratios[s]) / len(c.ratios[s]) for s in steps]
    return {"computed": c.computed, "skipped": c.skipped, "mag_ratios": ratios}
