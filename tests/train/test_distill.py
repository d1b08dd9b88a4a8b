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

    full, cut, resumed = _full_and_cut_at_2(
        tmp_path, tiny_cache, teacher_dir, distill__mode=mode, distill__export="false"
    )
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


# ------------------------------------------------------------------------ issue 21: pool, identity
def _write_pool(path: Path, cache: Path, teacher: Path, steps: int = 4, seed: int = 0) -> Path:
    """A trajectory pool over every clip of `cache`: random latents on the `steps`-step student
    grid, written with the teacher's weights hash (what the judged sampler would record)."""
    from generator.sampling import make_scheduler
    from generator.train.data import read_index
    from generator.train.distill import write_trajectory_pool
    from generator.train.trainer import model_files_sha256

    g = torch.Generator().manual_seed(seed)
    sched = make_scheduler("euler", {"flow_shift": 5.0})
    sched.set_timesteps(steps)
    grid = sched.sigmas.float()
    samples = read_index(cache)["samples"] or read_index(cache / "cache")["samples"]
    trajs = {
        cid: torch.randn(len(grid), *meta["latent_shape"], generator=g)
        for cid, meta in samples.items()
    }
    sampler = {"solver": "unipc", "steps": 40, "guidance_scale": 3.0, "audio_guidance_scale": 3.0}
    sha = model_files_sha256(Path(teacher) / "transformer")
    return write_trajectory_pool(path, trajs, grid, sha, sampler)


def _full_and_cut_at_2(tmp_path, tiny_cache, teacher_dir, **extra):
    """An uninterrupted 4-step run, and the same config stopped after step 2: (its config, the
    cut config, a fresh trainer on the cut run that resumes it)."""
    common = dict(
        train__max_steps=4,
        train__checkpoint_every=100,
        train__gradient_accumulation_steps=2,
        data__batch_size=1,
        optim__warmup_steps=2,
        **extra,
    )
    full = _cfg(tmp_path / "full", tiny_cache, teacher_dir, **common)
    trainer_for(full, echo=False).train()
    cut = _cfg(tmp_path / "cut", tiny_cache, teacher_dir, **common)
    first = trainer_for(cut, echo=False).train(stop_after=2)
    assert first["step"] == 2 and not first["finished"]
    return full, cut, trainer_for(cut, echo=False)


