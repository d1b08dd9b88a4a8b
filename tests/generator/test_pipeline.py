"""ActAvatarPipeline on tiny offline components: frames, determinism, guidance, round trip,
continuity, `from_wan`, and the `actavatar` renderer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from support import TINY_F, TINY_H, TINY_W, TWO_PHASE_PROMPT, run_tiny_pipeline

from generator.conditioning import (
    clean_frame_mask,
    color_match,
    compose_clean_latents,
    latent_frames_for_context,
    token_timesteps,
)
from generator.pipeline_actavatar import ActAvatarPipeline, Conditioning, combine_guidance
from generator.render_types import RenderRequest

H, W, F = TINY_H, TINY_W, TINY_F
PROMPT = TWO_PHASE_PROMPT


def _run(pipe, avatar, speech, **kw):
    return run_tiny_pipeline(pipe, avatar, speech, **{"num_inference_steps": 3, **kw})


def test_frames_and_determinism(tiny_pipe, avatar, speech):
    a = _run(tiny_pipe, avatar, speech)
    assert a.shape == (1, F, H, W, 3) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    b = _run(tiny_pipe, avatar, speech)
    np.testing.assert_array_equal(a, b)
    c = _run(tiny_pipe, avatar, speech, seed=1)
    assert np.abs(a - c).max() > 0
    steps = []
    _run(tiny_pipe, avatar, speech, num_frames=13, progress=lambda d, t: steps.append((d, t)))
    assert steps == [(1, 3), (2, 3), (3, 3)]
    with pytest.raises(ValueError):
        _run(tiny_pipe, avatar, speech, num_frames=10)


def test_batched_guidance_equals_three_passes(tiny_pipe, avatar, speech):
    pipe = tiny_pipe
    pipe._guidance_scale, pipe._audio_guidance_scale = 5.0, 4.0
    emb, ids, neg, neg_ids = pipe.encode_prompt(PROMPT, max_sequence_length=32)
    audio = pipe.encode_audio(speech, F, 25)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 48, 3, H // 16, W // 16, generator=g)
    ts = token_timesteps(700.0, clean_frame_mask(3, 1), (H // 32) * (W // 32))
    with torch.no_grad():
        cond = Conditioning(emb, ids, neg, neg_ids, audio)
        batched = pipe.predict_velocity(x, ts, cond, batched=True)
        passes = pipe.predict_velocity(x, ts, cond, batched=False)
        tr = pipe.transformer
        v_u = tr(x, ts, neg, phase_ids=neg_ids).sample
        v_t = tr(x, ts, emb, phase_ids=ids).sample
        v_ta = tr(x, ts, emb, phase_ids=ids, audio_embeds=audio).sample
    manual = v_u + 5.0 * (v_t - v_u) + 4.0 * (v_ta - v_t)
    torch.testing.assert_close(passes, manual, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(batched, manual, atol=1e-4, rtol=1e-4)
    assert (v_ta - v_t).abs().max() > 1e-4 and (v_t - v_u).abs().max() > 1e-4
    assert torch.equal(combine_guidance(v_u, v_t, v_ta, 1.0, 1.0), v_u + (v_t - v_u) + (v_ta - v_t))

    a = _run(pipe, avatar, speech, batched_guidance=True)
    b = _run(pipe, avatar, speech, batched_guidance=False)
    np.testing.assert_allclose(a, b, atol=2e-3)


def test_save_load_round_trip(tiny_pipe, avatar, speech, tmp_path):
    before = _run(tiny_pipe, avatar, speech)
    tiny_pipe.save_pretrained(tmp_path / "rt", safe_serialization=True)
    assert not list((tmp_path / "rt").rglob("*.bin")) and not list((tmp_path / "rt").rglob("*.pt"))
    again = ActAvatarPipeline.from_pretrained(tmp_path / "rt", use_safetensors=True)
    again.set_progress_bar_config(disable=True)
    assert type(again.transformer).__name__ == "ActAvatarTransformer3DModel"
    np.testing.assert_array_equal(before, _run(again, avatar, speech))


def test_conditioning_helpers():
    mask = clean_frame_mask(4, 3, batch_size=2)
    assert mask.tolist() == [[0, 0, 0, 1]] * 2
    ts = token_timesteps(torch.tensor([10.0, 20.0]), mask, 5)
    assert ts.shape == (2, 20) and torch.all(ts[:, :15] == 0) and ts[1, 15:].eq(20).all()
    assert latent_frames_for_context(1) == 1 and latent_frames_for_context(9) == 3
    with pytest.raises(ValueError):
        latent_frames_for_context(4)
    lat, clean = torch.zeros(1, 2, 4, 1, 1), torch.ones(1, 2, 3, 1, 1)
    assert compose_clean_latents(lat, clean, 3)[0, 0, :, 0, 0].tolist() == [1, 1, 1, 0]
    frames = np.full((3, 4, 4, 3), 100, np.uint8)
    ref = np.full((4, 4, 3), 150, np.uint8)
    out = color_match(frames, ref, strength=1.0, start=1)
    assert (out[0] == 100).all() and abs(int(out[1:].mean()) - 150) <= 1


@pytest.mark.parametrize("num_context", [1, 9])
def test_continuity_first_latents_are_clean_context(tiny_pipe, avatar, speech, num_context):
    pipe = tiny_pipe
    rng = np.random.RandomState(num_context)
    ctx = [Image.fromarray((rng.rand(H, W, 3) * 255).astype(np.uint8)) for _ in range(num_context)]
    n_clean = latent_frames_for_context(num_context)
    expected = pipe.encode_condition_frames(ctx, H, W)
    assert expected.shape[2] == n_clean

    seen = []
    original = pipe.transformer.forward

    def spy(hidden_states, timestep, *args, **kwargs):
        seen.append((hidden_states.detach().clone(), timestep.detach().clone()))
        return original(hidden_states, timestep, *args, **kwargs)

    pipe.transformer.forward = spy
    try:
        latents = _run(
            pipe, avatar, speech, num_frames=13, context_frames=ctx, output_type="latent"
        )
    finally:
        del pipe.transformer.forward
    tpf = (H // 32) * (W // 32)
    assert seen
    for hidden, timestep in seen:
        torch.testing.assert_close(
            hidden[:, :, :n_clean], expected.expand(hidden.shape[0], -1, -1, -1, -1)
        )
        assert torch.all(timestep[:, : n_clean * tpf] == 0)
        assert torch.all(timestep[:, n_clean * tpf :] > 0)
    torch.testing.assert_close(latents[:, :, :n_clean], expected)
    with pytest.raises(ValueError):
        _run(pipe, avatar, speech, context_frames=ctx[:1] * 2)


def test_from_wan_assembles_from_plain_checkpoints(tmp_path, avatar, speech):
    from generator.presets import TINY_TRANSFORMER_CONFIG, build_tiny_wan_and_wav2vec_dirs

    wan_dir, w2v_dir = build_tiny_wan_and_wav2vec_dirs(tmp_path)
    adapter = {
        k: TINY_TRANSFORMER_CONFIG[k]
        for k in ("audio_hidden_dim", "audio_tokens_per_frame", "audio_token_dim", "max_phases")
    }
    pipe = ActAvatarPipeline.from_wan(wan_dir, w2v_dir, torch_dtype=torch.float32, **adapter)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.transformer.config.audio_in_dim == 16 and pipe.transformer.config.audio_layers == 2
    assert pipe.transformer.phase_embedding.weight.abs().max() == 0
    out = _run(pipe, avatar, speech, num_inference_steps=2)
    assert out.shape == (1, F, H, W, 3)
    pipe.save_pretrained(tmp_path / "saved", safe_serialization=True)
    again = ActAvatarPipeline.from_pretrained(tmp_path / "saved", use_safetensors=True)
    again.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(out, _run(again, avatar, speech, num_inference_steps=2))


def test_actavatar_renderer(tiny_dir, avatar, speech):
    from generator.renderer_actavatar import load_actavatar_renderer
    from generator.sampling import SamplingRequest

    renderer = load_actavatar_renderer(
        tiny_dir, device="cpu", sampling=SamplingRequest(steps=2), color_match_strength=0.5
    )
    assert renderer.name == "actavatar"
    req = RenderRequest(
        index=0,
        num_frames=F,
        fps=25,
        width=W,
        height=H,
        audio=speech[: int(F / 25 * 16000)],
        prompt=PROMPT,
        image=avatar,
        reference_image=avatar,
        seed=3,
    )
    calls = []
    first = renderer.render(req, progress=lambda d, t: calls.append(d))
    assert first.shape == (F, H, W, 3) and first.dtype == np.uint8 and calls == [1, 2]

    tail = [Image.fromarray(f) for f in first[-5:]]
    nxt = RenderRequest(
        index=1,
        num_frames=13,
        fps=25,
        width=W,
        height=H,
        audio=speech[:8320],
        prompt=PROMPT,
        image=tail[-1],
        reference_image=avatar,
        overlap_frames=5,
        context_frames=tail,
        seed=4,
        sample_rate=16000,
    )
    second = renderer.render(nxt)
    assert second.shape == (13, H, W, 3)
    # the tiny preset has no time-aware phases: the render says it dropped the phase windows
    from generator.transformer_actavatar import PHASE_WINDOWS_WARNING

    assert PROMPT.phases and renderer.last_stats["warnings"] == [PHASE_WINDOWS_WARNING]
    assert renderer.last_stats["timing"].startswith("text anchors only")
    # a time-aware transformer reads them: no warning
    renderer.pipeline.transformer.register_to_config(time_aware_phases=True)
    try:
        stats = renderer._timing_stats(nxt)
        assert "warnings" not in stats and stats["timing"].startswith("time-aware")
    finally:
        renderer.pipeline.transformer.register_to_config(time_aware_phases=False)


def test_renderer_hands_latents_on_without_encoding_them_again(tiny_dir, avatar, speech):
    """Latent continuity: a render keeps its clean latents (the 1 + 4k layout: F frames ->
    (F - 1) / 4 + 1 latents); a request with `context_latents` has them written as its clean
    leading latent frames, exactly, and the VAE encoder is not called for them."""
    from generator.renderer_actavatar import load_actavatar_renderer
    from generator.sampling import SamplingRequest

    renderer = load_actavatar_renderer(tiny_dir, device="cpu", sampling=SamplingRequest(steps=2))
    pipe = renderer.pipeline

    def request(index, num_frames, **kw):
        return RenderRequest(
            index=index,
            num_frames=num_frames,
            fps=25,
            width=W,
            height=H,
            audio=speech[: int(num_frames / 25 * 16000)],
            prompt=PROMPT,
            image=avatar,
            reference_image=avatar,
            seed=index,
            **kw,
        )

    first = renderer.render(request(0, F))
    latents = renderer.last_latents
    assert latents.dtype == np.float32 and latents.shape[1] == (F - 1) // 4 + 1
    assert latents.shape[2:] == (H // 16, W // 16)
    tail = latents[:, -2:]  # two latents: 5 frames of context

    def no_encoding(*args, **kwargs):
        raise AssertionError("context latents must not be encoded again")

    pipe.encode_condition_frames = no_encoding
    try:
        second = renderer.render(request(1, 13, overlap_frames=5, context_latents=tail))
    finally:
        del pipe.encode_condition_frames
    assert second.shape == (13, H, W, 3) and first.shape == (F, H, W, 3)
    np.testing.assert_array_equal(renderer.last_latents[:, :2], tail)  # clean, as handed on
    assert not np.array_equal(renderer.last_latents[:, 2], latents[:, -1])
    with pytest.raises(ValueError, match="do not fit"):
        renderer.render(request(2, 13, overlap_frames=5, context_latents=tail[:, :, :-1]))
