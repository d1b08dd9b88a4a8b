"""Training configuration: nested dataclasses loaded from YAML, strictly checked.

A config names the stage, the base model, the cached dataset and the optimisation and loop
settings. Unknown keys are errors with a did-you-mean hint (a typo such as `max_step` must
not silently train with the default). `--set a.b=value` overrides are parsed as YAML scalars.
The config hash covers everything that changes the weights (not output paths or logging).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "DataConfig",
    "DebugConfig",
    "DistillConfig",
    "LoopConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_hash",
    "config_to_dict",
    "load_config",
]

STAGES = ("stage1", "stage2", "distill")


class ConfigError(ValueError):
    """A bad training config; `str()` is one line naming the file and the field."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.file, self.field, self.detail = file, field, message
        parts = [p for p in (file, f"field '{field}'" if field else None) if p]
        super().__init__(f"{': '.join(parts)}: {message}" if parts else message)


@dataclass
class ModelConfig:
    """Where the weights come from. `base` is a Wan2.2-TI2V diffusers folder, an ActAvatar
    pipeline folder, or `preset:tiny` (offline tiny components for tests and benchmarks)."""

    base: str = "preset:tiny"
    wav2vec: str | None = None  # Wav2Vec2 folder; needed when `base` is a plain Wan folder
    adapter: str | None = None  # stage 2: the stage-1 adapter safetensors to inject
    reset_adapter: bool = False  # stage 1: re-initialise the adapter even if `base` has one
    reset_phase_embedding: bool | None = None  # None: True for stage 2 (PACA starts at zero)
    gradient_checkpointing: bool = True
    audio_gamma: float | None = None  # override the progressive exponent (paper: 1.5)
    # progressive audio alignment (paper): block l scales the audio residual by (l/L)**gamma;
    # False: the constant `audio_scale` of the base in every block (the ablation's base row)
    audio_progressive: bool = True
    # time-aware phase attention (beyond the paper): a zero-init logit term between each
    # frame's time and each phase token's anchor window; None keeps the base's setting.
    # The shipped stage-2 configs set it (`paper-exact-stage2.yaml` reproduces the paper)
    time_aware_phases: bool | None = None
    # attribution switches of the synthetic bench (zero-init, None keeps the base's setting):
    # a learned absolute frame-time embedding on the video tokens, and numeric anchors (a
    # learned function of each phase's window) added to that phase's text tokens
    frame_time_embedding: bool | None = None
    phase_anchor_embedding: bool | None = None
    # identity anchor (issue 20, stage 2): latent frame 0 of every training window is a clean
    # reference latent (the sink, zero-init embedding), as the renderer keeps the avatar's
    # latent in front of every segment. None keeps the base's setting (false for old bases)
    reference_sink: bool | None = None


@dataclass
class DataConfig:
    """The cached dataset (latents, text states, audio features) and how it is batched."""

    dataset: str = ""  # dataset folder (with cache/) or the cache folder itself
    batch_size: int = 1  # per device; the global batch is batch_size x processes x accumulation
    num_workers: int = 0
    text_len: int = 512  # umT5 states are zero-padded to this length (Wan's convention)
    text_dropout: float = 0.0  # per-sample probability of null text (for text guidance)
    audio_dropout: float = 0.0  # per-sample probability of no audio (for audio guidance)
    min_motion: float | None = None  # stage 2: override the dataset's stage-2 selection
    # stage 2: feed the PACA block ids of the structured prompt; False trains without them
    # (phase_ids=None: the phase embedding neither acts nor learns; the cache may lack them)
    use_phase_ids: bool = True
    # stage 2: clean leading latent frames per sample, drawn uniformly in [1, context_latents]
    # (1 = the TI2V image frame only; 3 = up to InfiniteTalk's 9-frame motion context), so the
    # model learns to continue a segment from its predecessor's tail latents
    context_latents: int = 1
    # stage 2 with model.reference_sink: the training window starts a drawn 0..sink_gap latent
    # frames after the clip's first frame, which stays the sink (windows are F - sink_gap
    # frames). 0: the sink is the window's own first frame, the first segment's layout only;
    # > 0 also trains the later segments' layout, where sink and context differ
    sink_gap: int = 0


@dataclass
class OptimConfig:
    lr: float = 5e-6
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    scheduler: str = "constant_with_warmup"  # any diffusers.optimization scheduler name
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0