def _student_pred(tr, batch, xt, sigma):
    from generator.conditioning import clean_frame_mask, token_timesteps

    b, _, f, h, w = xt.shape
    mask = clean_frame_mask(f, 1, b)
    ts = token_timesteps(sigma * 1000.0, mask, (h // tr.patch_hw[0]) * (w // tr.patch_hw[1]))
    return tr.student_velocity(batch, xt, ts), mask


def test_pool_student_learns_the_pools_chords(tmp_path, tiny_cache, teacher_dir):
    """`distill.pool`: segment k starts at the pool's latent at sigma_k and its target is the
    chord to sigma_{k+1}; the teacher is not loaded. A trainer that ignored the pool (noised
    data, teacher targets) gives another loss."""
    from generator.train.distill import read_trajectory_pool

    pool = _write_pool(tmp_path / "pool.safetensors", tiny_cache, teacher_dir)
    cfg = _cfg(tmp_path, tiny_cache, teacher_dir, distill__pool=str(pool))
    tr = trainer_for(cfg, echo=False).setup()
    assert tr.teacher is None and tr.pool is not None
    traj = read_trajectory_pool(pool)["trajectories"]
    batch = next(iter(tr.make_dataloader(0, 1)))
    k = tr._segments(batch["positions"])
    s0, s1 = tr.sigmas[k], tr.sigmas[k + 1]
    x0 = torch.stack([traj[cid][int(j)] for cid, j in zip(batch["ids"], k)])
    x1 = torch.stack([traj[cid][int(j) + 1] for cid, j in zip(batch["ids"], k)])
    with torch.no_grad():
        pred, mask = _student_pred(tr, batch, x0, s0)
        target = (x1 - x0) / (s1 - s0).view(-1, 1, 1, 1, 1)
        err = (pred - target) ** 2
        weight = mask[:, None, :, None, None].expand_as(err)
        manual = float((err * weight).sum() / weight.sum())
        got = float(tr.compute_loss(batch))
        plain = trainer_for(_cfg(tmp_path / "plain", tiny_cache, teacher_dir), echo=False).setup()
        other = float(plain.compute_loss(batch))
    assert got == pytest.approx(manual, rel=1e-5)
    assert abs(other - got) > 1e-3 * got  # the pool really changes the targets
    rec = tr.student_record()
    assert rec["pool"]["clips"] == 6 and rec["pool"]["sampler"]["steps"] == 40
    assert rec["folded_guidance"] == {"guidance_scale": 3.0, "audio_guidance_scale": 3.0}
    assert rec["teacher_steps"] == 40


def test_identity_term_adds_the_x0_identity_error(tmp_path, tiny_cache, teacher_dir):
    """`distill.identity_weight` x relative squared error of the x0 prediction's identity
    channels against the clean first frame's, on top of trajectory matching."""
    pool = _write_pool(tmp_path / "pool.safetensors", tiny_cache, teacher_dir)
    base = _cfg(tmp_path / "a", tiny_cache, teacher_dir, distill__pool=str(pool))
    with_id = _cfg(
        tmp_path / "b",
        tiny_cache,
        teacher_dir,
        distill__pool=str(pool),
        distill__identity_weight=0.5,
        distill__identity_channels="[4, 12]",
    )
    a = trainer_for(base, echo=False).setup()
    b = trainer_for(with_id, echo=False).setup()
    assert a.identity is None and b.identity == (4, 12)
    batch = next(iter(a.make_dataloader(0, 1)))
    with torch.no_grad():
        la, lb = float(a.compute_loss(batch)), float(b.compute_loss(batch))
        k = a._segments(batch["positions"])
        s0 = a.sigmas[k]
        xt, _ = a._pool_inputs(batch, k, batch["latents"])
        pred, _ = _student_pred(a, batch, xt, s0)
        x0 = xt - s0.view(-1, 1, 1, 1, 1) * pred
        ref = batch["latents"][:, 4:12, :1]
        err = ((x0[:, 4:12, 1:] - ref) ** 2).sum(dim=(1, 3, 4)) / (ref**2).sum(dim=(1, 2, 3, 4))[
            :, None
        ]
        manual = float(err.mean())
    assert manual > 1e-3
    assert lb == pytest.approx(la + 0.5 * manual, rel=1e-5)
    assert b.student_record()["identity"] == {"weight": 0.5, "channels": [4, 12]}


def test_pool_identity_student_resumes_exactly(tmp_path, tiny_cache, teacher_dir):
    """The new objective (pool targets + identity term) resumes mid-run to the same later
    losses and weights as an uninterrupted run."""
    from safetensors.torch import load_file

    pool = _write_pool(tmp_path / "pool.safetensors", tiny_cache, teacher_dir)
    full, cut, resumed = _full_and_cut_at_2(
        tmp_path,
        tiny_cache,
        teacher_dir,
        distill__export="false",
        distill__pool=str(pool),
        distill__identity_weight=1.0,
        distill__identity_channels="[0, 16]",
    )
    assert resumed.train()["finished"] and resumed.step == 4
    a, b = _losses(Path(full.output_dir)), _losses(Path(cut.output_dir))
    assert set(a) == {1, 2, 3, 4} and len(set(a.values())) == 4
    for k in (3, 4):
        assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-7)
    name = "transformer/diffusion_pytorch_model.safetensors"
    wa = load_file(str(find_checkpoints(full.output_dir)[-1] / name))
    wb = load_file(str(find_checkpoints(cut.output_dir)[-1] / name))
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6


def test_teacher_trajectory_records_the_samplers_latents_on_the_grid():
    """The pool's slots are the judged sampler's own latents: slot 0 the starting noise, a
    later slot the latents after the UniPC-40 step that lands on the Euler sigma (the 4-step
    Euler grid lies on the 40-step grid within 2.2e-3), the last the sampler's output."""
    import contextlib
    from types import SimpleNamespace

    from generator.pipeline_actavatar import Conditioning, Guidance, denoise
    from generator.sampling import make_scheduler
    from generator.train.distill import student_sigmas, teacher_trajectory

    class Field(torch.nn.Module):  # a smooth velocity field with the transformer's interface
        dtype = torch.float32
        config = SimpleNamespace(patch_size=(1, 2, 2))

        def cache_context(self, name, **kw):
            return contextlib.nullcontext()

        def forward(self, x, t, text, **kw):
            return (0.3 * x - 0.1 * torch.tanh(x) + 1e-4 * t.float().mean(),)

    model = Field()
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(2, 4, 3, 4, 4, generator=g)
    clean = torch.randn(2, 4, 1, 4, 4, generator=g)
    cond = Conditioning(torch.zeros(2, 8, 4), None, torch.zeros(1, 8, 4), None, None)
    grid, _ = student_sigmas(4, {"flow_shift": 5.0})
    guide = Guidance(1.0, 1.0)
    traj = teacher_trajectory(
        model, make_scheduler("unipc", {"flow_shift": 5.0}), noise, clean, cond, guide, 40, grid
    )
    seen = {}
    final, _ = denoise(
        model,
        make_scheduler("unipc", {"flow_shift": 5.0}),
        noise.clone(),
        clean,
        cond,
        guide,
        40,
        on_step=lambda i, t, x: seen.__setitem__(i, x.clone()),
    )
    assert traj.shape == (2, 5, 4, 3, 4, 4)
    torch.testing.assert_close(traj[:, 0, :, 1:], noise[:, :, 1:])
    torch.testing.assert_close(traj[:, :, :, :1], clean[:, None].expand(-1, 5, -1, -1, -1, -1))
    # Euler 4's sigma 0.93727 (slot 1) ~ UniPC 40's sigma 10 (0.93758): latents after step 9
    torch.testing.assert_close(traj[:, 1, :, 1:], seen[9][:, :, 1:])
    torch.testing.assert_close(traj[:, 3, :, 1:], seen[29][:, :, 1:])  # 0.62469 ~ 0.62594
    torch.testing.assert_close(traj[:, 4], final)
    assert not torch.allclose(traj[:, 1], traj[:, 2])
    with pytest.raises(ValueError, match="not on the 7-step sampler's grid"):
        teacher_trajectory(
            model, make_scheduler("unipc", {"flow_shift": 5.0}), noise, clean, cond, guide, 7, grid
        )


def test_pool_and_identity_config_errors(tmp_path, tiny_cache, teacher_dir):
    from generator.train.config import ConfigError

    def cfg(**kw):
        return _cfg(tmp_path, tiny_cache, teacher_dir, **kw)

    with pytest.raises(ConfigError, match=r"field 'distill.pool': needs distill.mode: traject"):
        cfg(distill__pool="x.safetensors", distill__mode="guidance")
    with pytest.raises(ConfigError, match=r"field 'distill.identity_weight': must be >= 0"):
        cfg(distill__identity_weight=-1)
    with pytest.raises(ConfigError, match=r"field 'distill.identity_channels': is required"):
        cfg(distill__identity_weight=1.0)
    with pytest.raises(ConfigError, match=r"field 'distill.identity_channels': has no effect"):
        cfg(distill__identity_channels="[0, 4]")
    with pytest.raises(ConfigError, match=r"field 'distill.identity_channels': must be"):
        cfg(distill__identity_weight=1.0, distill__identity_channels="[4, 4]")
    with pytest.raises(ValueError, match=r"'distill.identity_channels': \[0, 64\) exceeds"):
        trainer_for(
            cfg(distill__identity_weight=1.0, distill__identity_channels="[0, 64]"), echo=False
        ).setup()
    with pytest.raises(FileNotFoundError, match=r"'distill.pool': .* is not a file"):
        trainer_for(cfg(distill__pool=str(tmp_path / "none.safetensors")), echo=False).setup()
    # a pool of another teacher, or one whose grid does not hold the student's sigmas
    other = _write_pool(tmp_path / "p1.safetensors", tiny_cache, teacher_dir)
    from generator.train.distill import read_trajectory_pool, write_trajectory_pool

    p = read_trajectory_pool(other)
    write_trajectory_pool(tmp_path / "p2.safetensors", p["trajectories"], p["sigmas"], "x", {})
    with pytest.raises(ValueError, match=r"'distill.pool': .* sampled from another teacher"):
        trainer_for(cfg(distill__pool=str(tmp_path / "p2.safetensors")), echo=False).setup()
    with pytest.raises(ValueError, match=r"8-step student's sigma .* not on the pool's grid"):
        trainer_for(cfg(distill__pool=str(other), distill__student_steps=8), echo=False).setup()
    # a pool that misses a clip of the dataset fails at that clip's batch
    few = dict(list(p["trajectories"].items())[:1])
    write_trajectory_pool(tmp_path / "p3.safetensors", few, p["sigmas"], p["teacher_sha256"], {})
    tr = trainer_for(cfg(distill__pool=str(tmp_path / "p3.safetensors")), echo=False).setup()
    batches = iter(tr.make_dataloader(0, 6))
    with pytest.raises(ValueError, match=r"'distill.pool': no trajectory for clip"):
        for _ in range(6):
            tr.compute_loss(next(batches))


def test_a_failed_pool_write_keeps_the_old_pool_and_leaves_no_temp(tmp_path, monkeypatch):
    import safetensors.torch

    from generator.train.distill import read_trajectory_pool, write_trajectory_pool

    sigmas = torch.tensor([1.0, 0.5, 0.0])
    good = {"a": torch.ones(3, 2, 2, 1, 1)}
    path = write_trajectory_pool(tmp_path / "pool.safetensors", good, sigmas, "sha", {"s": 1})

    def torn(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"torn")  # a partial file, then the crash
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", torn)
    with pytest.raises(OSError, match="disk full"):
        write_trajectory_pool(path, {"a": torch.zeros(3, 2, 2, 1, 1)}, sigmas, "sha", {})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool.safetensors"]
    back = read_trajectory_pool(path)
    assert torch.equal(back["trajectories"]["a"], good["a"]) and back["teacher_sha256"] == "sha"
