"""Stage 1 / stage 2 training semantics, adapter extraction and exact resume (tiny preset)."""

from __future__ import annotations

import json

import pytest
import torch
from train_helpers import tiny_config

from generator.train.trainer import Trainer, find_checkpoints, param_group


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_stage1_frozen_backbone_adapter_learns(tmp_path, tiny_cache):
    cfg = tiny_config(
        tmp_path, "stage1", tiny_cache, train__max_steps=40, model__reset_adapter=True
    )
    tr = Trainer(cfg, echo=False).setup()
    model = tr.unwrapped
    before = _snapshot(model)
    assert set(tr.trainable_counts) == {"adapter"}
    batch = next(iter(tr.make_dataloader(0, 1)))  # one fixed batch, fixed noise and timesteps

    # gradients reach adapter parameters only
    loss = tr.compute_loss(batch)
    tr.accelerator.backward(loss)
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad and all(param_group(n) == "adapter" for n in with_grad)
    assert any(p.grad.abs().sum() > 0 for p in model.parameters() if p.grad is not None)
    tr.optimizer.zero_grad(set_to_none=True)

    with torch.no_grad():
        start = float(tr.compute_loss(batch))
    for _ in range(25):
        tr.training_step([batch])
    with torch.no_grad():
        end = float(tr.compute_loss(batch))
    assert end < 0.9 * start, (start, end)

    after = model.state_dict()
    changed = [k for k in after if not torch.equal(after[k], before[k])]
    assert changed and all(param_group(k) == "adapter" for k in changed)
    for k, v in before.items():
        if param_group(k) != "adapter":
            assert torch.equal(after[k], v), k  # bit-identical backbone and PACA table


def test_extract_then_inject_reproduces_adapter(tmp_path, tiny_cache):
    from generator.train.models import load_transformer, resolve_base

    cfg = tiny_config(tmp_path, "stage1", tiny_cache, train__max_steps=3, train__checkpoint_every=3)
    tr = Trainer(cfg, echo=False)
    summary = tr.train()
    trained = tr.unwrapped.audio_adapter_state_dict()
    fresh = load_transformer(resolve_base("preset:tiny"))
    assert any(not torch.equal(fresh.state_dict()[k], v) for k, v in trained.items())
    fresh.load_audio_adapter(summary["adapter"])
    injected = fresh.audio_adapter_state_dict()
    assert injected.keys() == trained.keys()
    assert all(torch.equal(injected[k], trained[k]) for k in trained)

    # stage 2 starts from exactly that adapter, with the PACA table at zero
    cfg2 = tiny_config(tmp_path, "stage2", tiny_cache, model__adapter=summary["adapter"])
    tr2 = Trainer(cfg2, echo=False).setup()
    state = tr2.unwrapped.state_dict()
    assert all(torch.equal(state[k], trained[k]) for k in trained)
    assert torch.count_nonzero(state["phase_embedding.weight"]) == 0


def test_stage2_trains_every_group_and_paca_leaves_zero(tmp_path, tiny_cache, stage1_adapter):
    cfg = tiny_config(
        tmp_path,
        "stage2",
        tiny_cache,
        model__adapter=str(stage1_adapter),
        train__max_steps=3,
        train__checkpoint_every=3,
    )
    tr = Trainer(cfg, echo=False).setup()
    model = tr.unwrapped
    assert set(tr.trainable_counts) == {"backbone", "adapter", "phase"}
    before = _snapshot(model)
    assert torch.count_nonzero(before["phase_embedding.weight"]) == 0
    tr.train()
    after = model.state_dict()
    changed: dict[str, int] = {}
    for k, v in after.items():
        if not torch.equal(v, before[k]):
            changed[param_group(k)] = changed.get(param_group(k), 0) + 1
    assert set(changed) == {"backbone", "adapter", "phase"}
    table = after["phase_embedding.weight"]
    used = table[:3]  # base + the two phases of every synthetic prompt
    assert all(torch.count_nonzero(row) > 0 for row in used)
    assert torch.count_nonzero(table[model.phase_pad_id]) == 0  # padding row stays zero
    # I2V: the clean first latent frame is not in the loss and gets t = 0
    from generator.train.losses import noisy_inputs

    lat = torch.randn(2, 48, 3, 4, 4)
    xt, ts, mask = noisy_inputs(lat, torch.randn_like(lat), torch.tensor([0.5, 0.9]), 1, (2, 2))
    assert (
        torch.equal(xt[:, :, 0], lat[:, :, 0])
        and torch.all(ts[:, :4] == 0)
        and torch.all(ts[1, 4:] == 900)
    )
    assert mask.tolist() == [[0, 1, 1], [0, 1, 1]]


def _losses(run_dir) -> dict[int, float]:
    out = {}
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["event"] == "step":
            out[rec["step"]] = rec["loss"]
    return out


def test_resume_gives_the_same_next_loss(tmp_path, tiny_cache, stage1_adapter):
    common = dict(
        model__adapter=str(stage1_adapter),
        train__max_steps=4,
        train__checkpoint_every=100,
        train__ema_decay=0.9,
        optim__warmup_steps=2,
        train__gradient_accumulation_steps=2,
        data__batch_size=1,
        data__text_dropout=0.3,
        data__audio_dropout=0.3,
    )
    full = tiny_config(tmp_path / "full", "stage2", tiny_cache, **common)
    Trainer(full, echo=False).train()
    cut = tiny_config(tmp_path / "cut", "stage2", tiny_cache, **common)
    first = Trainer(cut, echo=False).train(stop_after=2)  # preempted after step 2 (checkpointed)
    assert first["step"] == 2 and not first["finished"]
    assert [p.name for p in find_checkpoints(cut.output_dir)] == ["step-0000002"]
    resumed = Trainer(cut, echo=False)
    summary = resumed.train()
    assert resumed.step == 4 and summary["finished"]

    a, b = _losses(tmp_path / "full" / "stage2"), _losses(tmp_path / "cut" / "stage2")
    assert a[3] == pytest.approx(b[3], rel=1e-6, abs=1e-7)
    assert a[4] == pytest.approx(b[4], rel=1e-6, abs=1e-7)
    from safetensors.torch import load_file

    wa = load_file(
        str(
            tmp_path
            / "full/stage2/checkpoints/step-0000004/transformer/diffusion_pytorch_model.safetensors"
        )
    )
    wb = load_file(
        str(
            tmp_path
            / "cut/stage2/checkpoints/step-0000004/transformer/diffusion_pytorch_model.safetensors"
        )
    )
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    ea = load_file(str(tmp_path / "full/stage2/checkpoints/step-0000004/ema.safetensors"))
    eb = load_file(str(tmp_path / "cut/stage2/checkpoints/step-0000004/ema.safetensors"))
    assert all(torch.allclose(ea[k], eb[k], atol=1e-6) for k in ea)
    assert (tmp_path / "cut/stage2/loss.png").stat().st_size > 1000


def test_bf16_autocast_with_gradient_checkpointing(tmp_path, tiny_cache):
    """The paper settings' code path (bf16 autocast, checkpointed blocks) runs and learns on CPU;
    master weights stay float32."""
    cfg = tiny_config(
        tmp_path,
        "stage1",
        tiny_cache,
        train__max_steps=2,
        train__checkpoint_every=2,
        train__mixed_precision="bf16",
        model__gradient_checkpointing=True,
    )
    tr = Trainer(cfg, echo=False)
    summary = tr.train()
    assert summary["finished"] and 0 < summary["loss"] < 10
    assert tr.unwrapped.is_gradient_checkpointing
    assert all(p.dtype == torch.float32 for p in tr.unwrapped.parameters())
