"""Fast sampling options of ActAvatarPipeline (generator.sampling): each one must change what
runs (forwards counted, outputs compared), and be exactly the reference sampler when off."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from support import TINY_F, TINY_H, TINY_W, TWO_PHASE_PROMPT, run_tiny_pipeline

from generator.sampling import (
    SOLVERS,
    SamplingOptions,
    SamplingRequest,
    StepCacheConfig,
    interpolate_ratios,
    make_scheduler,
    read_sampling_file,
    step_cache_from_file,
    write_sampling_file,
)

H, W, F = TINY_H, TINY_W, TINY_F
PROMPT = TWO_PHASE_PROMPT


def _run(pipe, avatar, speech, **kw):
    defaults = dict(num_inference_steps=6, output_type="latent", max_sequence_length=32)
    return run_tiny_pipeline(pipe, avatar, speech, **{**defaults, **kw})


class _Forwards:
    """Records the batch size of every transformer forward and every block-stack run."""

    def __init__(self, pipe):
        self.calls: list[int] = []
        self.stack: list[int] = []
        tr = pipe.transformer
        self._h = [
            tr.register_forward_pre_hook(
                lambda m, a, kw: self.calls.append(a[0].shape[0]), with_kwargs=True
            ),
            # the last block's FFN runs only when the block stack is really evaluated
            tr.blocks[-1].ffn.register_forward_pre_hook(
                lambda m, a: self.stack.append(a[0].shape[0])
            ),
        ]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self._h:
            h.remove()


def test_solvers_are_used_and_unipc_is_the_reference(tiny_pipe, avatar, speech):
    ref = _run(tiny_pipe, avatar, speech)
    same = _run(tiny_pipe, avatar, speech, solver="unipc")
    torch.testing.assert_close(same, ref, atol=0, rtol=0)
    outs = {
        name: _run(tiny_pipe, avatar, speech, solver=name) for name in SOLVERS if name != "unipc"
    }
    for name, out in outs.items():
        assert (out - ref).abs().max() > 1e-4, name  # a different integrator really ran
    assert tiny_pipe.sampling_stats["steps"] == 6
    for name in SOLVERS:  # every solver keeps the pipeline's flow shift (same first sigma spacing)
        s = make_scheduler(name, tiny_pipe.scheduler.config)
        s.set_timesteps(6)
        assert float(s.sigmas[0]) == pytest.approx(1.0, abs=2e-3), name
        assert float(s.sigmas[-1]) == 0.0
    with pytest.raises(ValueError, match="unknown solver"):
        _run(tiny_pipe, avatar, speech, solver="heun")
    # `euler` is exactly x - (sigma - sigma_next) v on the flow grid
    s = make_scheduler("euler", tiny_pipe.scheduler.config)
    s.set_timesteps(4)
    x, v = torch.randn(2, 3), torch.randn(2, 3)
    for i, t in enumerate(s.timesteps):
        nxt = s.step(v, t, x).prev_sample
        torch.testing.assert_close(nxt, x - (s.sigmas[i] - s.sigmas[i + 1]) * v, atol=1e-6, rtol=0)
        x = nxt
    assert [round(float(v), 3) for v in s.sigmas] == [1.0, 0.937, 0.833, 0.625, 0.0]


def test_guidance_interval_runs_one_forward_outside(tiny_pipe, avatar, speech):
    sched = make_scheduler("unipc", tiny_pipe.scheduler.config)
    sched.set_timesteps(6)
    sigmas = [float(s) for s in sched.sigmas[:6]]
    lo, hi = 0.5, 0.97
    inside = [lo <= s <= hi for s in sigmas]
    assert 0 < sum(inside) < 6  # the interval really splits this schedule

    with _Forwards(tiny_pipe) as fw:
        ref = _run(tiny_pipe, avatar, speech)
    assert fw.calls == [3] * 6  # reference: one batched B=3 forward per step
    with _Forwards(tiny_pipe) as fw:
        out = _run(tiny_pipe, avatar, speech, guidance_interval=(lo, hi))
    assert fw.calls == [3 if g else 1 for g in inside]
    assert (
        tiny_pipe.sampling_stats["evaluations"]
        == sum(fw.calls)
        == 3 * sum(inside) + 6 - sum(inside)
    )
    assert (out - ref).abs().max() > 1e-4

    # unbatched guidance: three forwards inside, exactly one outside
    with _Forwards(tiny_pipe) as fw:
        _run(tiny_pipe, avatar, speech, guidance_interval=(lo, hi), batched_guidance=False)
    assert len(fw.calls) == 3 * sum(inside) + (6 - sum(inside)) and set(fw.calls) == {1}

    # an interval covering everything is the reference; an empty one is "no guidance"
    torch.testing.assert_close(
        _run(tiny_pipe, avatar, speech, guidance_interval=(0.0, 1.0)), ref, atol=0, rtol=0
    )
    none = _run(tiny_pipe, avatar, speech, guidance_interval=(0.0, 0.0))
    plain = _run(tiny_pipe, avatar, speech, guidance_scale=1.0, audio_guidance_scale=1.0)
    torch.testing.assert_close(none, plain, atol=1e-6, rtol=1e-6)


def test_step_cache_skips_block_stacks_and_is_exact_when_it_cannot_skip(tiny_pipe, avatar, speech):
    ref = _run(tiny_pipe, avatar, speech)
    # ratios far from 1: the accumulated error exceeds any small threshold, nothing is skipped
    strict = StepCacheConfig(threshold=0.01, mag_ratios=(1.0,) + (0.5,) * 5, retention_ratio=0.0)
    with _Forwards(tiny_pipe) as fw:
        same = _run(tiny_pipe, avatar, speech, step_cache=strict)
    torch.testing.assert_close(same, ref, atol=0, rtol=0)
    assert fw.stack == [3] * 6 and tiny_pipe.sampling_stats["cache_skipped"] == 0

    loose = StepCacheConfig(
        threshold=1.0, mag_ratios=(1.0,) * 6, max_skip_steps=2, retention_ratio=0.2
    )
    with _Forwards(tiny_pipe) as fw:
        fast = _run(tiny_pipe, avatar, speech, step_cache=loose)
    # retention int(0.2 * 6 + 0.5) = 1: step 0 computed; skip 1, 2; step 3 computed (3 > K=2
    # skips in a row); skip 4, 5
    assert len(fw.calls) == 6 and len(fw.stack) == 2, fw.stack
    stats = tiny_pipe.sampling_stats
    assert stats["cache_skipped"] == 12 and stats["evaluations"] == 18 - 12 == sum(fw.stack)
    assert (fast - ref).abs().max() > 1e-5
    # the hooks are gone after the call: the next plain call is the reference again
    torch.testing.assert_close(_run(tiny_pipe, avatar, speech), ref, atol=0, rtol=0)


def test_step_cache_calibration_records_residual_ratios(tiny_pipe, avatar, speech):
    from generator.sampling import disable_step_cache, enable_step_cache, step_cache_stats

    norms: list[float] = []
    tr = tiny_pipe.transformer
    inputs: list[torch.Tensor] = []
    h0 = tr.blocks[0].register_forward_pre_hook(lambda m, a: inputs.append(a[0].detach()))
    h1 = tr.blocks[-1].register_forward_hook(
        lambda m, a, out: norms.append(
            float(torch.linalg.norm((out - inputs[-1]).float(), dim=-1).mean())
        )
    )
    enable_step_cache(tr, None)
    try:
        _run(tiny_pipe, avatar, speech, num_inference_steps=5)
        stats = step_cache_stats(tr)
    finally:
        disable_step_cache(tr)
        h0.remove()
        h1.remove()
    assert len(norms) == 5 and stats["computed"] == 15 and stats["skipped"] == 0
    expected = [1.0] + [norms[i] / norms[i - 1] for i in range(1, 5)]
    assert stats["mag_ratios"] == pytest.approx(expected, rel=1e-5)


def test_ratio_interpolation_and_sampling_file(tmp_path):
    fine = [1.0, 1.2, 0.9, 1.1, 0.8, 1.05, 0.95, 1.3, 0.7]
    for steps in (3, 5, 9, 17):
        coarse = interpolate_ratios(fine, steps)
        assert len(coarse) == steps and coarse[0] == 1.0
        # a ratio over a coarse step is the product of the fine ratios it spans
        assert math.prod(coarse) == pytest.approx(math.prod(fine), rel=1e-9)
    assert interpolate_ratios(fine, 5)[1] == pytest.approx(1.2 * 0.9, rel=1e-9)

    cache = {"threshold": 0.05, "mag_ratios": fine, "max_skip_steps": 2, "retention_ratio": 0.25}
    write_sampling_file(tmp_path, {"step_cache": cache})
    data = read_sampling_file(tmp_path)
    cfg = step_cache_from_file(data)
    assert cfg == StepCacheConfig(0.05, tuple(fine), 2, 0.25)
    assert read_sampling_file(tmp_path / "none") is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "sampling.json").write_text("{not json")
    with pytest.raises(ValueError, match="sampling.json: not valid JSON"):
        read_sampling_file(tmp_path / "bad")
    with pytest.raises(ValueError, match="guidance_interval"):
        SamplingOptions(guidance_interval=(0.8, 0.2))
    with pytest.raises(ValueError, match="unknown solver"):
        SamplingOptions(solver="ddim")
    with pytest.raises(ValueError, match="mag_ratios"):
        StepCacheConfig(threshold=0.1, mag_ratios=())
    np.testing.assert_allclose(interpolate_ratios([1.0, 2.0], 2), [1.0, 2.0])


def test_renderer_fast_uses_the_registered_student(tiny_dir, avatar, speech, tmp_path):
    import shutil

    from generator.render_types import RenderRequest
    from generator.renderer_actavatar import load_actavatar_renderer

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_dir, teacher)
    with pytest.raises(ValueError, match=r"teacher: no distilled student for --fast"):
        load_actavatar_renderer(teacher, device="cpu", sampling=SamplingRequest(fast=True))
    with pytest.raises(ValueError, match="no calibrated step cache"):
        load_actavatar_renderer(teacher, device="cpu", sampling=SamplingRequest(step_cache=True))

    student = tmp_path / "student"
    shutil.copytree(tiny_dir, student)
    record = {
        "mode": "trajectory",
        "steps": 2,
        "solver": "euler",
        "guidance_scale": 1.0,
        "audio_guidance_scale": 1.0,
        "evaluations_per_clip": 2,
    }
    write_sampling_file(student, {"student": record})
    write_sampling_file(teacher, {"students": [{"path": str(student), "steps": 2}]})
    renderer = load_actavatar_renderer(teacher, device="cpu", sampling=SamplingRequest(fast=True))
    assert renderer.pipeline.name_or_path == str(student)
    assert renderer.num_inference_steps == 2 and renderer.solver == "euler"
    assert renderer.guidance_scale == 1.0 and "distilled student" in renderer.model_note
    req = RenderRequest(
        index=0,
        num_frames=F,
        fps=25,
        width=W,
        height=H,
        audio=speech[: int(F / 25 * 16000)],
        prompt=PROMPT,
        image=avatar,
        seed=3,
    )
    with _Forwards(renderer.pipeline) as fw:
        frames = renderer.render(req)
    assert frames.shape == (F, H, W, 3) and fw.calls == [1, 1]  # one forward per step
    assert renderer.last_stats["evaluations"] == 2 and renderer.last_stats["solver"] == "euler"

    cache = {"threshold": 0.1, "mag_ratios": [1.0, 1.0, 1.0]}
    write_sampling_file(teacher, {"step_cache": cache})
    cached = load_actavatar_renderer(
        teacher, device="cpu", sampling=SamplingRequest(step_cache=True)
    )
    assert cached.step_cache == StepCacheConfig(0.1, (1.0, 1.0, 1.0))


def test_calibrate_pipeline_writes_ratios_and_keeps_students(tiny_dir, tmp_path):
    import shutil

    from generator.calibration import calibrate_pipeline

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_dir, folder)
    write_sampling_file(folder, {"students": [{"path": "s"}]})
    calibrate_pipeline(folder, 0.07, height=H, width=W, num_frames=F, steps=4, seeds=(0,))
    data = read_sampling_file(folder)
    assert data["students"] == [{"path": "s"}]
    cache = step_cache_from_file(data)
    assert cache.threshold == 0.07 and len(cache.mag_ratios) == 4
    assert cache.mag_ratios[0] == 1.0 and all(r > 0 for r in cache.mag_ratios)


def test_bench_sampler_can_run_the_pipeline_loop(tiny_pipe):
    from generator.eval.sampling import SamplerOptions, sample_clips
    from generator.pipeline_actavatar import Conditioning, Guidance, denoise
    from generator.prompting import unconditional_phase_ids

    model = tiny_pipe.transformer
    g = torch.Generator().manual_seed(0)
    batch = {
        "latents": torch.randn(2, 48, 3, 4, 6, generator=g),
        "text": torch.randn(2, 16, 32, generator=g),
        "audio": torch.randn(2, 9, 2, 16, generator=g),
        "phase_ids": torch.zeros(2, 16, dtype=torch.long),
    }
    opts = SamplerOptions(steps=3, seed=4, text_scale=5.0, audio_scale=4.0, solver="unipc")
    with _Forwards(tiny_pipe) as fw:
        out = sample_clips(model, batch, opts)
    assert fw.calls == [6, 6, 6]  # B=2 clips x 3 guidance predictions, batched, per step
    x = torch.randn(batch["latents"].shape, generator=torch.Generator().manual_seed(4))
    ref, stats = denoise(
        model,
        make_scheduler("unipc", {"flow_shift": 5.0}),
        x,
        batch["latents"][:, :, :1],
        Conditioning(
            batch["text"],
            batch["phase_ids"],
            torch.zeros(1, 16, 32),
            unconditional_phase_ids(1, 16),
            batch["audio"],
        ),
        Guidance(5.0, 4.0),
        3,
    )
    torch.testing.assert_close(out, ref, atol=0, rtol=0)
    assert stats["evaluations"] == 9
    euler = sample_clips(model, batch, SamplerOptions(steps=3, seed=4))  # default: own Euler loop
    assert (euler - out).abs().max() > 1e-4


def test_the_default_cache_threshold_is_the_benchs_and_the_cli_calibrates(tiny_dir, tmp_path):
    import json
    import shutil

    from support import REPO
    from typer.testing import CliRunner

    from generator.sampling import STEP_CACHE_THRESHOLD
    from orchestrator.cli import app

    bench = json.loads((REPO / "docs/eval/sampling/sampling.json").read_text())
    assert bench["step_cache"]["threshold"] == STEP_CACHE_THRESHOLD
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_dir, folder)
    runner = CliRunner()
    bad = runner.invoke(app, ["checkpoints", "calibrate", str(tmp_path)])
    assert bad.exit_code == 2 and "no model_index.json" in bad.output
    args = ["--size", f"{H}x{W}", "--frames", str(F), "--steps", "4"]
    ok = runner.invoke(app, ["checkpoints", "calibrate", str(folder), *args])
    assert ok.exit_code == 0, ok.output
    cache = step_cache_from_file(read_sampling_file(folder))
    assert cache.threshold == STEP_CACHE_THRESHOLD and len(cache.mag_ratios) == 4


def test_fast_picks_the_best_measured_student_and_says_which(tmp_path):
    """`--fast` on a teacher with several students: a student measured within the reference's
    noise beats a cheaper unmeasured or failing one; among failing ones the fewest failed
    metrics wins; without measurements the fewest evaluations (the old rule). The note says
    which student runs and why."""
    from generator.sampling import (
        SamplingRequest,
        choose_student,
        find_student,
        resolve_sampling,
        write_student_measurement,
    )

    teacher = tmp_path / "teacher"
    teacher.mkdir()
    folders = {}
    for name, steps in (("s4", 4), ("s8", 8), ("s8id", 8)):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        rec = {
            "mode": "trajectory",
            "steps": steps,
            "solver": "euler",
            "guidance_scale": 1.0,
            "audio_guidance_scale": 1.0,
            "evaluations_per_clip": steps,
        }
        write_sampling_file(folders[name], {"student": rec})
    entries = [{"path": str(p)} for p in folders.values()]
    write_sampling_file(teacher, {"students": entries})
    # nothing measured: the fewest evaluations
    path, _, why = choose_student(teacher)
    assert path == folders["s4"] and "no measured quality" in why
    # measured: the 4-step fails two metrics, the plain 8-step one, the identity 8-step none
    src = "docs/eval/sampling"
    write_student_measurement(
        folders["s4"],
        {"within_noise": False, "worse": ["lip_corr -0.03", "identity_err +0.06"], "source": src},
    )
    write_student_measurement(
        folders["s8"], {"within_noise": False, "worse": ["identity_err +0.05"], "source": src}
    )
    path, student, why = choose_student(teacher)
    assert path == folders["s8"] and "NOT within" in why and "identity_err +0.05" in why
    write_student_measurement(folders["s8id"], {"within_noise": True, "worse": [], "source": src})
    path, student, why = choose_student(teacher)
    assert path == folders["s8id"] and student["measured"]["within_noise"]
    assert "best measured student of 3 registered students: within" in why
    assert find_student(teacher) == (path, student)
    resolved = resolve_sampling(teacher, SamplingRequest(fast=True))
    assert resolved.folder == folders["s8id"]
    assert resolved.renderer_kwargs["num_inference_steps"] == 8
    assert str(folders["s8id"]) in resolved.note and "within the reference's noise" in resolved.note
    with pytest.raises(ValueError, match="not a distilled student"):
        write_student_measurement(teacher, {"within_noise": True})
    with pytest.raises(ValueError, match="needs within_noise"):
        write_student_measurement(folders["s4"], {"worse": []})
