"""Stage `distill`: the student trains, its targets are the guided teacher's, it resumes
exactly like stages 1 and 2, and it exports a pipeline folder the renderer loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from train_helpers import tiny_config

from generator.train.stages import trainer_for
from generator.train.trainer import find_checkpoints


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, stage1_adapter) -> Path:
    """A tiny ActAvatar teacher pipeline: preset weights + a non-zero adapter and phase table
    (so audio and phase ids change its predictions), exported with the preset's encoders."""
    from generator.train.models import export_pipeline, load_transformer, resolve_base

    base = resolve_base("preset:tiny")
    model = load_transformer(base)
    model.load_audio_adapter(stage1_adapter)
    torch.manual_seed(5)
    with torch.no_grad():
        model.phase_embedding.weight.normal_(std=0.5)
        model.phase_embedding.weight[model.phase_pad_id].zero_()
    root = tmp_path_factory.mktemp("teacher")
    model.save_pretrained(root / "transformer", safe_serialization=True)
    return export_pipeline(root / "transformer", root / "pipeline", base)


def _arch(config) -> dict:
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


def _cfg(tmp: Path, cache: Path, teacher: Path, name: str = "tiny-distill", **kw):
    return tiny_config(tmp, name.replace("tiny-", ""), cache, distill__teacher=str(teacher), **kw)


def test_distill_student_learns_the_guided_teacher_and_exports(tmp_path, tiny_cache, teacher_dir):
    from generator.pipeline_actavatar import ActAvatarPipeline
    from generator.sampling import find_student, read_sampling_file

    cfg = _cfg(tmp_path, tiny_cache, teacher_dir, train__max_steps=3, train__checkpoint_every=3)
    tr = trainer_for(cfg, echo=False).setup()
    assert type(tr).__name__ == "DistillTrainer" and tr.substeps == 2
    assert tr.sigmas.tolist()[-1] == 0.0 and len(tr.sigmas) == 5
    student, teacher = tr.unwrapped, tr.teacher
    # the student starts as the teacher, with every module of it (adapter, PACA, time-aware)
    assert _arch(student.config) == _arch(teacher.config)
    s0, t0 = student.state_dict(), teacher.state_dict()
    assert s0.keys() == t0.keys() and all(torch.equal(s0[k], t0[k]) for k in t0)

    batch = next(iter(tr.make_dataloader(0, 1)))
    with torch.no_grad():
        start = float(tr.compute_loss(batch))
    for _ in range(20):
        tr.training_step([batch])
    with torch.no_grad():
        end = float(tr.compute_loss(batch))
    assert start > 1e-3 and end < 0.7 * start, (start, end)
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(teacher.state_dict()[k], t0[k]) for k in t0)  # teacher untouched

    # a full run exports the student and registers it with the teacher
    cfg2 = _cfg(
        tmp_path / "run", tiny_cache, teacher_dir, train__max_steps=2, train__checkpoint_every=2
    )
    summary = trainer_for(cfg2, echo=False).train()
    out = Path(summary["pipeline"])
    rec = read_sampling_file(out)["student"]
    assert rec["steps"] == 4 and rec["solver"] == "euler" and rec["evaluations_per_clip"] == 4
    assert rec["folded_guidance"] == {"guidance_scale": 5.0, "audio_guidance_scale": 5.0}
    assert rec["guidance_scale"] == 1.0 and rec["teacher"] == str(teacher_dir.resolve())
    assert find_student(teacher_dir) == (out.resolve(), rec)
    assert find_student(out) == (out, rec)
    saved = json.loads((find_checkpoints(cfg2.output_dir)[-1] / "train_config.json").read_text())
    assert saved["stage"] == "distill" and saved["distill"]["teacher_sha256"] == tr.teacher_sha256
    pipe = ActAvatarPipeline.from_pretrained(out, use_safetensors=True)
    assert _arch(pipe.transformer.config) == _arch(teacher.config)


def test_targets_are_the_teachers_guided_sampler(tmp_path, tiny_cache, teacher_dir):
    from generator.pipeline_actavatar import combine_guidance
    from generator.train.distill import segment_targets
    from generator.train.losses import noisy_inputs

    cfg = _cfg(tmp_path, tiny_cache, teacher_dir)
    tr = trainer_for(cfg, echo=False).setup()
    batch = next(iter(tr.make_dataloader(0, 1)))
    lat, noise = batch["latents"], batch["noise"]
    sigma = torch.tensor([0.9, 0.6])
    xt, ts, mask = noisy_inputs(lat, noise, sigma, 1, tr.patch_hw)
    with torch.no_grad():
        v = tr.teacher_velocity(batch, xt, sigma)
        neg, neg_ids = tr.negative
        t = tr.teacher
        audio, emb, ids = batch["audio"], batch["prompt_embeds"], batch["phase_ids"]
        v_u = t(xt, ts, neg.expand(2, -1, -1), phase_ids=neg_ids.expand(2, -1)).sample
        v_t = t(xt, ts, emb, phase_ids=ids).sample
        v_ta = t(xt, ts, emb, phase_ids=ids, audio_embeds=audio).sample
        manual = combine_guidance(v_u, v_t, v_ta, 5.0, 5.0)
        torch.testing.assert_close(v, manual, atol=1e-4, rtol=1e-4)
        assert (v_ta - v_t).abs().max() > 1e-3 and (v_t - v_u).abs().max() > 1e-3

        # one sub-step: the chord is the teacher's velocity at the segment start
        one = segment_targets(
            lambda x, s: tr.teacher_velocity(batch, x, s), xt, lat, sigma, sigma - 0.3, 1, 5.0, 1
        )
        torch.testing.assert_close(one[:, :, 1:], v[:, :, 1:], atol=1e-5, rtol=1e-5)
        # a field that is constant in x integrates exactly: the chord is that constant
        c = torch.randn_like(xt)
        chord = segment_targets(lambda x, s: c, xt, lat, sigma, sigma - 0.3, 5, 5.0, 1)
        torch.testing.assert_close(chord[:, :, 1:], c[:, :, 1:], atol=1e-5, rtol=1e-5)
        # a field v = x: Euler over sub-steps is the product of (1 + ds) (not a one-step chord)
        lin = segment_targets(lambda x, s: x, xt, lat, sigma, sigma - 0.3, 3, 1.0, 0)
        ds = -0.1
        torch.testing.assert_close(lin, xt * ((1 + ds) ** 3 - 1) / -0.3, atol=1e-5, rtol=1e-5)


