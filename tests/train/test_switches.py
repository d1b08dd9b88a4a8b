"""Public config API and the ablation switches: `config_from_dict`, `model.audio_progressive`,
`data.use_phase_ids` (tiny preset, CPU)."""

from __future__ import annotations

import pytest
import torch
from train_helpers import tiny_config

import generator.train as gt
from generator.train.config import ConfigError, config_hash
from generator.train.trainer import Trainer, param_group


def _raw(tmp_path, dataset, **sections):
    data = {
        "name": "switches",
        "stage": "stage1",
        "output_dir": str(tmp_path / "run"),
        "data": {"dataset": str(dataset)},
    }
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return data


def test_config_from_dict_is_public_and_strict(tmp_path, tiny_cache):
    assert "config_from_dict" in gt.__all__
    from generator.train.config import config_from_dict

    assert gt.config_from_dict is config_from_dict
    cfg = gt.config_from_dict(_raw(tmp_path, tiny_cache, model={"audio_progressive": False}))
    assert cfg.model.audio_progressive is False
    assert cfg.data.use_phase_ids is True  # default
    assert cfg.source is None
    with pytest.raises(ConfigError, match="did you mean 'use_phase_ids'"):
        gt.config_from_dict(_raw(tmp_path, tiny_cache, data={"use_phase_id": False}))
    with pytest.raises(ConfigError, match="expected true/false"):
        gt.config_from_dict(_raw(tmp_path, tiny_cache, model={"audio_progressive": "no"}))


def test_new_switches_keep_old_hashes_and_change_when_set(tmp_path, tiny_cache):
    plain = gt.config_from_dict(_raw(tmp_path, tiny_cache))
    explicit = gt.config_from_dict(
        _raw(tmp_path, tiny_cache, model={"audio_progressive": True}, data={"use_phase_ids": True})
    )
    assert config_hash(plain) == config_hash(explicit)
    # the hash of a default config is what it was before the switches existed
    assert config_hash(plain) == _legacy_hash(plain)
    no_prog = gt.config_from_dict(_raw(tmp_path, tiny_cache, model={"audio_progressive": False}))
    no_ids = gt.config_from_dict(_raw(tmp_path, tiny_cache, data={"use_phase_ids": False}))
    assert len({config_hash(plain), config_hash(no_prog), config_hash(no_ids)}) == 3


def _legacy_hash(cfg) -> str:
    import hashlib
    import json

    from generator.train.config import config_to_dict

    data = config_to_dict(cfg)
    for key in ("output_dir", "name", "debug"):
        data.pop(key)
    del data["model"]["audio_progressive"], data["data"]["use_phase_ids"]
    # sections and switches added later still (the hash drops them at their defaults)
    data.pop("distill", None)
    for key in (
        "time_aware_phases",
        "frame_time_embedding",
        "phase_anchor_embedding",
        "reference_sink",
    ):
        data["model"].pop(key, None)
    data["data"].pop("context_latents", None)
    data["data"].pop("sink_gap", None)
    data["train"].pop("context_noise", None)
    data["train"].pop("context_shift", None)
    for key in (
        "resume",
        "checkpoint_every",
        "keep_checkpoints",
        "log_every",
        "sample_every",
        "sample_steps",
        "sample_clips",
    ):
        data["train"].pop(key)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@pytest.mark.parametrize("progressive", [True, False])
def test_audio_progressive_sets_block_scales(tmp_path, tiny_cache, progressive):
    from generator.transformer_actavatar import ActAvatarTransformer3DModel

    cfg = tiny_config(
        tmp_path,
        "stage1",
        tiny_cache,
        model__audio_progressive=progressive,
        model__audio_gamma=2.0,
        train__max_steps=1,
        train__checkpoint_every=1,
    )
    tr = Trainer(cfg, echo=False)
    summary = tr.train()
    model = tr.unwrapped
    n = len(model.blocks)
    assert n >= 2
    expected = [((i + 1) / n) ** 2.0 for i in range(n)] if progressive else [1.0] * n
    assert model.audio_block_scales == pytest.approx(expected)
    assert model.config.audio_progressive is progressive
    # the checkpoint keeps the schedule it was trained with
    saved = ActAvatarTransformer3DModel.from_pretrained(f"{summary['checkpoint']}/transformer")
    assert saved.audio_block_scales == pytest.approx(expected)


def _cache_without_phase_ids(src, dst):
    """A copy of the tiny cache whose samples carry no `phase_ids` at all."""
    from generator.train.data import CachedClipDataset, CacheWriter

    ds = CachedClipDataset(src, stage="stage2")
    with CacheWriter(dst, shard_size=4, encoders=ds.encoders) as writer:
        for sid in ds.ids:
            tensors = {k: v for k, v in ds.load(sid).items() if k != "phase_ids"}
            meta = {k: v for k, v in ds.index["samples"][sid].items() if k not in ("keys", "shard")}
            writer.add(sid, tensors, meta)
    return dst


def test_use_phase_ids_false_trains_without_paca(tmp_path, tiny_cache, stage1_adapter):
    cache = _cache_without_phase_ids(tiny_cache, tmp_path / "noids")
    cfg = tiny_config(
        tmp_path,
        "stage2",
        cache,
        model__adapter=str(stage1_adapter),
        data__use_phase_ids=False,
        train__max_steps=3,
        train__checkpoint_every=3,
    )
    tr = Trainer(cfg, echo=False).setup()
    batch = next(iter(tr.make_dataloader(0, 1)))
    assert batch["phase_ids"] is None
    model = tr.unwrapped
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    tr.train()
    after = model.state_dict()
    changed = {param_group(k) for k, v in after.items() if not torch.equal(v, before[k])}
    assert changed == {"backbone", "adapter"}  # everything trains except the PACA table
    assert torch.count_nonzero(after["phase_embedding.weight"]) == 0

    # with ids (default) the same cache is an error: it has none to feed
    cfg_ids = tiny_config(tmp_path / "ids", "stage2", cache, model__adapter=str(stage1_adapter))
    tr_ids = Trainer(cfg_ids, echo=False).setup()
    with pytest.raises(Exception, match="phase_ids"):
        next(iter(tr_ids.make_dataloader(0, 1)))


