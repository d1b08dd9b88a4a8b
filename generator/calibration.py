"""Step-cache calibration of a pipeline checkpoint: the product's side of MagCache.

`calibrate_pipeline` measures a checkpoint's own per-step residual-magnitude ratios on a fixed
probe and writes them, with a threshold, to the checkpoint's `sampling.json`, where
`--step-cache` reads them (`generator.sampling.resolve_sampling`). The threshold defaults to
the value the synthetic bench calibrated (`generator.sampling.STEP_CACHE_THRESHOLD`); the
research study (`generator.sampling_eval`) imports this module, never the other way round.
It is its own module because it loads a pipeline, which itself imports `generator.sampling`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from generator.sampling import (
    STEP_CACHE_THRESHOLD,
    disable_step_cache,
    enable_step_cache,
    read_sampling_file,
    step_cache_stats,
    write_sampling_file,
)

__all__ = ["calibrate_pipeline"]


def calibrate_pipeline(
    folder: str | Path,
    threshold: float = STEP_CACHE_THRESHOLD,
    height: int = 704,
    width: int = 1280,
    num_frames: int = 125,
    steps: int = 40,
    seeds: tuple[int, ...] = (0, 1),
) -> Path:
    """MagCache ratios of a pipeline checkpoint (its own reference sampler on a fixed probe:
    a grey avatar, a 220 Hz tone, a two-phase prompt), written with `threshold` (the bench's
    calibrated value) to the checkpoint's `sampling.json`, keeping what else it holds."""
    from PIL import Image

    from generator.pipeline_actavatar import ActAvatarPipeline
    from generator.render_types import PromptPhase, StructuredPrompt

    folder = Path(folder)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    pipe = ActAvatarPipeline.from_pretrained(
        str(folder),
        dtype={"default": dtype, "vae": torch.float32, "audio_encoder": torch.float32},
        use_safetensors=True,
    ).to(device)
    pipe.set_progress_bar_config(disable=True)
    seconds = num_frames / pipe.config.fps
    t = np.arange(int(16000 * seconds)) / 16000
    prompt = StructuredPrompt(
        "A person speaking to the camera",
        (
            PromptPhase("raises a hand", 0.0, seconds / 2),
            PromptPhase("points to the side", seconds / 2, seconds),
        ),
        duration=seconds,
    )
    enable_step_cache(pipe.transformer, None)
    try:
        for seed in seeds:
            pipe(
                image=Image.new("RGB", (width, height), (128, 128, 128)),
                audio=(0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32),
                prompt=prompt,
                num_frames=num_frames,
                height=height,
                width=width,
                num_inference_steps=steps,
                seed=seed,
                output_type="latent",
            )
        ratios = step_cache_stats(pipe.transformer)["mag_ratios"]
    finally:
        disable_step_cache(pipe.transformer)
    data = read_sampling_file(folder) or {}
    data.pop("version", None)
    data["step_cache"] = {
        "mag_ratios": ratios,
        "threshold": threshold,
        "max_skip_steps": 3,
        "retention_ratio": 0.2,
        "calibrated_steps": steps,
        "rule": f"ratios from this checkpoint ({len(seeds)} probe runs at {height}x{width}x"
        f"{num_frames}); threshold from the synthetic bench",
    }
    return write_sampling_file(folder, data)
