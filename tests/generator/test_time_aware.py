"""Time-aware phase attention (issue 10): identity at init, exact logit term, windows, loading."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import WanTransformer3DModel

from generator.presets import TINY_TRANSFORMER_CONFIG
from generator.prompting import latent_position, phase_windows
from generator.render_types import PromptPhase, StructuredPrompt
from generator.transformer_actavatar import (
    ActAvatarTransformer3DModel,
    is_actavatar_key,
    phase_time_features,
    wan_config_from_actavatar,
)

PAD = TINY_TRANSFORMER_CONFIG["max_phases"] + 1
ROWS = TINY_TRANSFORMER_CONFIG["max_phases"] + 2


def _tiny(**overrides) -> ActAvatarTransformer3DModel:
    torch.manual_seed(0)
    cfg = {**TINY_TRANSFORMER_CONFIG, "time_aware_phases": True, **overrides}
    return ActAvatarTransformer3DModel(**cfg).eval()


def _prompt() -> StructuredPrompt:
    return StructuredPrompt(
        base="A person speaking.",
        phases=(PromptPhase("waves", 0.0, 0.4), PromptPhase("points", 0.4, 0.8)),
        duration=0.8,
    )


def _inputs(frames: int = 5):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 48, frames, 4, 6, generator=g)
    t = torch.tensor([500.0, 900.0])
    text = torch.randn(2, 12, TINY_TRANSFORMER_CONFIG["text_dim"], generator=g)
    text[:, 10:] = 0
    ids = torch.tensor([[0, 0, 0, 1, 1, 1, 2, 2, 2, 0, PAD, PAD]] * 2)
    win = phase_windows(_prompt(), 25.0, frames, TINY_TRANSFORMER_CONFIG["max_phases"])
    return x, t, text, ids, win.expand(2, -1, -1).clone()


def test_latent_position_follows_the_wan_ti2v_layout():
    # latent 0 = video frame 0; latent f >= 1 = video frames 4(f-1)+1 .. 4f (fps 25)
    assert latent_position(0.0, 25) == 0.0
    assert latent_position(1 / 25, 25) == pytest.approx(1.0)  # video frame 1 starts latent 1
    assert latent_position(5 / 25, 25) == pytest.approx(2.0)  # video frame 5 starts latent 2
    assert latent_position(1.0, 25) == pytest.approx(7.0)  # video frame 25 = first of latent 7
    assert latent_position(2.0, 25) == pytest.approx(13.25)  # video 50 = 2nd of latent 13
    win = phase_windows(_prompt(), 25.0, 5, max_phases=4)
    assert win.shape == (6, 2)
    assert win[0].tolist() == [0.0, 5.0]  # base = whole clip
    assert win[1].tolist() == pytest.approx([0.0, 3.25])  # video 0..9 -> latents 0..2 (+1/4)
    assert win[2].tolist() == pytest.approx([3.25, 5.0])  # clipped to the clip
    assert win[3:].abs().sum() == 0  # absent phases and padding: empty
    assert phase_windows("plain text", 25.0, 5, 4)[1:].abs().sum() == 0
    with pytest.raises(ValueError, match="supports 1"):
        phase_windows(_prompt(), 25.0, 5, max_phases=1)


def test_identity_at_init_equals_wan_and_config_round_trips(tmp_path):
    model = _tiny()
    wan = WanTransformer3DModel(**wan_config_from_actavatar(model.config)).eval()
    missing, unexpected = wan.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all(is_actavatar_key(k) for k in unexpected)
    assert any(".phase_time." in k for k in unexpected)
    x, t, text, ids, win = _inputs()
    with torch.no_grad():
        out = model(x, t, text, phase_ids=ids, phase_windows=win).sample
        ref = wan(x, t, text).sample
    assert (out - ref).abs().max() <= 1e-5
    model.save_pretrained(tmp_path / "m", safe_serialization=True)
    again, info = ActAvatarTransformer3DModel.from_pretrained(
        tmp_path / "m", output_loading_info=True
    )
    assert again.config.time_aware_phases is True and not info["missing_keys"]
    assert again.blocks[0].phase_time.weight.shape[0] == model.config.num_attention_heads


def test_the_term_is_exactly_the_bias_of_frame_time_to_the_token_window():
    model = _tiny()
    torch.manual_seed(2)
    for block in model.blocks:
        torch.nn.init.normal_(block.phase_time.weight, std=0.5)
    block = model.blocks[1]
    attn = block.attn2
    frames, tpf, dim = 5, 6, model.config.num_attention_heads * model.config.attention_head_dim
    hidden = torch.randn(2, frames * tpf, dim)
    enc = torch.randn(2, 12, dim)
    _, _, _, ids, win = _inputs(frames)
    feats = phase_time_features(frames, win, model.config.phase_time_freqs)
    rows = torch.nn.functional.one_hot(ids, ROWS).float()
    rows[..., PAD] = 0
    frame_bias = block.phase_time(feats)  # (B, F, R, h)
    with torch.no_grad():
        got = attn(hidden, enc, None, None, phase_time_bias=(frame_bias.transpose(2, 3), rows, tpf))
        # explicit softmax(q k / sqrt(d) + bias[frame(n), row(s)])
        q = attn.norm_q(attn.to_q(hidden)).unflatten(2, (attn.heads, -1)).transpose(1, 2)
        k = attn.norm_k(attn.to_k(enc)).unflatten(2, (attn.heads, -1)).transpose(1, 2)
        v = attn.to_v(enc).unflatten(2, (attn.heads, -1)).transpose(1, 2)
        bias = torch.einsum("bfrh,bsr->bhfs", frame_bias, rows).repeat_interleave(tpf, dim=2)
        logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
        ref = (logits.softmax(-1) @ v).transpose(1, 2).flatten(2)
        ref = attn.to_out[0](ref)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    # padding tokens get no term, and an empty window row gives no term
    assert rows[..., PAD].abs().sum() == 0
    assert feats[:, :, 3:].abs().sum() == 0


def test_windows_move_the_output_only_for_a_trained_time_aware_model():
    model = _tiny()
    x, t, text, ids, win = _inputs()
    moved = win.clone()
    moved[:, 1] += 1.0
    with torch.no_grad():
        a = model(x, t, text, phase_ids=ids, phase_windows=win).sample
        b = model(x, t, text, phase_ids=ids, phase_windows=moved).sample
        assert torch.equal(a, b)  # zero-init: windows have no effect yet
        for block in model.blocks:
            torch.nn.init.normal_(block.phase_time.weight, std=0.5)
        a = model(x, t, text, phase_ids=ids, phase_windows=win).sample
        b = model(x, t, text, phase_ids=ids, phase_windows=moved).sample
        c = model(x, t, text, phase_ids=ids).sample  # no windows: no term
    assert (a - b).abs().max() > 1e-4 and (a - c).abs().max() > 1e-4
    with pytest.raises(ValueError, match=r"phase_windows must be \(2, 6, 2\)"):
        model(x, t, text, phase_ids=ids, phase_windows=win[:, :3])


def test_gradients_reach_the_zero_init_projection():
    model = _tiny().train()
    x, t, text, ids, win = _inputs()
    model(x, t, text, phase_ids=ids, phase_windows=win).sample.pow(2).mean().backward()
    assert all(b.phase_time.weight.grad.abs().max() > 0 for b in model.blocks)
    names = model.freeze_backbone(train_phase_embedding=True)
    assert any(".phase_time." in n for n in names)


@pytest.mark.parametrize("loader", ["from_pretrained", "from_wan_pretrained"])
def test_plain_wan_folder_gives_a_usable_identity_model(tmp_path, loader):
    """Defect 3: diffusers' `from_pretrained` of a plain Wan folder left the new modules on
    `meta`; now they are materialised as identity (audio, phase ids and windows all usable)."""
    torch.manual_seed(3)
    wan = WanTransformer3DModel(**wan_config_from_actavatar(TINY_TRANSFORMER_CONFIG)).eval()
    wan.save_pretrained(tmp_path / "wan", safe_serialization=True)
    adapter_cfg = {
        k: v for k, v in TINY_TRANSFORMER_CONFIG.items() if k.startswith(("audio_", "max_"))
    }
    model = getattr(ActAvatarTransformer3DModel, loader)(
        tmp_path / "wan", time_aware_phases=True, **adapter_cfg
    ).eval()
    assert not any(p.is_meta for p in model.parameters())
    assert model.phase_embedding.weight.abs().max() == 0
    for block in model.blocks:
        assert block.phase_time.weight.abs().max() == 0
        assert block.audio_attn.to_out[0].weight.abs().max() == 0
        assert block.audio_attn.to_q.weight.abs().max() > 0
    x, t, text, ids, win = _inputs(frames=3)
    audio = torch.randn(2, 9, TINY_TRANSFORMER_CONFIG["audio_layers"], 16)
    with torch.no_grad():
        out = model(x, t, text, audio_embeds=audio, phase_ids=ids, phase_windows=win).sample
        ref = wan(x, t, text).sample
    assert (out - ref).abs().max() <= 1e-5
