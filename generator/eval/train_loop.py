"""In-memory training of the tiny ActAvatar on synthetic tensors, through the trainer's loss.

Why: the positive control (oracle routing) changes the attention processors of the model
it trains, which the file-based `generator.train.Trainer` cannot do; and the `loop` backend
is a fast cross-check of the trainer backend. The objective is *not* a copy: every step calls
`generator.train.losses.flow_matching_loss` with a batch laid out as the trainer's
`collate_clips` lays it out (noise, sigma = Wan's shift of u ~ U(0, 1), clean frame 0 with
timestep 0, audio gate, PACA ids, phase windows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from generator.train.data import shift_sigma
from generator.train.losses import flow_matching_loss

__all__ = ["TensorSet", "make_batch", "train"]


@dataclass
class TensorSet:
    """A dataset as tensors (all on CPU)."""

    latents: torch.Tensor  # (N, C, F, H, W)
    audio: torch.Tensor  # (N, F_video, L, D)
    text: torch.Tensor  # (N, S, D_text) frozen umT5 states (zero tail)
    phase_ids: torch.Tensor  # (N, S) long: 0 base, k phase k, pad id
    windows: torch.Tensor | None = None  # (N, max_phases + 2, 2) phase windows (latent frames)

    def __len__(self) -> int:
        return self.latents.shape[0]


def make_batch(
    data: TensorSet,
    idx: torch.Tensor,
    generator: torch.Generator,
    use_audio: bool,
    use_phase_ids: bool,
    timestep_shift: float = 1.0,
) -> dict:
    """The trainer's batch layout (`generator.train.data.collate_clips`) for clips `idx`."""
    latents = data.latents[idx]
    noise = torch.randn(latents.shape, generator=generator)
    u = torch.rand(len(idx), generator=generator)
    return {
        "latents": latents,
        "noise": noise,
        "sigma": shift_sigma(u.clamp(1e-4, 1.0), timestep_shift),
        "prompt_embeds": data.text[idx],
        "phase_ids": data.phase_ids[idx] if use_phase_ids else None,
        "phase_windows": (
            data.windows[idx] if use_phase_ids and data.windows is not None else None
        ),
        "audio": data.audio[idx],
        "audio_mask": torch.full((len(idx),), 1.0 if use_audio else 0.0),
    }


def train(
    model: torch.nn.Module,
    data: TensorSet,
    steps: int,
    *,
    batch_size: int,
    lr: float,
    seed: int,
    use_audio: bool = True,
    use_phase_ids: bool = True,
    warmup: int = 50,
    num_clean: int = 1,
    timestep_shift: float = 1.0,
    on_batch: Callable[[torch.Tensor], None] | None = None,
) -> list[float]:
    """AdamW on the parameters with `requires_grad`; returns the loss of every step.

    `on_batch(idx)` runs before each forward (the oracle control sets its masks there).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(warmup, 1)))
    gen = torch.Generator().manual_seed(seed)
    patch_hw = tuple(model.config.patch_size[1:])
    model.train()
    losses: list[float] = []
    for _ in range(steps):
        idx = torch.randint(len(data), (batch_size,), generator=gen)
        batch = make_batch(data, idx, gen, use_audio, use_phase_ids, timestep_shift)
        if on_batch is not None:
            on_batch(idx)
        loss = flow_matching_loss(model, batch, num_clean, patch_hw)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses
