"""The training option contracts, each one pydantic model (`flows.runtime.contract.Contract`),
like the job options contract (`flows.video.options.JobOptions`):

- `DatasetOptions`: how `build-dataset` cuts, scores, annotates and encodes clips. It is the
  flow's `options` parameter (the Prefect form describes every field) and the builder's
  settings; `avatar-flow dataset build` has one option per field (help read from here).
- `TrainOptions`: what one training stage is run with (its YAML config, `--set` overrides, the
  launcher). The `train-stage1`, `train-stage2` and `train-distill` flows take it as their
  `options` parameter, the `train` flow one per stage; `avatar-flow train stage1|stage2|distill`
  has one option per field.

`tests/flows/test_options_contract.py` checks that the CLI commands and the flows take exactly
these fields with these defaults, and `orchestrator.deployments` checks deployments.yaml's
parameters against them (flat keys of older files are folded in). Adding an option: a field
here (type, default, `description=`, validation), one line in the CLI command, then read it
where it is used.
"""

import hashlib
import json
from typing import Any

from pydantic import Field, field_validator

from flows.runtime.contract import Contract
from planners.registry import planner_names

# (height, width) buckets at the paper's 704x1280 pixel budget: landscape, portrait, square.
PAPER_BUCKETS: tuple[tuple[int, int], ...] = ((704, 1280), (1280, 704), (960, 960))
# The settings that decide which clips exist and what they contain (their ids and the
# dataset's resume key); `out`, `planner`, `shard_size` and `annotate_frames` do not.
CUT_FIELDS = (
    "fps",
    "clip_frames",
    "buckets",
    "motion_threshold",
    "encoders",
    "wav2vec",
    "dwpose",
    "text_len",
    "max_phases",
)


class DatasetOptions(Contract):
    """How a folder of talking videos becomes a training dataset (CLI flags, the
    `build-dataset` form, deployments.yaml)."""

    out: str | None = Field(
        None, description="Dataset folder. Default: the videos folder's name + '-dataset'."
    )
    planner: str = Field(
        "rule",
        description="Annotator: rule (offline), mllm (OpenAI-compatible endpoint from the "
        "environment), or one a plugin registers (entry-point group avatar_flow.planners).",
        json_schema_extra=lambda schema: schema.update(enum=list(planner_names())),
    )
    motion_threshold: float = Field(
        0.02, description="Stage-2 clips need at least this motion score (0 to 1)."
    )
    encoders: str = Field(
        "preset:tiny",
        description="VAE/umT5/Wav2Vec2 source: a Wan2.2 or ActAvatar pipeline folder, or "
        "preset:tiny (tests only).",
    )
    wav2vec: str | None = Field(
        None, description="Wav2Vec2 folder (needed with a plain Wan2.2 folder as encoders)."
    )
    dwpose: str | None = Field(
        None,
        description="DWPose whole-body ONNX model for motion scores. Default: frame-difference "
        "motion energy.",
    )
    fps: int = Field(25, description="Clip frame rate, 1-120.")
    clip_frames: int = Field(125, description="Frames per clip (4k+1; 125 = 5 s at 25 fps).")
    buckets: list[list[int]] = Field(
        default_factory=lambda: [list(b) for b in PAPER_BUCKETS],
        description="Resolution buckets, HxW (e.g. 704x1280; multiples of 32); each video "
        "takes the bucket closest to its aspect ratio.",
    )
    text_len: int = Field(512, description="umT5 sequence length (tokens), 1-4096.")
    max_phases: int = Field(
        8, description="Most phase blocks per clip's structured prompt (the model's PACA table)."
    )
    shard_size: int = Field(64, description="Clips per cache shard file.")
    annotate_frames: int = Field(4, description="Frames of each clip shown to an MLLM annotator.")

    @field_validator("planner")
    @classmethod
    def _known_planner(cls, v: str) -> str:
        if v not in planner_names(aliases=True):
            raise ValueError(f"unknown planner '{v}' (one of: {', '.join(planner_names())})")
        return v

    @field_validator("motion_threshold")
    @classmethod
    def _unit_motion(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"motion_threshold must be between 0 and 1, got {v}")
        return v

    @field_validator("encoders")
    @classmethod
    def _encoders_given(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("encoders must be a pipeline folder or preset:tiny")
        return v

    @field_validator("fps")
    @classmethod
    def _fps_range(cls, v: int) -> int:
        if not 1 <= v <= 120:
            raise ValueError(f"fps must be between 1 and 120, got {v}")
        return v

    @field_validator("clip_frames")
    @classmethod
    def _four_k_plus_one(cls, v: int) -> int:
        if v < 5 or (v - 1) % 4:
            raise ValueError(f"clip frames must be 4k+1 (e.g. 125), got {v}")
        return v

    @field_validator("buckets", mode="before")
    @classmethod
    def _hxw(cls, v: Any) -> Any:
        """`704x1280` strings (CLI, YAML) or [height, width] pairs; multiples of 32."""
        if not isinstance(v, (list, tuple)) or not v:
            raise ValueError(f"buckets must be a list of HxW sizes, got {v!r}")
        pairs = []
        for b in v:
            if isinstance(b, str):
                try:
                    b = [int(x) for x in b.lower().split("x")]
                except ValueError:
                    raise ValueError(f"bucket must be HxW (e.g. 704x1280), got {b!r}") from None
            if (
                not isinstance(b, (list, tuple))
                or len(b) != 2
                or not all(isinstance(x, int) and x > 0 and x % 32 == 0 for x in b)
            ):
                raise ValueError(f"bucket {b} must be [height, width], multiples of 32")
            pairs.append(list(b))
        return pairs

    @field_validator("text_len")
    @classmethod
    def _text_len_range(cls, v: int) -> int:
        if not 1 <= v <= 4096:
            raise ValueError(f"text_len must be between 1 and 4096, got {v}")
        return v

    @field_validator("max_phases", "shard_size", "annotate_frames")
    @classmethod
    def _at_least_one(cls, v: int, info: Any) -> int:
        if v < 1:
            raise ValueError(f"{info.field_name} must be at least 1, got {v}")
        return v

    def cut_key(self) -> str:
        """Hash of what decides which clips exist and what they contain."""
        keys = self.model_dump(mode="json", include=set(CUT_FIELDS))
        return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]

    def recorded(self) -> dict[str, Any]:
        """The settings a dataset's manifest records (everything but where it is)."""
        return self.model_dump(mode="json", exclude={"out"})


class TrainOptions(Contract):
    """One training stage's run: its config and how it is launched (CLI arguments, a training
    flow's form, deployments.yaml)."""

    config: str = Field(
        description="Training YAML (see generator/train/configs/); its `stage` must be the "
        "stage being trained."
    )
    overrides: list[str] = Field(
        default_factory=list,
        description="Config values to override, KEY=VALUE (e.g. train.max_steps=10; values "
        "read as YAML).",
    )
    accelerate_config: str | None = Field(
        None, description="accelerate config (DDP/FSDP) for a multi-GPU launch."
    )
    nproc: int | None = Field(
        None, description="Processes on this machine via torchrun (CPU DDP), at least 1."
    )
    stop_after: int | None = Field(
        None,
        description="Stop (checkpointed) after N steps, as a preemption would; run again to "
        "resume.",
    )

    @field_validator("config")
    @classmethod
    def _config_given(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("config must be the path of a training YAML")
        return v

    @field_validator("overrides")
    @classmethod
    def _key_value(cls, v: list[str]) -> list[str]:
        for item in v:
            key, sep, _ = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"override {item!r} is not KEY=VALUE")
        return v

    @field_validator("nproc", "stop_after")
    @classmethod
    def _positive(cls, v: int | None, info: Any) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"{info.field_name} must be at least 1, got {v}")
        return v
