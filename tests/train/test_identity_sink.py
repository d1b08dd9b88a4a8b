"""Issue 20, training side: `model.reference_sink`, `data.context_latents` and
`train.context_noise` in stage 2 (tiny preset, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from train_helpers import tiny_config

from generator.train import CONFIG_DIR
from generator.train.config import ConfigError, config_hash
from generator.train.data import CachedClipDataset
from generator.train.losses import flow_matching_loss
from generator.train.trainer import Trainer

SWITCHES = dict(model__reference_sink="true", data__context_latents=2, train__context_noise=0.3)


def test_switch_keys_validate_and_hash_only_when_changed(tmp_path, tiny_cache, stage1_adapter):
    plain = tiny_config(tmp_path, "stage2", tiny_cache, model__adapter=str(stage1_adapter))
    assert plain.model.reference_sink is None
    assert plain.data.context_latents == 1 and plain.train.context_noise == 0.0
    explicit = tiny_config(
        tmp_path,
        "stage2",
        tiny_cache,
        model__adapter=str(stage1_adapter),
        data__context_latents=1,
        train__context_noise=0.0,
    )
    assert config_hash(plain) == config_hash(explicit)
    hashes = {config_hash(plain)}
    for key, value in SWITCHES.items():
        cfg = tiny_config(
            tmp_path, "stage2", tiny_cache, model__adapter=str(stage1_adapter), **{key: value}
        )
        hashes.add(config_hash(cfg))
    assert len(hashes) == 4
    with pytest.raises(ConfigError, match="data.context_latents.*at least 1"):
        tiny_config(tmp_path, "stage2", tiny_cache, data__context_latents=0)
    with pytest.raises(ConfigError, match=r"train.context_noise.*\[0, 1\]"):
        tiny_config(tmp_path, "stage2", tiny_cache, train__context_noise=1.5)
    with pytest.raises(ConfigError, match="model.reference_sink.*stage-2 switch"):
        tiny_config(tmp_path, "stage1", tiny_cache, model__reference_sink="true")


def test_context_draws_are_uniform_bounded_and_deterministic(tiny_cache):
    ds = CachedClipDataset(tiny_cache, "stage2", seed=5, context_latents=2, context_noise=0.3)
    items = [ds[(i % len(ds), i)] for i in range(64)]
    ks = [it["num_context"] for it in items]
    levels = [it["context_level"] for it in items]
    assert set(ks) == {1, 2}  # uniform in [1, 2] (3 latent frames: one is always generated)
    assert all(0.0 <= s <= 0.3 for s in levels) and max(levels) > 0.15
    again = CachedClipDataset(tiny_cache, "stage2", seed=5, context_latents=2, context_noise=0.3)
    assert [again[(i % len(ds), i)]["num_context"] for i in range(64)] == ks
    assert [again[(i % len(ds), i)]["context_level"] for i in range(64)] == levels
    # the draws come after the old ones: a default dataset sees the same noise and sigma
    plain = CachedClipDataset(tiny_cache, "stage2", seed=5)
    assert torch.equal(plain[(0, 7)]["noise"], ds[(0, 7)]["noise"])
    assert plain[(0, 7)]["sigma"] == ds[(0, 7)]["sigma"]
    assert plain[(0, 7)]["num_context"] == 1 and plain[(0, 7)]["context_level"] == 0.0
    # many context latents on a short clip: clamped so one frame is always generated
    big = CachedClipDataset(tiny_cache, "stage2", seed=5, context_latents=9)
    assert max(big[(0, i)]["num_context"] for i in range(32)) == 2


class _Spy(torch.nn.Module):
    """Records the model inputs of `flow_matching_loss`; predicts zeros."""

    def forward(self, x, timestep, text, **kwargs):
        self.x, self.timestep = x.detach().clone(), timestep.detach().clone()
        return (torch.zeros_like(x),)


def test_loss_layout_noises_only_the_context_to_the_drawn_level():
    g = torch.Generator().manual_seed(0)
    b, f = 2, 3
    lat = torch.randn(b, 48, f, 4, 4, generator=g)
    noise = torch.randn(b, 48, f, 4, 4, generator=g)
    sigma = torch.tensor([0.5, 0.9])
    batch = {
        "latents": lat,
        "noise": noise,
        "sigma": sigma,
        "prompt_embeds": torch.zeros(b, 4, 8),
        "audio": torch.zeros(b, 9, 1, 1),
        "phase_ids": None,
        "audio_mask": torch.ones(b),
        "num_context": torch.tensor([1, 2]),
        "context_level": torch.tensor([0.3, 0.1]),
    }
    spy = _Spy()
    loss = flow_matching_loss(spy, batch, 1, (2, 2), reference_sink=True)
    x, ts = spy.x, spy.timestep.view(b, f + 1, 4)
    assert x.shape[2] == f + 1
    # the sink: the clip's first latent frame, clean (never noised), t = 0
    assert torch.equal(x[:, :, 0], lat[:, :, 0])
    # the context (clip frames < k): noised to the sample's level, t = 0 (level not told)
    torch.testing.assert_close(x[0, :, 1], 0.7 * lat[0, :, 0] + 0.3 * noise[0, :, 0])
    torch.testing.assert_close(x[1, :, 1:3], 0.9 * lat[1, :, :2] + 0.1 * noise[1, :, :2])
    # the frames to generate: the ordinary flow-matching interpolation at sigma
    torch.testing.assert_close(x[0, :, 2:], 0.5 * lat[0, :, 1:] + 0.5 * noise[0, :, 1:])
    torch.testing.assert_close(x[1, :, 3], 0.1 * lat[1, :, 2] + 0.9 * noise[1, :, 2])
    assert ts[0].tolist() == [[0.0] * 4, [0.0] * 4, [500.0] * 4, [500.0] * 4]
    assert ts[1].tolist() == [[0.0] * 4, [0.0] * 4, [0.0] * 4, [900.0] * 4]
    # the loss is over the generated frames only: mean of the squared velocity there
    v = noise - lat
    want = torch.cat([(v[0, :, 1:] ** 2).flatten(), (v[1, :, 2:] ** 2).flatten()]).mean()
    torch.testing.assert_close(loss, want)

    # without the switches a stage-2 batch is today's TI2V input, bit for bit
    batch.update(num_context=torch.tensor([1, 1]), context_level=torch.zeros(2))
    flow_matching_loss(spy, batch, 1, (2, 2))
    assert spy.x.shape[2] == f and torch.equal(spy.x[:, :, 0], lat[:, :, 0])
    s = sigma.view(b, 1, 1, 1, 1)
    assert torch.equal(spy.x[:, :, 1:], ((1 - s) * lat + s * noise)[:, :, 1:])


def test_stage2_with_sink_and_noised_context_trains_the_sink(tmp_path, tiny_cache, stage1_adapter):
    cfg = tiny_config(
        tmp_path,
        "stage2",
        tiny_cache,
        model__adapter=str(stage1_adapter),
        train__max_steps=2,
        train__checkpoint_every=2,
        **SWITCHES,
    )
    tr = Trainer(cfg, echo=False).setup()
    model = tr.unwrapped
    assert model.config.reference_sink is True and tr.reference_sink
    assert tr.trainable_counts["sink"] == model.sink_embedding.weight.numel()
    assert model.sink_embedding.weight.abs().max() == 0
    batch = next(iter(tr.make_dataloader(0, 1)))
    assert batch["num_context"].tolist() and batch["context_level"].max() <= 0.3
    loss = tr.compute_loss(batch)
    loss.backward()
    assert model.sink_embedding.weight.grad.abs().max() > 0
    model.zero_grad(set_to_none=True)
    summary = tr.train()
    assert model.sink_embedding.weight.abs().max() > 0  # moved from zero
    from generator.transformer_actavatar import ActAvatarTransformer3DModel

    saved = ActAvatarTransformer3DModel.from_pretrained(f"{summary['checkpoint']}/transformer")
    assert saved.config.reference_sink is True
    assert torch.equal(saved.sink_embedding.weight, model.sink_embedding.weight.detach())


@pytest.fixture
def cli(fresh_home):
    from typer.testing import CliRunner

    from orchestrator.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


@pytest.mark.slow
def test_train_stage2_cli_sink_checkpoint_exports_round_trips_and_renders(
    cli, tmp_path, tiny_cache, stage1_adapter
):
    """Issue 20's "done when": a tiny checkpoint trained by `train stage2` with the identity
    anchor and noised context loads, renders (sink on) and round-trips."""
    from PIL import Image

    from generator.render_types import RenderRequest, StructuredPrompt
    from generator.renderer_actavatar import load_actavatar_renderer
    from generator.transformer_actavatar import ActAvatarTransformer3DModel

    sets = [
        f"output_dir={tmp_path / 's2'}",
        f"data.dataset={tiny_cache}",
        f"model.adapter={stage1_adapter}",
        "train.max_steps=2",
        "train.checkpoint_every=2",
        "model.reference_sink=true",
        "data.context_latents=2",
        "train.context_noise=0.3",
    ]
    args = ["train", "stage2", CONFIG_DIR / "tiny-stage2.yaml"]
    for s in sets:
        args += ["--set", s]
    r = cli(*args, "--json")
    assert r.exit_code == 0, r.output
    (cid,) = json.loads(r.output[r.output.index("{") :])["checkpoint_ids"]
    shown = json.loads(cli("checkpoints", "show", str(cid)).output)
    assert shown["train_config"]["trainable"]["sink"] > 0

    export = tmp_path / "export"
    r = cli("checkpoints", "export", str(cid), export)
    assert r.exit_code == 0, r.output
    from generator.sampling import SamplingRequest

    renderer = load_actavatar_renderer(export, device="cpu", sampling=SamplingRequest(steps=2))
    tr = renderer.pipeline.transformer
    assert tr.config.reference_sink is True and tr.sink_embedding.weight.abs().max() > 0
    # save_pretrained / from_pretrained round trip of the trained transformer
    tr.save_pretrained(tmp_path / "again", safe_serialization=True)
    again = ActAvatarTransformer3DModel.from_pretrained(tmp_path / "again")
    assert all(
        torch.equal(a, b) for a, b in zip(again.state_dict().values(), tr.state_dict().values())
    )

    rng = np.random.RandomState(0)
    avatar = Image.fromarray((rng.rand(64, 64, 3) * 255).astype(np.uint8))
    tail = Image.fromarray((rng.rand(64, 64, 3) * 255).astype(np.uint8))
    encoded = []
    encode = renderer.pipeline.encode_condition_frames
    renderer.pipeline.encode_condition_frames = lambda fr, h, w: (
        encoded.append(fr) or encode(fr, h, w)
    )
    frames_seen = []
    forward = tr.forward
    tr.forward = lambda x, *a, **k: frames_seen.append(x.shape[2]) or forward(x, *a, **k)
    audio = (0.1 * np.sin(np.arange(5760) / 16000 * 2 * np.pi * 200)).astype(np.float32)
    for index, image in enumerate([avatar, tail]):
        req = RenderRequest(
            index=index,
            num_frames=9,
            fps=25,
            width=64,
            height=64,
            audio=audio,
            prompt=StructuredPrompt("A person talks."),
            image=image,
            reference_image=avatar,
            seed=index,
            # segment 1: a 5-frame tail = 2 clean context latents after the sink
            overlap_frames=5 * index,
            context_frames=[tail] * 5 * index,
        )
        frames = renderer.render(req)
        assert frames.shape == (9, 64, 64, 3) and frames.dtype == np.uint8
        assert renderer.last_stats["identity_sink"] == "on"
        assert renderer.last_stats["notes"] == ["identity sink: on"]
    # [sink | image | 2 generated], then [sink | 2 tail latents | 1 generated]; 2 steps each
    assert set(frames_seen) == {4} and len(frames_seen) == 4
    # the sink is encoded once for both segments (then cached), plus each segment's image:
    # avatar (sink), avatar (segment 0's context), the tail (segment 1's context)
    assert encoded == [[avatar], [avatar], [tail] * 5]


def test_a_sink_teacher_distils_into_a_sink_student(tmp_path, tiny_cache):
    """The student keeps the sink, and teacher and student see `[sink | clip]` with the sink
    and the clip's clean frame held clean, as stage 2 trained and the pipeline renders."""
    from generator.train.models import load_transformer, resolve_base
    from generator.train.stages import trainer_for

    teacher = tmp_path / "teacher"
    model = load_transformer(resolve_base("preset:tiny"), reference_sink=True)
    with torch.no_grad():
        model.sink_embedding.weight.normal_(std=0.5)  # a trained sink: it changes predictions
    model.save_pretrained(teacher / "transformer", safe_serialization=True)
    cfg = tiny_config(
        tmp_path, "distill", tiny_cache, distill__teacher=str(teacher), train__max_steps=1
    )
    tr = trainer_for(cfg, echo=False)
    tr.setup()
    assert tr.reference_sink and tr.unwrapped.config.reference_sink
    batch = next(iter(tr.make_dataloader(0, 1)))
    latents, noise, num_clean = tr._layout(batch)
    f = batch["latents"].shape[2]
    assert latents.shape[2] == f + 1 and num_clean == cfg.num_clean_frames + 1
    assert torch.equal(latents[:, :, 0], batch["latents"][:, :, 0])  # the clip's first frame
    assert float(noise[:, :, 0].abs().sum()) == 0.0  # the sink is never noised
    x = latents.clone()
    x[:, :, num_clean:] = noise[:, :, num_clean:]
    sigma = torch.ones(latents.shape[0])
    with torch.no_grad():
        v = tr.teacher_velocity(batch, x, sigma, num_clean)
        moved = x.clone()
        moved[:, :, 0] += 1.0  # another avatar in the sink changes the teacher's answer
        v_moved = tr.teacher_velocity(batch, moved, sigma, num_clean)
    assert v.shape == x.shape
    assert float((v - v_moved)[:, :, num_clean:].abs().max()) > 1e-4
    loss = tr.compute_loss(batch)
    assert torch.isfinite(loss) and float(loss.detach()) > 0
    before = tr.unwrapped.sink_embedding.weight.detach().clone()
    tr.train()
    assert not torch.equal(tr.unwrapped.sink_embedding.weight.detach(), before)  # it trains
    assert torch.equal(tr.teacher.sink_embedding.weight.detach(), model.sink_embedding.weight)


def test_sink_gap_window_cuts_latents_audio_and_phase_windows():
    from generator.train.data import sink_gap_window

    lat = torch.arange(6.0).view(1, 6, 1, 1).expand(2, 6, 1, 1)  # frame f holds f
    noise = -lat
    audio = torch.arange(21.0).view(21, 1, 1)  # 1 + 4 * 5 video frames
    windows = torch.tensor([[0.0, 6.0], [1.0, 3.0], [4.0, 6.0], [0.0, 0.0]])
    out_l, out_n, out_a, out_w = sink_gap_window(lat, noise, audio, windows, gap=2, max_gap=3)
    assert out_l[0, :, 0, 0].tolist() == [2.0, 3.0, 4.0] and torch.equal(out_n, -out_l)
    # video frames 8..16: latent 2 ends on frame 8, latents 3 and 4 are frames 9..16
    assert out_a.flatten().tolist() == [float(v) for v in range(8, 17)]
    assert out_w.tolist() == [[0.0, 3.0], [0.0, 1.0], [2.0, 3.0], [0.0, 0.0]]
    _, _, a0, w0 = sink_gap_window(lat, noise, audio, windows, gap=0, max_gap=3)
    assert a0.shape[0] == 9 and w0[1].tolist() == [1.0, 3.0]
    with pytest.raises(ValueError, match="clip c: data.sink_gap=5 leaves 1 of its 6"):
        sink_gap_window(lat, noise, audio, windows, 0, 5, "c")