def test_use_phase_ids_false_equals_padding_ids(tmp_path, tiny_cache, stage1_adapter):
    """No ids is exactly the old trick of padding ids: same loss on the same batch."""
    cfg = tiny_config(
        tmp_path,
        "stage2",
        tiny_cache,
        model__adapter=str(stage1_adapter),
        data__use_phase_ids=False,
    )
    tr = Trainer(cfg, echo=False).setup()
    with torch.no_grad():  # a non-zero table so that real ids would change the output
        tr.unwrapped.phase_embedding.weight[: tr.phase_pad_id].normal_(std=0.5)
    batch = next(iter(tr.make_dataloader(0, 1)))
    padded = dict(batch, phase_ids=torch.full(batch["prompt_embeds"].shape[:2], tr.phase_pad_id))
    # the same samples and positions with their real block ids (use_phase_ids=True)
    from generator.train.data import CachedClipDataset, collate_clips

    ds_ids = CachedClipDataset(
        tr.cache_dir, stage="stage2", seed=cfg.seed, timestep_shift=cfg.train.timestep_shift
    )
    items = [
        ds_ids[(ds_ids.ids.index(sid), int(pos))]
        for sid, pos in zip(batch["ids"], batch["positions"])
    ]
    real = collate_clips(items, cfg.data.text_len, tr.phase_pad_id)
    assert torch.equal(real["noise"], batch["noise"]) and real["phase_ids"] is not None
    with torch.no_grad():
        none_loss = float(tr.compute_loss(batch))
        pad_loss = float(tr.compute_loss(padded))
        real_loss = float(tr.compute_loss(real))
    assert none_loss == pytest.approx(pad_loss, rel=1e-6)
    assert abs(real_loss - none_loss) > 1e-4


def test_time_aware_phases_switch_trains_the_time_term(tmp_path, tiny_cache, stage1_adapter):
    """model.time_aware_phases reaches the model; the cached windows reach its forward."""
    from generator.transformer_actavatar import ActAvatarTransformer3DModel

    cfg = tiny_config(
        tmp_path,
        "stage2",
        tiny_cache,
        model__adapter=str(stage1_adapter),
        model__time_aware_phases=True,
        train__max_steps=2,
        train__checkpoint_every=2,
    )
    tr = Trainer(cfg, echo=False).setup()
    model = tr.unwrapped
    assert model.config.time_aware_phases is True
    batch = next(iter(tr.make_dataloader(0, 1)))
    windows = batch["phase_windows"]
    f = batch["latents"].shape[2]
    assert windows.shape == (batch["latents"].shape[0], model.config.max_phases + 2, 2)
    assert (windows[:, 0] == torch.tensor([0.0, float(f)])).all()  # base row: whole clip
    seen = []
    hook = model.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw.get("phase_windows")), with_kwargs=True
    )
    before = {k: v.detach().clone() for k, v in model.state_dict().items() if ".phase_time." in k}
    summary = tr.train()
    hook.remove()
    assert seen and all(w is not None and w.shape[1:] == windows.shape[1:] for w in seen)
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert {param_group(k) for k in before} == {"phase"}
    saved = ActAvatarTransformer3DModel.from_pretrained(f"{summary['checkpoint']}/transformer")
    assert saved.config.time_aware_phases is True


def test_a_dataset_with_room_for_more_phases_trains_a_model_with_fewer():
    """Dataset built with --max-phases 8 (10 window rows), tiny model with 4 (6 rows)."""
    from generator.train.data import collate_clips

    def item(windows, ids):
        return {
            "id": "c1", "position": 0, "latents": torch.zeros(1), "noise": torch.zeros(1),
            "sigma": torch.tensor(0.5), "text": torch.ones(len(ids), 2),
            "phase_ids": torch.tensor(ids), "phase_windows": windows, "audio": torch.zeros(1),
            "keep_text": 1.0, "keep_audio": 1.0,
        }  # fmt: skip

    w = torch.zeros(10, 2)
    w[0] = torch.tensor([0.0, 32.0])
    w[1], w[2] = torch.tensor([0.0, 10.0]), torch.tensor([12.0, 20.0])
    batch = collate_clips([item(w, [0, 1, 2])], text_len=4, phase_pad_id=5)
    assert batch["phase_windows"].shape == (1, 6, 2)
    assert torch.equal(batch["phase_windows"][0, :3], w[:3])
    assert batch["phase_windows"][0, 3:].abs().sum() == 0
    assert batch["phase_ids"][0].tolist() == [0, 1, 2, 5]
    w[6] = torch.tensor([22.0, 30.0])  # a sixth phase the model cannot hold
    with pytest.raises(ValueError, match=r"clip c1: .*more phases than the model supports \(4"):
        collate_clips([item(w, [0, 1, 2])], text_len=4, phase_pad_id=5)
    with pytest.raises(ValueError, match=r"clip c1: its prompt has phase 6"):
        collate_clips([item(torch.zeros(6, 2), [0, 6])], text_len=4, phase_pad_id=5)
