"""ActAvatarTransformer3DModel: identity at start, loading, audio locality, scales, 5B preset."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from diffusers import WanTransformer3DModel

from generator.presets import (
    TINY_TRANSFORMER_CONFIG,
    WAN22_TI2V_5B_TRANSFORMER_CONFIG,
    WAN22_TI2V_5B_WAN_CONFIG,
    meta_transformer,
)
from generator.transformer_actavatar import (
    ActAvatarTransformer3DModel,
    is_actavatar_key,
    progressive_audio_scales,
    wan_config_from_actavatar,
)


def _tiny(**overrides) -> ActAvatarTransformer3DModel:
    torch.manual_seed(0)
    return ActAvatarTransformer3DModel(**{**TINY_TRANSFORMER_CONFIG, **overrides}).eval()


def _inputs(batch: int = 2, frames: int = 3, clean: int = 1):
    g = torch.Generator().manual_seed(1)
    cfg = TINY_TRANSFORMER_CONFIG
    x = torch.randn(batch, 48, frames, 8, 12, generator=g)
    tpf = (8 // 2) * (12 // 2)
    t = torch.tensor([500.0, 900.0][:batch])
    ts = torch.cat(
        [torch.zeros(batch, clean * tpf), t[:, None].expand(batch, (frames - clean) * tpf)], 1
    )
    text = torch.randn(batch, 16, cfg["text_dim"], generator=g)
    text[:, 10:] = 0  # Wan's zero tail
    audio = torch.randn(
        batch, 4 * (frames - 1) + 1, cfg["audio_layers"], cfg["audio_in_dim"], generator=g
    )
    phase = torch.tensor([[0] * 4 + [1] * 3 + [2] * 3 + [cfg["max_phases"] + 1] * 6] * batch)
    return x, ts, text, audio, phase


def _wan_twin(model: ActAvatarTransformer3DModel) -> WanTransformer3DModel:
    wan = WanTransformer3DModel(**wan_config_from_actavatar(model.config)).eval()
    missing, unexpected = wan.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all(is_actavatar_key(k) for k in unexpected)
    return wan


def test_lazy_exports_do_not_import_torch():
    code = (
        "import sys, generator, generator.render_types, generator.animatic;"
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'eager import';"
        "from generator import ActAvatarTransformer3DModel, ActAvatarPipeline, encode_structured_prompt;"
        "assert 'diffusers' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_accepts_every_wan_argument_and_registers_config():
    import inspect

    wan_args = set(inspect.signature(WanTransformer3DModel.__init__).parameters) - {"self"}
    ours = set(inspect.signature(ActAvatarTransformer3DModel.__init__).parameters)
    assert wan_args <= ours
    model = _tiny()
    assert model.config.num_layers == len(model.blocks) == TINY_TRANSFORMER_CONFIG["num_layers"]
    assert (
        model.config.audio_gamma == 1.5
        and model.config.max_phases == TINY_TRANSFORMER_CONFIG["max_phases"]
    )
    assert isinstance(model, WanTransformer3DModel)


@pytest.mark.parametrize("per_token", [True, False])
def test_identity_at_start_equals_wan(per_token):
    model = _tiny()
    wan = _wan_twin(model)
    x, ts, text, audio, phase = _inputs()
    if not per_token:
        ts = ts[:, -1]
    with torch.no_grad():
        ref = wan(x, ts, text).sample
        plain = model(x, ts, text).sample
        full = model(x, ts, text, audio_embeds=audio, phase_ids=phase).sample
    torch.testing.assert_close(plain, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(full, ref, atol=1e-5, rtol=0)
    assert (plain - ref).abs().max().item() == 0.0


def test_audio_and_phase_change_output_once_trained():
    model = _tiny()
    x, ts, text, audio, phase = _inputs()
    with torch.no_grad():
        for block in model.blocks:
            torch.nn.init.normal_(block.audio_attn.to_out[0].weight, std=0.1)
        torch.nn.init.normal_(model.phase_embedding.weight, std=0.5)
        model.phase_embedding.weight[model.phase_pad_id].zero_()
        base = model(x, ts, text).sample
        with_audio = model(x, ts, text, audio_embeds=audio).sample
        with_phase = model(x, ts, text, phase_ids=phase).sample
        masked = model(x, ts, text, audio_embeds=audio, audio_mask=torch.tensor([0.0, 1.0])).sample
    assert (with_audio - base).abs().max() > 1e-4
    assert (with_phase - base).abs().max() > 1e-4
    torch.testing.assert_close(masked[0], base[0], atol=0, rtol=0)
    torch.testing.assert_close(masked[1], with_audio[1], atol=1e-5, rtol=1e-5)


def test_plain_wan_checkpoint_loads_with_only_new_keys_missing(tmp_path):
    torch.manual_seed(3)
    wan = WanTransformer3DModel(**wan_config_from_actavatar(TINY_TRANSFORMER_CONFIG)).eval()
    wan.save_pretrained(tmp_path / "wan", safe_serialization=True)

    adapter_cfg = {
        k: v for k, v in TINY_TRANSFORMER_CONFIG.items() if k.startswith(("audio_", "max_"))
    }
    _, info = ActAvatarTransformer3DModel.from_pretrained(
        tmp_path / "wan", output_loading_info=True, **adapter_cfg
    )
    expected_new = {k for k in _tiny().state_dict() if is_actavatar_key(k)}
    assert set(info["missing_keys"]) == expected_new
    assert not info["unexpected_keys"]

    model = ActAvatarTransformer3DModel.from_wan_pretrained(tmp_path / "wan", **adapter_cfg).eval()
    assert not any(p.is_meta for p in model.parameters())
    assert not any(b.is_meta for b in model.buffers())
    assert model.phase_embedding.weight.abs().max() == 0
    for block in model.blocks:
        assert block.audio_attn.to_out[0].weight.abs().max() == 0
        assert block.audio_attn.to_out[0].bias.abs().max() == 0
        assert block.audio_attn.to_q.weight.abs().max() > 0  # initialised, not left empty
        assert torch.isfinite(block.audio_attn.to_k.weight).all()
        assert (block.norm_audio.weight == 1).all()
    assert torch.isfinite(model.audio_proj.proj_first.weight).all()

    x, ts, text, audio, phase = _inputs()
    with torch.no_grad():
        ref = wan(x, ts, text).sample
        out = model(x, ts, text, audio_embeds=audio, phase_ids=phase).sample
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)

    # and a saved ActAvatar checkpoint round-trips with nothing missing
    model.save_pretrained(tmp_path / "aa", safe_serialization=True)
    again, info = ActAvatarTransformer3DModel.from_pretrained(
        tmp_path / "aa", output_loading_info=True
    )
    assert not info["missing_keys"] and again.config.max_phases == model.config.max_phases


def test_audio_locality_frame_wise():
    model = _tiny()
    attn = model.blocks[1].audio_attn
    torch.manual_seed(5)
    with torch.no_grad():
        torch.nn.init.normal_(attn.to_out[0].weight, std=0.2)
    batch, frames, tpf = 2, 5, 24
    dim = model.config.num_attention_heads * model.config.attention_head_dim
    x = torch.randn(batch, frames * tpf, dim)
    audio = torch.randn(batch, frames, TINY_TRANSFORMER_CONFIG["audio_tokens_per_frame"], 16)
    with torch.no_grad():
        base = attn(x, audio, None, None, tokens_per_frame=tpf)
        for j in range(frames):
            changed = audio.clone()
            changed[:, j] = torch.randn_like(changed[:, j])
            diff = (attn(x, changed, None, None, tokens_per_frame=tpf) - base).abs()
            per_frame = diff.reshape(batch, frames, tpf, dim).amax(dim=(0, 2, 3))
            assert per_frame[j] > 1e-4
            assert torch.all(per_frame[torch.arange(frames) != j] == 0)


def test_audio_projection_tokens_per_latent_frame():
    model = _tiny()
    cfg = TINY_TRANSFORMER_CONFIG
    feats = torch.randn(
        2, 13, cfg["audio_layers"], cfg["audio_in_dim"]
    )  # 13 video -> 4 latent frames
    tokens = model.audio_proj(feats)
    assert tokens.shape == (2, 4, cfg["audio_tokens_per_frame"], cfg["audio_token_dim"])
    # latent frame 3 (video 9..12, +-2 window) does not see video frame 0..6
    changed = feats.clone()
    changed[:, 0:7] += 1.0
    delta = (model.audio_proj(changed) - tokens).abs().amax(dim=(0, 2, 3))
    assert delta[3] == 0 and delta[0] > 0
    with pytest.raises(ValueError):
        model.audio_proj(torch.randn(1, 12, cfg["audio_layers"], cfg["audio_in_dim"]))


def test_progressive_audio_scales():
    model = _tiny(audio_gamma=1.5)
    n = model.config.num_layers
    expected = [((i + 1) / n) ** 1.5 for i in range(n)]
    assert model.audio_block_scales == pytest.approx(expected)
    assert model.audio_block_scales[-1] == 1.0
    assert progressive_audio_scales(30)[14] == pytest.approx(0.5**1.5)

    const = _tiny(audio_progressive=False, audio_scale=0.7)
    assert const.audio_block_scales == pytest.approx([0.7] * n)
    assert _tiny(audio_gamma=2.0).audio_block_scales == pytest.approx(
        [((i + 1) / n) ** 2 for i in range(n)]
    )
    assert model.set_audio_scales(progressive=False) == [1.0] * n
    assert model.config.audio_progressive is False

    # the scale multiplies the residual: scale 0 == no audio
    x, ts, text, audio, _ = _inputs()
    with torch.no_grad():
        for block in model.blocks:
            torch.nn.init.normal_(block.audio_attn.to_out[0].weight, std=0.1)
        model.set_audio_scales(scale=0.0)
        torch.testing.assert_close(
            model(x, ts, text, audio_embeds=audio).sample, model(x, ts, text).sample
        )


def test_adapter_save_load_and_freeze(tmp_path):
    src = _tiny()
    with torch.no_grad():
        for p in src.audio_adapter_state_dict().values():
            p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path / "adapter.safetensors"
    src.save_audio_adapter(path)
    dst = _tiny()
    dst.load_audio_adapter(path)
    for k, v in src.audio_adapter_state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v, atol=0, rtol=0)
    trainable = dst.freeze_backbone()
    assert set(trainable) == set(src.audio_adapter_state_dict())
    assert all(not p.requires_grad for n, p in dst.named_parameters() if n not in trainable)
    assert "phase_embedding.weight" in dst.freeze_backbone(train_phase_embedding=True)


def test_gradient_checkpointing_and_block_cache():
    from diffusers import FirstBlockCacheConfig

    model = _tiny()
    model.enable_gradient_checkpointing()
    model.train()
    x, ts, text, audio, phase = _inputs()
    out = model(x, ts, text, audio_embeds=audio, phase_ids=phase).sample
    out.square().mean().backward()
    assert model.blocks[0].audio_attn.to_out[0].weight.grad is not None

    cached = _tiny()
    cached.enable_cache(FirstBlockCacheConfig(threshold=0.05))  # needs the registry entry
    with torch.no_grad(), cached.cache_context("cond"):
        cached(x, ts, text, audio_embeds=audio, phase_ids=phase)


def test_5b_preset_on_meta_matches_public_wan():
    model = meta_transformer("wan2.2-ti2v-5b")
    with torch.device("meta"):
        wan = WanTransformer3DModel(**WAN22_TI2V_5B_WAN_CONFIG)
    wan_count = sum(p.numel() for p in wan.parameters())
    counts = model.parameter_counts()
    print("5B preset parameter counts:", counts)
    assert wan_count == 4_999_787_712
    assert counts["backbone"] == wan_count

    d, c, cfg = 3072, 768, WAN22_TI2V_5B_TRANSFORMER_CONFIG
    per_block = 2 * d + (d * d + d) * 2 + (c * d + d) * 2 + 2 * d  # norm, q/out, k/v, qk-norms
    feat = cfg["audio_layers"] * cfg["audio_in_dim"]
    h, n = cfg["audio_hidden_dim"], cfg["audio_tokens_per_frame"]
    proj = (5 * feat * h + h) + (8 * feat * h + h) + (h * h + h) + (h * n * c + n * c) + 2 * c
    assert counts["audio_adapter"] == 30 * per_block + proj == 782_740_480
    assert counts["phase_embedding"] == (cfg["max_phases"] + 2) * 4096 == 40_960

    wan_keys, keys = set(wan.state_dict()), set(model.state_dict())
    assert len(wan_keys) == 825 and wan_keys <= keys
    new = keys - wan_keys
    assert all(is_actavatar_key(k) for k in new)
    assert len(new) == 10 + 30 * 12 + 1
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["blocks.29.audio_attn.to_k.weight"] == (3072, 768)
    assert shapes["phase_embedding.weight"] == (10, 4096)
    assert shapes["patch_embedding.weight"] == (3072, 48, 1, 2, 2)
    assert model.audio_block_scales[14] == pytest.approx(0.5**1.5)