def test_sink_gap_dataset_keeps_the_first_frame_as_the_sink(tmp_path, tiny_cache, stage1_adapter):
    ds = CachedClipDataset(tiny_cache, "stage2", seed=2, context_latents=2, sink_gap=1)
    full = CachedClipDataset(tiny_cache, "stage2", seed=2)
    gaps = set()
    for pos in range(16):
        it, ref = ds[(0, pos)], full[(0, pos)]
        assert torch.equal(it["sink"][:, 0], ref["latents"][:, 0])
        assert it["latents"].shape[1] == 2 and it["audio"].shape[0] == 5
        assert it["num_context"] == 1  # one frame is always generated
        gap = 0 if torch.equal(it["latents"], ref["latents"][:, :2]) else 1
        assert torch.equal(it["latents"], ref["latents"][:, gap : gap + 2])
        assert torch.equal(it["noise"], ref["noise"][:, gap : gap + 2])
        gaps.add(gap)
    assert gaps == {0, 1}
    with pytest.raises(ConfigError, match="data.sink_gap.*needs model.reference_sink"):
        tiny_config(tmp_path, "stage2", tiny_cache, data__sink_gap=1, model__reference_sink="false")
    plain = tiny_config(tmp_path, "stage2", tiny_cache, model__adapter=str(stage1_adapter))
    cfg = tiny_config(
        tmp_path,
        "stage2",
        tiny_cache,
        model__adapter=str(stage1_adapter),
        model__reference_sink="true",
        data__sink_gap=1,
        train__max_steps=1,
        train__checkpoint_every=1,
    )
    assert config_hash(cfg) != config_hash(plain)
    tr = Trainer(cfg, echo=False).setup()
    batch = next(iter(tr.make_dataloader(0, 1)))
    assert batch["sink"].shape[2] == 1 and batch["latents"].shape[2] == 2
    spy = _Spy()
    flow_matching_loss(spy, batch, 1, (2, 2), reference_sink=True)
    assert torch.equal(spy.x[:, :, 0], batch["sink"][:, :, 0])
    assert tr.train()["step"] == 1
    # a model without the sink cannot take a sink gap
    no_sink = tiny_config(
        tmp_path / "n", "stage2", tiny_cache, model__adapter=str(stage1_adapter), data__sink_gap=1
    )
    with pytest.raises(ValueError, match="data.sink_gap.*no reference sink"):
        Trainer(no_sink, echo=False).setup()


