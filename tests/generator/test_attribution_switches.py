"""Attribution switches (issue 19): absolute frame time and numeric anchors, zero-init.

Each switch is a config flag of the real transformer; at initialisation it is the identity
(a plain checkpoint loads unchanged), once trained it changes the output, and it survives
`save_pretrained`/`from_pretrained`.
"""

from __future__ import annotations

import pytest
import torch

from generator.presets import TINY_TRANSFORMER_CONFIG
from generator.prompting import phase_windows
from generator.render_types import PromptPhase, StructuredPrompt
from generator.transformer_actavatar import (
    ActAvatarTransformer3DModel,
    absolute_time_features,
    is_phase_key,
    timing_mechanism,
)

PAD = TINY_TRANSFORMER_CONFIG["max_phases"] + 1
SWITCHES = ({"frame_time_embedding": True}, {"phase_anchor_embedding": True})


def _tiny(**overrides) -> ActAvatarTransformer3DModel:
    torch.manual_seed(0)
    return ActAvatarTransformer3DModel(**{**TINY_TRANSFORMER_CONFIG, **overrides}).eval()


def _inputs(frames: int = 5, shift: float = 0.0):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 48, frames, 4, 6, generator=g)
    t = torch.tensor([500.0, 900.0])
    text = torch.randn(2, 12, TINY_TRANSFORMER_CONFIG["text_dim"], generator=g)
    ids = torch.tensor([[0, 0, 0, 1, 1, 1, 2, 2, 2, 0, PAD, PAD]] * 2)
    prompt = StructuredPrompt(
        base="A person speaking.",
        phases=(PromptPhase("waves", 0.0, 0.4 + shift), PromptPhase("points", 0.4 + shift, 0.8)),
        duration=0.8,
    )
    win = phase_windows(prompt, 25.0, frames, TINY_TRANSFORMER_CONFIG["max_phases"])
    return x, t, text, ids, win.expand(2, -1, -1).clone()


def _run(model, inputs):
    x, t, text, ids, win = inputs
    with torch.no_grad():
        return model(x, t, text, phase_ids=ids, phase_windows=win, return_dict=False)[0]


@pytest.mark.parametrize("switch", SWITCHES)
def test_zero_init_is_the_plain_model(switch):
    plain = _tiny()
    model = _tiny(**switch)
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(is_phase_key(k) for k in missing)
    assert torch.equal(_run(plain, _inputs()), _run(model, _inputs()))


def test_trained_switches_read_time():
    ft = _tiny(frame_time_embedding=True)
    with torch.no_grad():
        ft.frame_time.weight.normal_(std=1.0)
    x, t, text, ids, win = _inputs()
    out = _run(ft, (x, t, text, ids, win))
    # the same content in every frame gets frame-dependent outputs (frames know when they are)
    plain = _tiny()
    x_const = x[:, :, :1].expand_as(x).contiguous()
    d_plain = (
        (
            _run(plain, (x_const, t, text, ids, win))[:, :, 1:]
            - _run(plain, (x_const, t, text, ids, win))[:, :, :1]
        )
        .abs()
        .max()
    )
    d_ft = (
        (
            _run(ft, (x_const, t, text, ids, win))[:, :, 1:]
            - _run(ft, (x_const, t, text, ids, win))[:, :, :1]
        )
        .abs()
        .max()
    )
    assert d_ft > 10 * max(float(d_plain), 1e-6)
    assert not torch.allclose(out, _run(plain, (x, t, text, ids, win)))

    na = _tiny(phase_anchor_embedding=True)
    with torch.no_grad():
        na.phase_anchor.weight.normal_(std=1.0)
    a = _run(na, _inputs(shift=0.0))
    b = _run(na, _inputs(shift=0.2))  # the windows move, the text does not
    assert (a - b).abs().max() > 1e-3
    # no windows: the anchor term is absent (only the PACA embedding acts)
    x, t, text, ids, _ = _inputs()
    with torch.no_grad():
        no_win = na(x, t, text, phase_ids=ids, return_dict=False)[0]
    assert torch.equal(no_win, _run(_tiny(), (x, t, text, ids, None)))


def test_anchor_term_is_per_phase_row_and_skips_base_and_padding():
    na = _tiny(phase_anchor_embedding=True)
    with torch.no_grad():
        na.phase_anchor.weight.normal_(std=1.0)
    _, _, text, ids, win = _inputs()
    emb = na._anchor_embedding(win, ids, torch.float32)
    assert emb.shape == text.shape
    assert emb[ids == 0].abs().max() == 0 and emb[ids == PAD].abs().max() == 0
    assert torch.allclose(emb[0, 3], emb[0, 5]) and not torch.allclose(emb[0, 3], emb[0, 6])
    feats = absolute_time_features(torch.tensor([0.5, 1.5]))
    assert feats.shape == (2, 13) and feats[1, 0] == pytest.approx(1.5 / 16)


@pytest.mark.parametrize("switch", SWITCHES)
def test_switches_round_trip_through_save_pretrained(tmp_path, switch):
    model = _tiny(**switch)
    name = "frame_time" if "frame_time_embedding" in switch else "phase_anchor"
    with torch.no_grad():
        getattr(model, name).weight.normal_(std=0.5)
    model.save_pretrained(tmp_path / "t", safe_serialization=True)
    loaded = ActAvatarTransformer3DModel.from_pretrained(tmp_path / "t").eval()
    assert all(loaded.config[k] == v for k, v in switch.items())
    assert torch.equal(getattr(loaded, name).weight, getattr(model, name).weight)
    assert torch.equal(_run(loaded, _inputs()), _run(model, _inputs()))
    # a plain checkpoint loaded with the switch on is the identity (zero-init, not meta)
    _tiny().save_pretrained(tmp_path / "plain", safe_serialization=True)
    ident = ActAvatarTransformer3DModel.from_pretrained(tmp_path / "plain", **switch).eval()
    assert getattr(ident, name).weight.abs().max() == 0
    assert torch.equal(_run(ident, _inputs()), _run(_tiny(), _inputs()))


def test_timing_mechanism_names_the_switches():
    assert timing_mechanism({}).startswith("text anchors only")
    assert timing_mechanism({"time_aware_phases": True}).startswith("time-aware")
    assert "numeric anchor" in timing_mechanism({"phase_anchor_embedding": True})
    assert _tiny(time_aware_phases=True).timing_mechanism.startswith("time-aware")
