"""Controls, references, probes, contrast and the bench sampler (issue 10 instrument)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generator.eval.bench import MODEL_OVERRIDES
from generator.eval.controls import (
    oracle_mask,
    oracle_routing,
    reference_levels,
    shuffled_phase_ids,
    wrong_layouts,
)
from generator.eval.phase_focus import capture_text_attention, phase_contrast
from generator.eval.probes import frame_time_r2, key_phase_accuracy
from generator.eval.world import SyntheticWorld, WorldConfig
from generator.presets import get_transformer_config
from generator.transformer_actavatar import ActAvatarTransformer3DModel


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(WorldConfig(observation_noise=0.0))


def _model(**kw) -> ActAvatarTransformer3DModel:
    torch.manual_seed(0)
    return ActAvatarTransformer3DModel(
        **get_transformer_config("tiny", **MODEL_OVERRIDES, **kw)
    ).eval()


def test_reference_levels_order_and_range(world):
    clips = world.dataset(64, 5, "test")
    ref = reference_levels(world, clips, draws=16)
    chance, blind, modal = ref["chance"], ref["anchor-blind"], ref["anchor-blind modal"]
    # knowing the actions beats chance; ignoring anchors stays well below perfect timing
    assert chance["hit_rate"] < blind["hit_rate"] and chance["temporal_iou"] < blind["temporal_iou"]
    assert blind["temporal_iou"] < 0.8 and modal["temporal_iou"] < 0.9
    assert 0.1 < chance["hit_rate"] < 0.4  # ~1/4 for the right action, times the overlap


def test_oracle_mask_allows_base_pad_and_own_phase_only():
    ids = torch.tensor([[0, 1, 1, 2, 2, 0, 5]])
    mask = oracle_mask(ids, [[(0, 2), (3, 4)]], num_latent_frames=6, tokens_per_frame=2, pad_id=5)
    assert mask.shape == (1, 1, 12, 7)
    allowed = torch.isfinite(mask[0, 0, ::2])  # one row per latent frame
    assert allowed[:, [0, 5, 6]].all()  # base and padding everywhere
    # latent 1..2 = window (0, 2) -> phase 1; latent 4 = window (3, 4) -> phase 2
    assert allowed[1, 1] and allowed[2, 2] and not allowed[1, 3] and not allowed[3, 1]
    assert allowed[4, 3] and not allowed[4, 1] and not allowed[0, 1] and not allowed[5, 3]


def test_oracle_routing_sets_and_restores_processors():
    model = _model()
    before = [type(b.attn2.get_processor()) for b in model.blocks]
    with oracle_routing(model) as procs:
        assert len(procs) == len(model.blocks)
        assert all(b.attn2.get_processor() is p for b, p in zip(model.blocks, procs))
    assert [type(b.attn2.get_processor()) for b in model.blocks] == before


def test_shuffled_ids_and_wrong_layouts(world):
    ids = torch.tensor([[0, 1, 1, 2, 3, 5], [0, 1, 2, 2, 5, 5]])
    out = shuffled_phase_ids(ids, [3, 2])
    assert out.tolist() == [[0, 2, 2, 3, 1, 5], [0, 2, 1, 1, 5, 5]]
    clips = world.dataset(20, 2, "test")
    wrong = wrong_layouts(world, clips, seed=0)
    for lay, clip in zip(wrong, clips):
        assert len(lay) == len(clip.windows) and lay != [tuple(w) for w in clip.windows]


def test_contrast_is_zero_without_routing_and_one_with_it():
    ids = np.array([0, 1, 1, 2, 2, 6])
    windows = [[(0, 2), (2, 4)]]
    fixed = np.zeros((1, 1, 5, 6))
    fixed[..., :] = [0.2, 0.3, 0.3, 0.1, 0.1, 0.0]  # prefers phase 1 everywhere
    assert phase_contrast(fixed, ids[None], windows)[0] == pytest.approx(0.0)
    routed = np.zeros((1, 1, 5, 6))
    routed[0, 0, 1:3] = [0.5, 0.25, 0.25, 0, 0, 0]
    routed[0, 0, 3:5] = [0.5, 0, 0, 0.25, 0.25, 0]
    assert phase_contrast(routed, ids[None], windows)[0] == pytest.approx(1.0)


def test_probes_on_known_signals():
    rng = np.random.default_rng(0)
    n, f, d = 40, 9, 8
    timed = rng.standard_normal((n, f, d))
    timed[..., 0] += np.arange(f)  # one channel carries the frame index
    assert frame_time_r2(timed) > 0.8  # noise var 1 vs index var 6.7: R^2 ~ 0.87
    assert frame_time_r2(rng.standard_normal((n, f, d))) < 0.1
    model = _model()
    text = torch.randn(16, 10, 32)
    ids = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 2, 5, 5]] * 16)
    with torch.no_grad():
        torch.nn.init.normal_(model.phase_embedding.weight, std=3.0)
    assert key_phase_accuracy(model, text, ids, use_paca=True) == 1.0
    assert key_phase_accuracy(model, text, ids, use_paca=False) < 0.8  # random states


def test_sampler_keeps_frame0_and_matches_the_pipeline_step():
    from generator.eval.sampling import SamplerOptions, sample_clips

    model = _model(time_aware_phases=True)
    g = torch.Generator().manual_seed(0)
    batch = {
        "latents": torch.randn(2, 12, 5, 4, 4, generator=g),
        "text": torch.randn(2, 10, 32, generator=g),
        "audio": torch.randn(2, 17, 2, 16, generator=g),
        "phase_ids": torch.tensor([[0, 0, 1, 1, 2, 2, 0, 5, 5, 5]] * 2),
        "phase_windows": torch.tensor(
            [[[0.0, 5.0], [1.0, 3.0], [3.0, 5.0], [0, 0], [0, 0], [0, 0]]] * 2
        ),
    }
    a = sample_clips(model, batch, SamplerOptions(steps=3, seed=1))
    b = sample_clips(model, batch, SamplerOptions(steps=3, seed=1))
    assert torch.equal(a, b) and torch.equal(a[:, :, 0], batch["latents"][:, :, 0])
    with capture_text_attention(model, 4) as rec:
        sample_clips(model, batch, SamplerOptions(steps=2, seed=1))
    assert rec.calls == [2] * len(model.blocks)


def test_bench_trains_through_the_trainers_loss():
    import generator.eval.train_loop as loop
    from generator.train import losses

    assert loop.flow_matching_loss is losses.flow_matching_loss
    assert not hasattr(loop, "sample")  # sampling lives in generator.eval.sampling


def _sampler_batch(windows: bool = True):
    g = torch.Generator().manual_seed(0)
    return {
        "latents": torch.randn(2, 12, 5, 4, 4, generator=g),
        "text": torch.randn(2, 10, 32, generator=g),
        "audio": torch.randn(2, 17, 2, 16, generator=g),
        "phase_ids": torch.tensor([[0, 0, 1, 1, 2, 2, 0, 5, 5, 5]] * 2),
        "phase_windows": torch.tensor(
            [[[0.0, 5.0], [1.0, 3.0], [3.0, 5.0], [0, 0], [0, 0], [0, 0]]] * 2
        )
        if windows
        else None,
    }


def _trained_time_aware():
    model = _model(time_aware_phases=True)
    with torch.no_grad():  # non-zero time-aware weights and phase table (a trained model)
        for block in model.blocks:
            block.phase_time.weight.normal_(std=2.0)
        model.phase_embedding.weight.normal_(std=1.0)
    return model


def test_bench_sampler_equals_the_pipelines_denoise():
    """The bench's Euler loop is the pipeline's `denoise` step by step (same grid)."""
    from generator.eval.sampling import LinearEulerScheduler, SamplerOptions, sample_clips
    from generator.pipeline_actavatar import Conditioning, Guidance, denoise
    from generator.prompting import unconditional_phase_ids

    model = _trained_time_aware()
    batch = _sampler_batch()
    bench = sample_clips(model, batch, SamplerOptions(steps=4, seed=3))
    x = torch.randn(batch["latents"].shape, generator=torch.Generator().manual_seed(3))
    cond = Conditioning(
        prompt_embeds=batch["text"],
        phase_ids=batch["phase_ids"],
        negative_prompt_embeds=torch.zeros_like(batch["text"][:1]),
        negative_phase_ids=unconditional_phase_ids(1, 10),
        audio_embeds=batch["audio"],
        phase_windows=batch["phase_windows"],
    )
    with torch.no_grad():
        pipe, stats = denoise(
            model,
            LinearEulerScheduler(),
            x,
            batch["latents"][:, :, :1],
            cond,
            Guidance(1.0, 1.0),
            4,
        )
    assert stats["steps"] == 4 and stats["evaluations"] == 4
    torch.testing.assert_close(bench, pipe, rtol=0, atol=1e-6)
    assert (bench[:, :, 1:] - x[:, :, 1:]).abs().max() > 0.1  # it did sample


def test_recording_processor_equals_the_production_time_aware_processor():
    """The bench measures attention with its own processor: on a trained time-aware model
    (non-zero phase_time weights) its output equals the production processor's."""
    model = _trained_time_aware()
    batch = _sampler_batch()
    x = torch.randn(batch["latents"].shape, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([700.0, 300.0])
    kwargs = dict(
        audio_embeds=batch["audio"],
        phase_ids=batch["phase_ids"],
        phase_windows=batch["phase_windows"],
        return_dict=False,
    )
    with torch.no_grad():
        prod = model(x, t, batch["text"], **kwargs)[0]
        no_term = model(x, t, batch["text"], **{**kwargs, "phase_windows": None})[0]
        with capture_text_attention(model, 4) as rec:
            recorded = model(x, t, batch["text"], **kwargs)[0]
    assert (prod - no_term).abs().max() > 1e-3  # the term is active
    torch.testing.assert_close(recorded, prod, rtol=1e-4, atol=1e-5)
    assert rec.calls == [1] * len(model.blocks)


def test_oracle_mask_from_windows_equals_the_world_mask(world):
    from generator.eval.controls import oracle_mask_from_windows
    from generator.prompting import phase_windows

    clips = world.dataset(6, 3, "test")
    cfg = world.config
    ids = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3, 5, 5]] * len(clips))
    wins = torch.stack([phase_windows(c.prompt, cfg.fps, cfg.num_latent_frames, 4) for c in clips])
    a = oracle_mask(ids, [c.windows for c in clips], cfg.num_latent_frames, 4, pad_id=5)
    b = oracle_mask_from_windows(ids, wins, cfg.num_latent_frames, 4)
    # generated frames agree; the clean conditioning frame 0 (latent 0 = clip time 0 in the
    # TI2V layout, loss-masked) may also see a phase that starts at 0 s in the product windows
    assert torch.equal(torch.isinf(a[:, :, 4:]), torch.isinf(b[:, :, 4:]))
    assert torch.isinf(a).sum() > torch.isinf(b).sum() > 0


def test_paired_verdicts_and_one_seed_is_not_measurable():
    from generator.eval.report import paired_difference

    def run(seed, iou):
        return {"seed": seed, "metrics": {"temporal_iou": iou, "hit_rate": iou}}

    # the unpaired means differ by 0.01 with a seed spread of 0.1; the pairs are consistent
    res = {
        "runs": {
            "a": [run(0, 0.30), run(1, 0.50), run(2, 0.70)],
            "b": [run(0, 0.31), run(1, 0.515), run(2, 0.709)],
        }
    }
    p = paired_difference(res, "a", "b", "temporal_iou")
    assert p["n"] == 3 and p["mean"] == pytest.approx(-0.0113, abs=1e-4)
    assert p["ci"][1] < 0 and p["verdict"].startswith("reversed")
    one = {"runs": {"a": [run(0, 0.3)], "b": [run(0, 0.2)]}}
    q = paired_difference(one, "a", "b", "temporal_iou")
    assert q["verdict"] == "not measurable (one seed)"
