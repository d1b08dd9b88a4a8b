"""Flow-matching training and sampling of the tiny ActAvatar on in-memory synthetic data.

Why this file exists: the bench must train the *real* model classes with the paper's
objective (x_t = (1 - t) x0 + t x1, target v = x1 - x0, clean conditioning frame 0 with
timestep 0 as Wan2.2 TI2V) on tensors held in memory. When `generator.train` (the real
accelerate trainer) exposes a loss/step function, `flow_matching_loss` delegates to it;
otherwise the same equations are computed here with the shared conditioning helpers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from generator.conditioning import clean_frame_mask, token_timesteps

__all__ = ["TensorSet", "flow_matching_loss", "sample", "train"]


@dataclass
class TensorSet:
    """A dataset as tensors (all on CPU)."""

    latents: torch.Tensor  # (N, C, F, H, W)
    audio: torch.Tensor  # (N, F_video, L, D)
    text: torch.Tensor  # (N, S, D_text) frozen umT5 states (zero tail)
    phase_ids: torch.Tensor  # (N, S) long: 0 base, k phase k, pad id

    def __len__(self) -> int:
        return self.latents.shape[0]


def _tokens_per_frame(model: torch.nn.Module, latents: torch.Tensor) -> int:
    _, ph, pw = model.config.patch_size
    return (latents.shape[-2] // ph) * (latents.shape[-1] // pw)


def flow_matching_loss(
    model: torch.nn.Module,
    x0: torch.Tensor,
    text: torch.Tensor,
    audio: torch.Tensor | None,
    phase_ids: torch.Tensor | None,
    generator: torch.Generator,
    num_clean: int = 1,
) -> torch.Tensor:
    """Velocity loss on the noisy frames; the first `num_clean` frames stay clean (t = 0)."""
    b, _, f = x0.shape[:3]
    t = torch.rand(b, generator=generator)  # (B,)
    x1 = torch.randn(x0.shape, generator=generator)
    tt = t.view(b, 1, 1, 1, 1)
    xt = (1 - tt) * x0 + tt * x1
    xt[:, :, :num_clean] = x0[:, :, :num_clean]
    mask = clean_frame_mask(f, num_clean, b)  # (B, F)
    ts = token_timesteps(t * 1000.0, mask, _tokens_per_frame(model, x0))  # (B, F*tpf)
    pred = model(xt, ts, text, audio_embeds=audio, phase_ids=phase_ids, return_dict=False)[
        0
    ]  # (B, C, F, H, W)
    err = (pred.float() - (x1 - x0)) ** 2
    w = mask.view(b, 1, f, 1, 1)
    return (err * w).sum() / (w.sum() * err.shape[1] * err.shape[3] * err.shape[4])


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
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """AdamW on the parameters with `requires_grad`; returns the loss of every step."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(warmup, 1)))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    losses: list[float] = []
    for step in range(steps):
        idx = torch.randint(len(data), (batch_size,), generator=gen)
        loss = flow_matching_loss(
            model,
            data.latents[idx],
            data.text[idx],
            data.audio[idx] if use_audio else None,
            data.phase_ids[idx] if use_phase_ids else None,
            gen,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss))
        if on_step is not None:
            on_step(step, losses[-1])
    model.eval()
    return losses


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    cond_latents: torch.Tensor,
    text: torch.Tensor,
    audio: torch.Tensor | None,
    phase_ids: torch.Tensor | None,
    num_steps: int,
    seed: int,
    num_clean: int = 1,
) -> torch.Tensor:
    """Euler flow-matching sampler from t=1 to 0; frame 0 is copied from `cond_latents`."""
    b, _, f = cond_latents.shape[:3]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(cond_latents.shape, generator=gen)
    x[:, :, :num_clean] = cond_latents[:, :, :num_clean]
    mask = clean_frame_mask(f, num_clean, b)
    tpf = _tokens_per_frame(model, cond_latents)
    grid = torch.linspace(1.0, 0.0, num_steps + 1)
    for i in range(num_steps):
        t, t_next = grid[i], grid[i + 1]
        ts = token_timesteps(t.expand(b) * 1000.0, mask, tpf)
        v = model(x, ts, text, audio_embeds=audio, phase_ids=phase_ids, return_dict=False)[0]
        x = x + (t_next - t) * v.float()
        x[:, :, :num_clean] = cond_latents[:, :, :num_clean]
    return x
