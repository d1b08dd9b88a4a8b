"""What a checkpoint can render, read from its config files alone (no torch, no weights).

Why: Wan's rotary position table has `rope_max_seq_len` positions per axis (frames, height,
width after patching). A request beyond it fails deep inside diffusers' RoPE
(`shape '[1, 1, 40, -1]' is invalid ...`) after speech, words and planning were already
spent. Reading the limits from `transformer/config.json` (and the VAE's scale factors) lets
the caller refuse the request first, with one line naming the checkpoint and its limits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CheckpointLimits", "checkpoint_limits"]


@dataclass(frozen=True)
class CheckpointLimits:
    """Largest render of a checkpoint: pixels per axis and video frames (1 + 4k layout)."""

    checkpoint: str
    rope_max_seq_len: int
    patch_size: tuple[int, int, int]
    vae_scale_spatial: int
    vae_scale_temporal: int
    sink_frames: int = 0  # latent frames in front of the clip (the identity sink, issue 20)

    @property
    def max_height(self) -> int:
        return self.rope_max_seq_len * self.patch_size[1] * self.vae_scale_spatial

    @property
    def max_width(self) -> int:
        return self.rope_max_seq_len * self.patch_size[2] * self.vae_scale_spatial

    @property
    def max_latent_frames(self) -> int:
        return self.rope_max_seq_len * self.patch_size[0] - self.sink_frames

    @property
    def max_frames(self) -> int:
        return (self.max_latent_frames - 1) * self.vae_scale_temporal + 1

    def check(self, height: int, width: int, num_frames: int | None = None) -> str | None:
        """None if the request fits, else one line naming the checkpoint and its limits."""
        problems = []
        if height > self.max_height:
            problems.append(f"height {height} > {self.max_height}")
        if width > self.max_width:
            problems.append(f"width {width} > {self.max_width}")
        if num_frames is not None and num_frames > self.max_frames:
            problems.append(f"{num_frames} frames > {self.max_frames}")
        if not problems:
            return None
        return (
            f"checkpoint {self.checkpoint} cannot render this request ({', '.join(problems)}): "
            f"its rope_max_seq_len {self.rope_max_seq_len} allows at most "
            f"{self.max_width}x{self.max_height} pixels and {self.max_frames} frames per segment"
        )


def checkpoint_limits(folder: str | Path) -> CheckpointLimits:
    """Limits of a pipeline folder (with `transformer/`) or of a transformer folder itself.

    VAE scale factors come from `vae/config.json` when present (Wan2.2 TI2V: 16 spatial,
    4 temporal), else those defaults.
    """
    folder = Path(folder)
    tdir = folder / "transformer" if (folder / "transformer" / "config.json").is_file() else folder
    cfg_path = tdir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{folder}: no transformer/config.json (not a checkpoint folder)")
    cfg = json.loads(cfg_path.read_text())
    vae_cfg: dict = {}
    for vdir in (folder / "vae", tdir.parent / "vae"):
        if (vdir / "config.json").is_file():
            vae_cfg = json.loads((vdir / "config.json").read_text())
            break
    patch = tuple(int(p) for p in cfg.get("patch_size", (1, 2, 2)))
    return CheckpointLimits(
        checkpoint=str(folder),
        rope_max_seq_len=int(cfg.get("rope_max_seq_len", 1024)),
        patch_size=(patch[0], patch[1], patch[2]),
        vae_scale_spatial=int(vae_cfg.get("scale_factor_spatial", 16)),
        vae_scale_temporal=int(vae_cfg.get("scale_factor_temporal", 4)),
        sink_frames=1 if cfg.get("reference_sink") else 0,
    )