@dataclass
class LoopConfig:
    max_steps: int = 1000
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"  # no | bf16 | fp16 (accelerate autocast; weights stay fp32)
    # Training noise levels: u ~ U(0, 1), sigma = s u / (1 + (s - 1) u) (Wan's shift). 5.0 is
    # Wan2.2's own (the sampler's flow_shift 5): median sigma 0.83, training spends most steps
    # at high noise where layout and motion are decided. The paper states uniform timesteps:
    # that is `timestep_shift: 1.0` (median sigma 0.5). Our default keeps Wan's; see README.
    timestep_shift: float = 5.0
    # stage 2: the context frames (not the sink, not the frames to generate) are noised to a
    # per-sample level drawn in [0, context_noise] with the clip's own noise, and the model
    # is NOT told the level (their tokens keep timestep 0); 0 = off. Why hidden: a drifting
    # context at inference is not labelled with its drift, so a level input would always be
    # 0 there and the model would learn to trust a level-0 context fully, as before; hidden,
    # it learns to treat every context as possibly off by up to the maximum and to take
    # identity from the clean sink instead. SVD's conditioning augmentation tells the level
    # because it also noises the condition at inference; we keep the hand-off exact instead.
    context_noise: float = 0.0
    # stage 2: the context frames also get a per-sample, per-channel offset of a drawn size
    # in [0, context_shift] times a standard normal (a colour shift in latent space), hidden
    # like the noise; 0 = off. Why: the sink and the context of a training clip always agree
    # in colour, so the model can learn to copy colour from either; at inference the context
    # is the previous segment's output with its colour error, and a model that copies it
    # carries the error across the join (the drift study's colour step at the first join).
    # Shifted contexts teach it to take colour from the clean sink.
    context_shift: float = 0.0
    checkpoint_every: int = 1000
    keep_checkpoints: int | None = None  # None keeps every checkpoint (the registry points at them)
    log_every: int = 1
    sample_every: int = 0  # 0: no sample renders
    sample_steps: int = 20
    sample_clips: int = 1
    ema_decay: float | None = None  # e.g. 0.999; None disables EMA
    resume: str = "auto"  # auto (latest complete checkpoint) | never | a checkpoint folder


@dataclass
class DistillConfig:
    """Stage `distill` (generator.train.distill): a student from an ActAvatar teacher.

    `mode: guidance`: one forward per step, matching the teacher's guided velocity at fixed
    scales (any solver, any step count). `mode: trajectory`: a `student_steps`-step Euler
    student whose step from sigma_k lands where the guided teacher's `teacher_steps`-step
    trajectory lands at sigma_{k+1}."""

    teacher: str = ""  # ActAvatar pipeline folder, or a folder with transformer/ (checkpoint)
    mode: str = "trajectory"  # guidance | trajectory
    student_steps: int = 4
    teacher_steps: int = 40
    guidance_scale: float = 5.0
    audio_guidance_scale: float = 5.0
    # None: Wan's default negative prompt (as the pipeline); "": zero text states (training's
    # dropped text; for bases without a text encoder)
    negative_prompt: str | None = None
    teacher_batched: bool = True  # the teacher's three guidance predictions as one B=3 forward
    export: bool = True  # write <output_dir>/pipeline (student) at the end of the run
    # trajectory mode: a trajectory pool (`distill.write_trajectory_pool`, safetensors) of the
    # judged sampler's latents on the student's grid; segments start on the teacher's own
    # trajectory and the teacher is not run while training. "": noised data, on-the-fly targets
    pool: str = ""
    # identity term: weight x relative squared error of the student's x0 prediction's identity
    # read-out (latent channels [start, end)) against the clean reference frame's; 0 = off
    identity_weight: float = 0.0
    identity_channels: list[int] | None = None


@dataclass
class DebugConfig:
    dump_grads_step: int | None = None  # write the gradients of this step (tests, DDP checks)


@dataclass
class TrainConfig:
    """One training run. `stage1`: adapter only, T2V, brief captions; `stage2`: everything,
    I2V (first latent frame clean), structured prompts with PACA."""

    name: str = "run"
    stage: str = "stage1"
    output_dir: str = "runs/run"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    source: str | None = field(default=None, metadata={"internal": True})

    @property
    def mode(self) -> str:
        """t2v (stage 1, no clean frame) or i2v (stage 2, latent frame 0 clean)."""
        return "t2v" if self.stage == "stage1" else "i2v"

    @property
    def num_clean_frames(self) -> int:
        """Clean leading latent frames of a stage-2 forward without the sink (per-sample
        counts in [1, data.context_latents] are drawn by the dataset)."""
        return 0 if self.mode == "t2v" else 1

    @property
    def reset_phase(self) -> bool:
        flag = self.model.reset_phase_embedding
        return self.stage == "stage2" if flag is None else flag