def _losses(run_dir: Path) -> dict[int, float]:
    out = {}
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["event"] == "step":
            out[rec["step"]] = rec["loss"]
    return out


@pytest.mark.parametrize("mode", ["trajectory", "guidance"])
def test_distill_resume_gives_the_same_later_losses_and_weights(
    tmp_path, tiny_cache, teacher_dir, mode
):
    from safetensors.torch import load_file

    common = dict(
        train__max_steps=4,
        train__checkpoint_every=100,
        train__gradient_accumulation_steps=2,
        data__batch_size=1,
        optim__warmup_steps=2,
        distill__mode=mode,
        distill__export="false",
    )
    full = _cfg(tmp_path / "full", tiny_cache, teacher_dir, **common)
    trainer_for(full, echo=False).train()
    cut = _cfg(tmp_path / "cut", tiny_cache, teacher_dir, **common)
    first = trainer_for(cut, echo=False).train(stop_after=2)
    assert first["step"] == 2 and not first["finished"]
    resumed = trainer_for(cut, echo=False)
    summary = resumed.train()
    assert resumed.step == 4 and summary["finished"] and "pipeline" not in summary
    a, b = _losses(Path(full.output_dir)), _losses(Path(cut.output_dir))
    assert set(a) == {1, 2, 3, 4} and len(set(a.values())) == 4  # losses really move
    for k in (3, 4):
        assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-7)
    wa = load_file(
        str(
            find_checkpoints(full.output_dir)[-1]
            / "transformer"
            / "diffusion_pytorch_model.safetensors"
        )
    )
    wb = load_file(
        str(
            find_checkpoints(cut.output_dir)[-1]
            / "transformer"
            / "diffusion_pytorch_model.safetensors"
        )
    )
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6


def test_distill_config_errors(tmp_path, tiny_cache):
    from generator.train.config import ConfigError

    with pytest.raises(ConfigError, match=r"field 'distill.teacher': is required"):
        tiny_config(tmp_path, "distill", tiny_cache, distill__teacher="''")
    with pytest.raises(ConfigError, match=r"field 'distill.student_steps'"):
        tiny_config(tmp_path, "distill", tiny_cache, distill__student_steps=16)
    with pytest.raises(ConfigError, match=r"field 'distill.mode'"):
        tiny_config(tmp_path, "distill", tiny_cache, distill__mode="dmd")
    cfg = tiny_config(tmp_path, "distill", tiny_cache, distill__teacher=str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="distill.teacher.*no transformer/config.json"):
        trainer_for(cfg, echo=False).setup()


def test_shipped_distill_configs_load():
    from generator.train import CONFIG_DIR
    from generator.train.config import load_config

    got = {}
    for name in ("tiny-distill", "tiny-distill-guidance", "paper-distill", "paper-distill-4"):
        cfg = load_config(CONFIG_DIR / f"{name}.yaml")
        got[name] = (cfg.stage, cfg.distill.mode, cfg.distill.student_steps)
    assert got == {
        "tiny-distill": ("distill", "trajectory", 4),
        "tiny-distill-guidance": ("distill", "guidance", 8),
        "paper-distill": ("distill", "trajectory", 8),
        "paper-distill-4": ("distill", "trajectory", 4),
    }
    paper = load_config(CONFIG_DIR / "paper-distill-guidance.yaml")
    assert (paper.distill.mode, paper.distill.teacher_steps, paper.train.mixed_precision) == (
        "guidance",
        40,
        "bf16",
    )


@pytest.mark.slow
def test_cli_train_distill_registers_the_student(fresh_home, tmp_path, tiny_cache, teacher_dir):
    from typer.testing import CliRunner

    from generator.train import CONFIG_DIR
    from orchestrator.cli import app

    runner = CliRunner()
    sets = [
        "--set",
        f"output_dir={tmp_path / 'run'}",
        "--set",
        f"data.dataset={tiny_cache}",
        "--set",
        "train.max_steps=2",
        "--set",
        "train.checkpoint_every=2",
    ]
    bad = runner.invoke(
        app,
        ["train", "distill", str(CONFIG_DIR / "tiny-distill.yaml"), *sets]
        + ["--set", f"distill.teacher={tmp_path / 'none'}"],
    )
    assert bad.exit_code == 2 and "distill.teacher" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
    r = runner.invoke(
        app,
        ["train", "distill", str(CONFIG_DIR / "tiny-distill.yaml"), *sets]
        + ["--set", f"distill.teacher={teacher_dir}", "--json"],
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{") :])
    assert report["student"]["evaluations_per_clip"] == 4 and Path(report["pipeline"]).is_dir()
    rows = json.loads(runner.invoke(app, ["checkpoints", "list", "--json"]).output)
    assert [(row["stage"], row["step"]) for row in rows] == [("distill", 2)]
