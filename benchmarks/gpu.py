"""One ActAvatar forward of the real 5B transformer on a GPU: seconds per forward and peak
memory, for the teacher's and the students' settings, and what that makes per 5-s clip.

    .venv/bin/python benchmarks/gpu.py [--repeats N] [--json PATH]    # CUDA, bf16, 5B config
    .venv/bin/python benchmarks/gpu.py --tiny                          # CPU plumbing check

Default: `WAN22_TI2V_5B_TRANSFORMER_CONFIG` (Wan2.2-TI2V-5B + the ActAvatar adapter, time-aware
phase attention on) with random weights in bf16 (norms and the time embedding in fp32, as
diffusers keeps them), 121 frames at 704x1280 (31 x 44 x 80 latents = 27,280 video tokens),
512 text tokens, Wav2Vec2-base features. Settings:
  * teacher: the three guidance predictions as one B=3 forward (the pipeline's default), 40
    steps -> 120 evaluations per clip;
  * student: one B=1 forward per step (guidance folded in), at 40 (guidance-distilled), 8 and 4
    steps.
Timings: CUDA events around each forward after one warm-up, median of `--repeats`; peak memory:
`torch.cuda.max_memory_allocated` during the forward, above the resident weights and inputs.
`--tiny` runs the same code on CPU with the tiny preset (RSS sampled every 2 ms for memory); it
is what the test suite runs, and its figures say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from memory import PeakRSS  # this folder (before it leaves the path below)

# This folder has a generator.py: drop it from the path so `import generator` is the package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import torch  # noqa: E402

from generator.presets import TINY_TRANSFORMER_CONFIG, WAN22_TI2V_5B_TRANSFORMER_CONFIG  # noqa: E402
from generator.transformer_actavatar import ActAvatarTransformer3DModel  # noqa: E402

STUDENT_STEPS = (40, 8, 4)
TEACHER_STEPS = 40


def problem_size(cfg: dict[str, Any], frames: int, height: int, width: int) -> dict[str, int]:
    """Latent grid and token count of a clip for a transformer config (Wan2.2 VAE: 4x16x16)."""
    lat_f, lat_h, lat_w = (frames - 1) // 4 + 1, height // 16, width // 16
    _, ph, pw = cfg["patch_size"]
    return {
        "latent_frames": lat_f,
        "latent_height": lat_h,
        "latent_width": lat_w,
        "tokens": lat_f * (lat_h // ph) * (lat_w // pw),
    }


def build_model(cfg: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Any:
    """Random weights straight on `device`, cast to `dtype` except what diffusers keeps fp32."""
    torch.manual_seed(0)
    with torch.device(device):
        model = ActAvatarTransformer3DModel(**cfg)
    if dtype != torch.float32:
        from diffusers.utils import logging as dlogging

        level = dlogging.get_verbosity()
        dlogging.set_verbosity_error()  # the fp32 modules are restored just below
        model.to(dtype)
        dlogging.set_verbosity(level)
    keep = ActAvatarTransformer3DModel._keep_in_fp32_modules or []
    for name, module in model.named_modules():
        if name and any(p in name for p in keep):
            module.float()
    with torch.no_grad():  # a "trained" adapter and phase table: nothing multiplies by zero
        for block in model.blocks:
            torch.nn.init.normal_(block.audio_attn.to_out[0].weight, std=0.02)
        model.phase_embedding.weight.normal_(std=0.02)
    return model.eval()


def make_inputs(
    cfg: dict[str, Any], size: dict[str, int], batch: int, device: torch.device, dtype: torch.dtype
) -> dict[str, Any]:
    from generator.conditioning import clean_frame_mask, token_timesteps

    g = torch.Generator(device="cpu").manual_seed(0)
    f, h, w = size["latent_frames"], size["latent_height"], size["latent_width"]
    tpf = size["tokens"] // f
    x = torch.randn(batch, cfg["in_channels"], f, h, w, generator=g)
    ts = token_timesteps(torch.full((batch,), 700.0), clean_frame_mask(f, 1, batch), tpf)
    text_len = 512
    text = torch.randn(batch, text_len, cfg["text_dim"], generator=g)
    text[:, 160:] = 0
    phase = torch.full((batch, text_len), cfg["max_phases"] + 1, dtype=torch.long)
    phase[:, :80], phase[:, 80:120], phase[:, 120:160] = 0, 1, 2
    windows = torch.zeros(batch, cfg["max_phases"] + 2, 2)
    windows[:, 0] = torch.tensor([0.0, f])
    windows[:, 1] = torch.tensor([0.0, f / 2])
    windows[:, 2] = torch.tensor([f / 2, f])
    audio = torch.randn(
        batch, 4 * (f - 1) + 1, cfg["audio_layers"], cfg["audio_in_dim"], generator=g
    )
    kw = {
        "hidden_states": x.to(device, dtype),
        "timestep": ts.to(device),
        "encoder_hidden_states": text.to(device, dtype),
        "audio_embeds": audio.to(device, dtype),
        "phase_ids": phase.to(device),
        "phase_windows": windows.to(device),
        "return_dict": False,
    }
    if batch == 3:  # the pipeline's batched guidance: no audio for the first two predictions
        kw["audio_mask"] = torch.tensor([0.0, 0.0, 1.0], device=device)
    return kw


def time_forward(model: Any, inputs: dict[str, Any], repeats: int) -> dict[str, float]:
    """Median seconds of one forward and its peak memory above the resident state (GiB)."""
    cuda = inputs["hidden_states"].is_cuda
    with torch.no_grad():
        model(**inputs)  # warm-up (kernels, allocator)
        times = []
        for _ in range(repeats):
            if cuda:
                start, end = (
                    torch.cuda.Event(enable_timing=True),
                    torch.cuda.Event(enable_timing=True),
                )
                start.record()
                model(**inputs)
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                model(**inputs)
                times.append(time.perf_counter() - t0)
        if cuda:
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            model(**inputs)
            torch.cuda.synchronize()
            peak = (torch.cuda.max_memory_allocated() - base) / 2**30
        else:
            with PeakRSS() as m:
                model(**inputs)
            peak = (m.peak - m.base) / 2**30
    return {"seconds": statistics.median(times), "peak_gib": peak, "repeats": repeats}


def run(tiny: bool, repeats: int) -> dict[str, Any]:
    if tiny:
        cfg = {**TINY_TRANSFORMER_CONFIG, "time_aware_phases": True}
        device, dtype = torch.device("cpu"), torch.float32
        frames, height, width = 9, 64, 96
        name = f"CPU ({torch.get_num_threads()} threads), tiny preset"
    else:
        if not torch.cuda.is_available():
            raise SystemExit("error: no CUDA device (use --tiny for the CPU plumbing check)")
        cfg = {**WAN22_TI2V_5B_TRANSFORMER_CONFIG, "time_aware_phases": True}
        device, dtype = torch.device("cuda"), torch.bfloat16
        frames, height, width = 121, 704, 1280
        name = torch.cuda.get_device_name(0)
    size = problem_size(cfg, frames, height, width)
    model = build_model(cfg, device, dtype)
    params = sum(p.numel() for p in model.parameters())
    weights_gib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    teacher = time_forward(model, make_inputs(cfg, size, 3, device, dtype), repeats)
    student = time_forward(model, make_inputs(cfg, size, 1, device, dtype), repeats)
    settings = {
        "teacher": {
            "batch": 3,
            **teacher,
            "steps": TEACHER_STEPS,
            "evaluations_per_clip": 3 * TEACHER_STEPS,
            "seconds_per_clip": TEACHER_STEPS * teacher["seconds"],
        }
    }
    for steps in STUDENT_STEPS:
        settings[f"student-{steps}"] = {
            "batch": 1,
            **student,
            "steps": steps,
            "evaluations_per_clip": steps,
            "seconds_per_clip": steps * student["seconds"],
        }
    return {
        "device": name,
        "dtype": str(dtype).replace("torch.", ""),
        "frames": frames,
        "resolution": [height, width],
        **size,
        "parameters": params,
        "weights_gib": weights_gib,
        "settings": settings,
    }


def report(res: dict[str, Any]) -> None:
    print(
        f"device: {res['device']}, {res['dtype']}, {res['parameters'] / 1e6:,.1f} M parameters "
        f"({res['weights_gib']:.2f} GiB)"
    )
    print(
        f"clip: {res['frames']} frames {res['resolution'][0]}x{res['resolution'][1]} -> latents "
        f"{res['latent_frames']}x{res['latent_height']}x{res['latent_width']}, "
        f"{res['tokens']} video tokens"
    )
    print(
        f"{'setting':12s} {'batch':>5s} {'s/forward':>10s} {'peak GiB':>9s} {'steps':>5s} "
        f"{'evals/clip':>10s} {'s/clip':>9s}"
    )
    for name, s in res["settings"].items():
        print(
            f"{name:12s} {s['batch']:5d} {s['seconds']:10.4f} {s['peak_gib']:9.3f} {s['steps']:5d} "
            f"{s['evaluations_per_clip']:10d} {s['seconds_per_clip']:9.2f}"
        )
    t = res["settings"]["teacher"]["seconds_per_clip"]
    for name, s in res["settings"].items():
        if name != "teacher":
            print(f"teacher / {name} per clip = {t / s['seconds_per_clip']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="CPU, tiny preset (test suite)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    res = run(args.tiny, args.repeats)
    report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
