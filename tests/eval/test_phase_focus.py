"""Phase-focus capture: a diffusers attention processor on every block's attn2."""

import numpy as np
import torch

from generator.eval.bench import MODEL_OVERRIDES
from generator.eval.phase_focus import block_mass, capture_text_attention, phase_focus
from generator.presets import get_transformer_config
from generator.transformer_actavatar import ActAvatarTransformer3DModel


def _model_and_inputs():
    torch.manual_seed(0)
    model = ActAvatarTransformer3DModel(**get_transformer_config("tiny", **MODEL_OVERRIDES)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.phase_embedding.weight, std=0.5)
        model.phase_embedding.weight[model.phase_pad_id].zero_()
    g = torch.Generator().manual_seed(1)
    b, f, s = 2, 5, 12
    x = torch.randn(b, 12, f, 4, 4, generator=g)
    ts = torch.full((b, f * 4), 500.0)
    text = torch.randn(b, s, 32, generator=g)
    text[:, 10:] = 0
    ids = torch.tensor([[0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 5, 5]] * b)
    audio = torch.randn(b, 17, 2, 16, generator=g)
    return model, (x, ts, text), dict(audio_embeds=audio, phase_ids=ids), ids


def test_capture_shapes_sums_and_same_output():
    model, args, kwargs, _ = _model_and_inputs()
    with torch.no_grad():
        ref = model(*args, **kwargs).sample
        default = [type(b.attn2.get_processor()) for b in model.blocks]
        with capture_text_attention(model, tokens_per_frame=4) as rec:
            out = model(*args, **kwargs).sample
            model(*args, **kwargs)  # a second call is averaged in
        probs = rec.mean()
    assert probs.shape == (4, 2, 5, 12)  # (layers, batch, frames, text tokens)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert rec.calls == [2, 2, 2, 2]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)  # same attention, explicit softmax
    assert [type(b.attn2.get_processor()) for b in model.blocks] == default  # restored


def test_phase_focus_on_hand_built_attention():
    ids = np.array([0, 0, 1, 1, 2, 2, 5])
    probs = np.zeros((2, 1, 4, 7))  # 2 layers, 1 clip, frame 0 + 3 generated frames
    probs[:, 0, :, :] = 1 / 7
    # layer 2: frames of phase 1 (generated 0..1 -> latent 1..2) look at phase-1 tokens only
    probs[1, 0, 1:3] = [0, 0, 0.5, 0.5, 0, 0, 0]
    probs[1, 0, 3] = [0, 0, 0.1, 0.1, 0.4, 0.4, 0]  # phase 2 frame: 80 % on phase 2
    out = phase_focus(probs, ids[None], [[(0, 2), (2, 3)]])
    np.testing.assert_allclose(out["focus_rel"], [0.5, 0.9])  # layer 2: (1.0 + 0.8) / 2
    np.testing.assert_allclose(out["focus"], [2 / 7, 0.9])
    np.testing.assert_allclose(out["chance_rel"], [0.5, 0.5])
    mass = block_mass(probs[1, 0], ids, 3)
    np.testing.assert_allclose(mass[3], [0, 0.2, 0.8, 0])