def _hint(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(options)})"


def _check_type(value: Any, tp: Any, where: str, file: str | None) -> Any:
    """Coerce/validate a YAML value against a dataclass field type (simple types only)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, where, file)
            except ConfigError as exc:
                errors.append(exc.detail)
        raise ConfigError(
            errors[0] if errors else f"invalid value {value!r}", file=file, field=where
        )
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"expected a list, got {value!r}", file=file, field=where)
        (item,) = typing.get_args(tp)
        return [_check_type(v, item, where, file) for v in value]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected true/false, got {value!r}", file=file, field=where)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {value!r}", file=file, field=where)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", file=file, field=where)
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"expected text, got {value!r}", file=file, field=where)
        return str(value)
    return value


def _build(cls: type, data: Any, prefix: str, file: str | None) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping, got {type(data).__name__}", file=file, field=prefix or None
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs = {}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(
                f"unknown key{_hint(str(key), sorted(fields))}", file=file, field=where
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, where + ".", file)
        else:
            kwargs[key] = _check_type(value, tp, where, file)
    return cls(**kwargs)


def _validate(cfg: TrainConfig, file: str | None) -> TrainConfig:
    def bad(fld: str, msg: str) -> ConfigError:
        return ConfigError(msg, file=file, field=fld)

    if cfg.stage not in STAGES:
        raise bad("stage", f"must be one of {', '.join(STAGES)}, got {cfg.stage!r}")
    if cfg.train.mixed_precision not in ("no", "bf16", "fp16"):
        raise bad("train.mixed_precision", "must be no, bf16 or fp16")
    for fld, value in (
        ("train.max_steps", cfg.train.max_steps),
        ("data.batch_size", cfg.data.batch_size),
        ("train.gradient_accumulation_steps", cfg.train.gradient_accumulation_steps),
        ("train.checkpoint_every", cfg.train.checkpoint_every),
        ("data.text_len", cfg.data.text_len),
    ):
        if value < 1:
            raise bad(fld, f"must be at least 1, got {value}")
    if cfg.optim.lr <= 0:
        raise bad("optim.lr", "must be positive")
    if len(cfg.optim.betas) != 2:
        raise bad("optim.betas", "needs two numbers")
    for fld, p in (
        ("data.text_dropout", cfg.data.text_dropout),
        ("data.audio_dropout", cfg.data.audio_dropout),
    ):
        if not 0.0 <= p <= 1.0:
            raise bad(fld, f"must be in [0, 1], got {p}")
    if cfg.train.ema_decay is not None and not 0.0 < cfg.train.ema_decay < 1.0:
        raise bad("train.ema_decay", "must be in (0, 1)")
    if not cfg.data.dataset:
        raise bad(
            "data.dataset", "is required (a dataset folder built by `avatar-flow dataset build`)"
        )
    if cfg.stage == "distill":
        d = cfg.distill
        if not d.teacher:
            raise bad("distill.teacher", "is required (an ActAvatar pipeline or checkpoint folder)")
        if d.mode not in ("guidance", "trajectory"):
            raise bad("distill.mode", f"must be guidance or trajectory, got {d.mode!r}")
        if not 1 <= d.student_steps <= d.teacher_steps:
            raise bad(
                "distill.student_steps",
                f"must be in [1, teacher_steps={d.teacher_steps}], got {d.student_steps}",
            )
        if d.pool and d.mode != "trajectory":
            raise bad("distill.pool", f"needs distill.mode: trajectory (got {d.mode!r})")
        if not d.identity_weight >= 0.0:
            raise bad("distill.identity_weight", f"must be >= 0, got {d.identity_weight}")
        if d.identity_weight > 0 and d.identity_channels is None:
            raise bad(
                "distill.identity_channels",
                "is required when distill.identity_weight > 0 ([start, end) latent channels "
                "read as identity)",
            )
        if d.identity_channels is not None:
            ch = d.identity_channels
            if len(ch) != 2 or not 0 <= ch[0] < ch[1]:
                raise bad("distill.identity_channels", f"must be [start, end), got {ch}")
            if d.identity_weight == 0:
                raise bad(
                    "distill.identity_channels",
                    "has no effect with distill.identity_weight 0 (set a weight > 0)",
                )
    if cfg.data.context_latents < 1:
        raise bad("data.context_latents", f"must be at least 1, got {cfg.data.context_latents}")
    if cfg.data.sink_gap < 0:
        raise bad("data.sink_gap", f"must be at least 0, got {cfg.data.sink_gap}")
    if cfg.data.sink_gap and cfg.model.reference_sink is False:
        raise bad("data.sink_gap", "needs model.reference_sink: true (it places the sink)")
    if not 0.0 <= cfg.train.context_noise <= 1.0:
        raise bad("train.context_noise", f"must be in [0, 1], got {cfg.train.context_noise}")
    if not 0.0 <= cfg.train.context_shift <= 10.0:
        raise bad("train.context_shift", f"must be in [0, 10], got {cfg.train.context_shift}")
    if cfg.stage != "stage2":
        for fld, value, default in (
            ("model.reference_sink", cfg.model.reference_sink, None),
            ("data.context_latents", cfg.data.context_latents, 1),
            ("data.sink_gap", cfg.data.sink_gap, 0),
            ("train.context_noise", cfg.train.context_noise, 0.0),
            ("train.context_shift", cfg.train.context_shift, 0.0),
        ):
            if value not in (default, False):
                raise bad(fld, f"is a stage-2 switch (this config's stage is {cfg.stage})")
    if cfg.stage == "stage2" and not cfg.model.adapter:
        raise bad("model.adapter", "stage 2 needs the stage-1 adapter (audio_adapter.safetensors)")
    return cfg


def _set_path(data: dict, dotted: str, value: Any, file: str | None) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {dotted}", file=file, field=dotted)
    node[keys[-1]] = value


def apply_overrides(data: dict, overrides: list[str] | None, file: str | None = None) -> dict:
    """Apply `a.b=value` overrides (values parsed as YAML) to a raw config mapping."""
    import yaml

    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} is not KEY=VALUE", file=file)
        _set_path(data, key.strip(), yaml.safe_load(raw) if raw.strip() else None, file)
    return data


def config_from_dict(data: dict, file: str | None = None) -> TrainConfig:
    """Build and check a config from a raw mapping (what a YAML file holds); `file` only
    names the source in error messages. Unknown keys and bad values raise `ConfigError`."""
    cfg = _build(TrainConfig, data, "", file)
    cfg.source = file
    return _validate(cfg, file)


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read and check a YAML training config; relative dataset/model paths resolve against
    the current directory (the CLI's working directory), as command-line paths do."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found", file=str(path))
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"invalid YAML ({getattr(exc, 'problem', exc)})", file=where) from None
    if not isinstance(data, dict):
        raise ConfigError("the config must be a YAML mapping", file=str(path))
    apply_overrides(data, overrides, str(path))
    return config_from_dict(data, str(path))


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    data = dataclasses.asdict(cfg)
    data.pop("source", None)
    return data


_HASH_DEFAULTS = (
    ("model", "audio_progressive", True),
    ("data", "use_phase_ids", True),
    ("model", "time_aware_phases", None),
    ("model", "frame_time_embedding", None),
    ("model", "phase_anchor_embedding", None),
    ("model", "reference_sink", None),
    ("data", "context_latents", 1),
    ("data", "sink_gap", 0),
    ("train", "context_noise", 0.0),
    ("train", "context_shift", 0.0),
)


# distill keys added by issue 21, hashed only when changed (earlier distill hashes stay valid)
_DISTILL_HASH_DEFAULTS = (
    ("distill", "pool", ""),
    ("distill", "identity_weight", 0.0),
    ("distill", "identity_channels", None),
)


def config_hash(cfg: TrainConfig) -> str:
    """sha256 over what determines the weights (paths to outputs and logging excluded)."""
    data = config_to_dict(cfg)
    data.pop("output_dir", None)
    data.pop("name", None)
    loop = data["train"]
    for key in (
        "resume",
        "checkpoint_every",
        "keep_checkpoints",
        "log_every",
        "sample_every",
        "sample_steps",
        "sample_clips",
    ):
        loop.pop(key, None)
    data.pop("debug", None)
    if cfg.stage != "distill":  # the distill section was added later: earlier hashes stay valid
        data.pop("distill", None)
    # switches added later are hashed only when changed, so earlier hashes stay valid
    for section, key, default in (*_HASH_DEFAULTS, *_DISTILL_HASH_DEFAULTS):
        if section in data and data[section].get(key) == default:
            data[section].pop(key, None)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