def test_context_shift_draws_a_hidden_per_channel_offset_of_the_context_only(
    tmp_path, tiny_cache, stage1_adapter
):
    """`train.context_shift`: per sample a size in [0, max] times a normal per channel, drawn
    after every other draw (a run without it is unchanged), added to the context frames only
    (after the sink, before the frames to generate), validated and hashed when changed."""
    ds = CachedClipDataset(
        tiny_cache, "stage2", seed=5, context_latents=2, context_noise=0.3, context_shift=0.2
    )
    items = [ds[(i % len(ds), i)] for i in range(48)]
    offsets = torch.stack([it["context_shift"] for it in items])  # (N, C)
    assert offsets.shape == (48, items[0]["latents"].shape[0])
    assert offsets.abs().max() > 0 and offsets.std(dim=1).max() <= 0.2 * 4.5
    sizes = offsets.std(dim=1)  # per-sample size times a unit normal's spread
    assert sizes.min() < 0.05 < 0.12 < sizes.max()  # the size is drawn, not fixed
    plain = CachedClipDataset(tiny_cache, "stage2", seed=5, context_latents=2, context_noise=0.3)
    assert "context_shift" not in plain[(0, 3)]
    for i in (0, 3, 11):  # the older draws are untouched
        a, b = plain[(i % len(ds), i)], items[i]
        assert torch.equal(a["noise"], b["noise"]) and a["context_level"] == b["context_level"]
        assert a["num_context"] == b["num_context"]

    g = torch.Generator().manual_seed(1)
    bsz, f = 2, 4
    lat = torch.randn(bsz, 48, f, 4, 4, generator=g)
    noise = torch.randn(bsz, 48, f, 4, 4, generator=g)
    offset = torch.randn(bsz, 48, generator=g)
    batch = {
        "latents": lat,
        "noise": noise,
        "sigma": torch.tensor([0.5, 0.5]),
        "prompt_embeds": torch.zeros(bsz, 4, 8),
        "audio": torch.zeros(bsz, 13, 1, 1),
        "phase_ids": None,
        "audio_mask": torch.ones(bsz),
        "num_context": torch.tensor([1, 2]),
        "context_level": torch.zeros(2),
        "context_shift": offset,
    }
    spy = _Spy()
    flow_matching_loss(spy, batch, 1, (2, 2), reference_sink=True)
    x, off = spy.x, offset[:, :, None, None]
    assert torch.equal(x[:, :, 0], lat[:, :, 0])  # the sink: clean, unshifted
    torch.testing.assert_close(x[0, :, 1], lat[0, :, 0] + off[0])  # sample 0: one context frame
    torch.testing.assert_close(x[1, :, 1], lat[1, :, 0] + off[1])  # sample 1: two
    torch.testing.assert_close(x[1, :, 2], lat[1, :, 1] + off[1])
    torch.testing.assert_close(x[0, :, 2], 0.5 * lat[0, :, 1] + 0.5 * noise[0, :, 1])
    assert spy.timestep.view(bsz, f + 1, 4)[:, 1].abs().max() == 0  # hidden: context t = 0

    def stage2(**kw):
        return tiny_config(tmp_path, "stage2", tiny_cache, model__adapter=str(stage1_adapter), **kw)

    shifted = stage2(train__context_shift=0.2)
    assert config_hash(stage2()) != config_hash(shifted)
    assert config_hash(stage2()) == config_hash(stage2(train__context_shift=0.0))
    with pytest.raises(ConfigError, match=r"train.context_shift.*\[0, 10\]"):
        tiny_config(tmp_path, "stage2", tiny_cache, train__context_shift=-0.1)
    with pytest.raises(ConfigError, match="train.context_shift.*stage-2 switch"):
        tiny_config(tmp_path, "stage1", tiny_cache, train__context_shift=0.2)
    tr = Trainer(shifted, echo=False).setup()  # reaches the batches the loss reads
    assert tr.dataset.context_shift == 0.2
    assert next(iter(tr.make_dataloader(0, 1)))["context_shift"].abs().max() > 0
