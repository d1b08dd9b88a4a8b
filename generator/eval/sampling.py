"""The bench's sampler: one function, so the sampler can be swapped in one place.

`sample_clips(model, batch, options)` runs the Euler flow-matching sampler from sigma 1 to 0
with the TI2V rule (the first `num_clean` latent frames are the clean condition, timestep 0)
and calls the model through `generator.pipeline_actavatar.guided_velocity`, the function the
pipeline itself uses per step (with `options.text_scale = options.audio_scale = 1` it is one
text+audio forward: the bench's default, no classifier-free guidance).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from generator.conditioning import clean_frame_mask, compose_clean_latents, token_timesteps

__all__ = ["LinearEulerScheduler", "SamplerOptions", "sample_clips"]


class LinearEulerScheduler:
    """The bench's Euler grid (sigma 1 -> 0 in equal steps) as a scheduler for the pipeline's
    `denoise`: `sample_clips`' own loop equals `denoise(model, LinearEulerScheduler(), ...)`
    (tested), so the committed numbers are the product's sampling step on this grid."""

    def set_timesteps(self, num_inference_steps: int, device: Any = None) -> None:
        self.sigmas = torch.linspace(1.0, 0.0, num_inference_steps + 1)
        self.timesteps = self.sigmas[:-1] * 1000.0
        self._index = 0

    def step(self, v: torch.Tensor, t: Any, x: torch.Tensor, return_dict: bool = False):
        sigma, sigma_next = self.sigmas[self._index], self.sigmas[self._index + 1]
        self._index += 1
        return (x + (sigma_next - sigma) * v.float(),)


@dataclass(frozen=True)
class SamplerOptions:
    """How to sample: Euler steps, noise seed, guidance scales (1 = no guidance)."""

    steps: int = 16
    seed: int = 0
    num_clean: int = 1
    text_scale: float = 1.0
    audio_scale: float = 1.0
    # issue 12: a named solver samples with the pipeline's own loop (`denoise`: scheduler,
    # guidance, interval, step cache); None keeps the Euler loop below (committed numbers)
    solver: str | None = None
    flow_shift: float = 5.0
    guidance_interval: tuple[float, float] | None = None
    step_cache: Any = None


@torch.no_grad()
def sample_clips(model: Any, batch: dict[str, Any], options: SamplerOptions) -> torch.Tensor:
    """Sample a batch of clips. `batch`: `latents` (B, C, F, H, W) (only the first
    `num_clean` frames are read), `text` (B, S, D), `audio` (B, F_video, L, C) or None,
    `phase_ids` (B, S) or None, `phase_windows` (B, R, 2) or None, optionally `noise` (the
    initial noise, shaped like `latents`; default drawn from `options.seed`), and for guidance
    `negative_text` / `negative_phase_ids`. Returns the sampled latents (B, C, F, H, W)."""
    from generator.pipeline_actavatar import Conditioning, Guidance, denoise, guided_velocity
    from generator.prompting import unconditional_phase_ids

    cond = batch["latents"]
    b, _, f, h, w = cond.shape
    if batch.get("noise") is not None:  # the caller's initial noise (e.g. paired chains)
        x = batch["noise"].clone()
    else:
        gen = torch.Generator().manual_seed(options.seed)
        x = torch.randn(cond.shape, generator=gen)
    ids = batch.get("phase_ids")
    inputs = Conditioning(
        prompt_embeds=batch["text"],
        phase_ids=ids,
        negative_prompt_embeds=batch.get("negative_text", torch.zeros_like(batch["text"][:1])),
        negative_phase_ids=batch.get(
            "negative_phase_ids",
            None if ids is None else unconditional_phase_ids(1, ids.shape[1]),
        ),
        audio_embeds=batch.get("audio"),
        phase_windows=batch.get("phase_windows"),
    )
    guidance = Guidance(options.text_scale, options.audio_scale, interval=options.guidance_interval)
    if options.solver is not None:
        from generator.sampling import make_scheduler

        out, _ = denoise(
            model,
            make_scheduler(options.solver, {"flow_shift": options.flow_shift}),
            x,
            cond[:, :, : options.num_clean],
            inputs,
            guidance,
            options.steps,
            step_cache=options.step_cache,
        )
        return out
    mask = clean_frame_mask(f, options.num_clean, b)
    _, ph, pw = model.config.patch_size
    tpf = (h // ph) * (w // pw)
    grid = torch.linspace(1.0, 0.0, options.steps + 1)
    for i in range(options.steps):
        t, t_next = grid[i], grid[i + 1]
        x = compose_clean_latents(x, cond, options.num_clean)
        ts = token_timesteps(t.expand(b) * 1000.0, mask, tpf)
        v = guided_velocity(model, x, ts, inputs, guidance)
        x = x + (t_next - t) * v.float()
    return compose_clean_latents(x, cond, options.num_clean)
