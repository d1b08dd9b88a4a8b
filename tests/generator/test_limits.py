"""Checkpoint limits (issue 10, defect 5): read from config files, exact at the RoPE edge."""

from __future__ import annotations

import json

import pytest
import torch

from generator.limits import checkpoint_limits


def _model(rope: int):
    from generator.presets import get_transformer_config
    from generator.transformer_actavatar import ActAvatarTransformer3DModel

    torch.manual_seed(0)
    return ActAvatarTransformer3DModel(
        **get_transformer_config("tiny", rope_max_seq_len=rope, num_layers=1)
    ).eval()


def _forward(model, f: int, h: int, w: int) -> None:
    c = model.config.in_channels
    x = torch.randn(1, c, f, h, w)
    text = torch.randn(1, 8, model.config.text_dim)
    with torch.no_grad():
        model(x, torch.tensor([500.0]), text, return_dict=False)


def test_limits_from_config_match_the_rope_edge(tmp_path):
    model = _model(rope=6)
    model.save_pretrained(tmp_path / "ckpt" / "transformer")
    (tmp_path / "ckpt" / "vae").mkdir()
    (tmp_path / "ckpt" / "vae" / "config.json").write_text(
        json.dumps({"scale_factor_spatial": 16, "scale_factor_temporal": 4})
    )
    lim = checkpoint_limits(tmp_path / "ckpt")
    assert (lim.max_height, lim.max_width) == (6 * 2 * 16, 6 * 2 * 16)
    assert lim.max_frames == 4 * (6 - 1) + 1
    # the largest allowed latent grid runs, one patch more fails inside diffusers' RoPE
    _forward(model, 6, lim.max_height // 16, lim.max_width // 16)
    with pytest.raises(RuntimeError):
        _forward(model, 6, lim.max_height // 16 + 2, lim.max_width // 16)
    with pytest.raises(RuntimeError):
        _forward(model, 7, 4, 4)
    assert lim.check(lim.max_height, lim.max_width, lim.max_frames) is None
    msg = lim.check(704, 1280, 81)
    assert msg is not None and "\n" not in msg
    assert str(tmp_path / "ckpt") in msg and "192x192" in msg and "21 frames" in msg


def test_transformer_folder_alone_and_missing_config(tmp_path):
    _model(rope=32).save_pretrained(tmp_path / "t")
    lim = checkpoint_limits(tmp_path / "t")
    assert lim.max_width == 32 * 2 * 16 and lim.vae_scale_temporal == 4
    with pytest.raises(FileNotFoundError, match="no transformer/config.json"):
        checkpoint_limits(tmp_path / "nothing")


def test_a_sink_checkpoint_has_one_latent_frame_less(tmp_path):
    """The identity sink takes a RoPE frame position in front of the clip (issue 20)."""
    from generator.presets import get_transformer_config
    from generator.transformer_actavatar import ActAvatarTransformer3DModel

    torch.manual_seed(0)
    model = ActAvatarTransformer3DModel(
        **get_transformer_config("tiny", rope_max_seq_len=6, num_layers=1), reference_sink=True
    ).eval()
    model.save_pretrained(tmp_path / "ckpt" / "transformer")
    lim = checkpoint_limits(tmp_path / "ckpt")
    assert lim.sink_frames == 1 and lim.max_latent_frames == 5
    assert lim.max_frames == 4 * (5 - 1) + 1 and lim.check(64, 64, 17) is None
    assert "17 frames" in lim.check(64, 64, 21)
    _forward(model, 5 + 1, 4, 4)  # [sink | 5 clip frames]: the edge runs
    with pytest.raises(RuntimeError):
        _forward(model, 6 + 1, 4, 4)
