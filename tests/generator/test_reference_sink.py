"""Identity sink (issue 20): the `reference_sink` switch of the transformer, the shared layout
helpers, the pipeline's `reference_latents` and the renderer (tiny preset, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import WanTransformer3DModel

from generator.conditioning import (
    clean_frame_mask,
    context_frame_mask,
    noise_context,
    prepend_sink,
    strip_sink,
    token_timesteps,
)
from generator.presets import TINY_TRANSFORMER_CONFIG, meta_transformer
from generator.transformer_actavatar import (
    ActAvatarTransformer3DModel,
    is_actavatar_key,
    is_sink_key,
    wan_config_from_actavatar,
)

TPF = (8 // 2) * (12 // 2)  # tokens per latent frame of the (8, 12) test latents


def _tiny(**overrides) -> ActAvatarTransformer3DModel:
    torch.manual_seed(0)
    return ActAvatarTransformer3DModel(**{**TINY_TRANSFORMER_CONFIG, **overrides}).eval()


def _clip_inputs(batch: int = 2, clip_frames: int = 3, clean: int = 1):
    """[sink | clip] latents (B, 48, 1 + clip_frames, 8, 12), sink + `clean` frames at t = 0,
    and audio for the clip frames only."""
    g = torch.Generator().manual_seed(1)
    cfg = TINY_TRANSFORMER_CONFIG
    x = torch.randn(batch, 48, 1 + clip_frames, 8, 12, generator=g)
    mask = clean_frame_mask(1 + clip_frames, 1 + clean, batch)
    ts = token_timesteps(torch.tensor([500.0, 900.0][:batch]), mask, TPF)
    text = torch.randn(batch, 16, cfg["text_dim"], generator=g)
    text[:, 10:] = 0
    audio = torch.randn(
        batch, 4 * (clip_frames - 1) + 1, cfg["audio_layers"], cfg["audio_in_dim"], generator=g
    )
    phase = torch.tensor([[0] * 4 + [1] * 3 + [2] * 3 + [cfg["max_phases"] + 1] * 6] * batch)
    return x, ts, text, audio, phase


def test_layout_helpers_prepend_mask_strip_and_noise_only_context():
    clip = torch.randn(2, 4, 3, 2, 2)
    sink = torch.full((1, 4, 1, 2, 2), 7.0)
    x = prepend_sink(clip, sink)  # the batch-1 sink is broadcast
    assert x.shape == (2, 4, 4, 2, 2)
    assert (x[:, :, 0] == 7).all() and torch.equal(x[:, :, 1:], clip)
    assert torch.equal(strip_sink(x), clip)
    with pytest.raises(ValueError, match="1 latent frame"):
        prepend_sink(clip, clip)
    # per-sample clean counts; an int count gives clean_frame_mask
    mask = context_frame_mask(4, torch.tensor([2, 3]))
    assert mask.tolist() == [[0, 0, 1, 1], [0, 0, 0, 1]]
    assert torch.equal(context_frame_mask(4, torch.tensor([2, 2])), clean_frame_mask(4, 2, 2))
    # context noise: frames [1, 1 + k) of each sample only, to its own level
    lat, eps = torch.randn(2, 4, 4, 2, 2), torch.randn(2, 4, 4, 2, 2)
    out = noise_context(lat, eps, torch.tensor([0.25, 0.5]), torch.tensor([1, 2]), first=1)
    torch.testing.assert_close(out[0, :, 1], 0.75 * lat[0, :, 1] + 0.25 * eps[0, :, 1])
    torch.testing.assert_close(out[1, :, 1:3], 0.5 * lat[1, :, 1:3] + 0.5 * eps[1, :, 1:3])
    assert torch.equal(out[:, :, 0], lat[:, :, 0])  # the sink: untouched
    assert torch.equal(out[0, :, 2:], lat[0, :, 2:]) and torch.equal(out[1, :, 3], lat[1, :, 3])


def test_switch_off_by_default_and_no_new_key():
    model = _tiny()
    assert model.config.reference_sink is False and model.sink_embedding is None
    assert not any(is_sink_key(k) for k in model.state_dict())
    assert model.parameter_counts()["reference_sink"] == 0


def test_zero_sink_is_the_switch_off_forward_with_frame0_as_a_clean_frame():
    """Exactly equal: with `sink_embedding` = 0, the switch-on forward on [sink | clip] is the
    switch-off forward of the same weights on the same frames (frame 0 an ordinary clean
    frame) when neither gets audio or phase windows; with audio, the clip frames' audio is
    the same and the sink frame gets none."""
    on = _tiny(reference_sink=True)
    off = ActAvatarTransformer3DModel(**TINY_TRANSFORMER_CONFIG).eval()
    missing, unexpected = off.load_state_dict(on.state_dict(), strict=False)
    assert not missing and unexpected == ["sink_embedding.weight"]
    cfg = on.config
    assert on.sink_embedding.weight.shape == (1, cfg.num_attention_heads * cfg.attention_head_dim)
    assert on.sink_embedding.weight.abs().max() == 0
    x, ts, text, audio, phase = _clip_inputs()
    with torch.no_grad():
        a = on(x, ts, text, phase_ids=phase).sample
        b = off(x, ts, text, phase_ids=phase).sample
        assert torch.equal(a, b)
        # audio describes the clip frames; the switch-off model would need one more frame
        with_audio = on(x, ts, text, audio_embeds=audio, phase_ids=phase).sample
        with pytest.raises(ValueError, match="after the reference sink"):
            on(x, ts, text, audio_embeds=audio[:, :-4], phase_ids=phase)
        # a trained sink embedding changes the output (the module is wired)
        on.sink_embedding.weight.normal_(std=0.5)
        moved = on(x, ts, text, phase_ids=phase).sample
    assert with_audio.shape == a.shape
    assert (moved - a).abs().max() > 1e-4


def test_sink_frame_gets_no_audio():
    """Audio reaches the clip frames only: changing the sink frame's position in time does not
    matter to the audio path, and an all-zero-gated batch equals no audio at all."""
    model = _tiny(reference_sink=True)
    with torch.no_grad():
        for block in model.blocks:
            torch.nn.init.normal_(block.audio_attn.to_out[0].weight, std=0.1)
    x, ts, text, audio, _ = _clip_inputs(clip_frames=2)
    with torch.no_grad():
        base = model(x, ts, text).sample
        with_audio = model(x, ts, text, audio_embeds=audio).sample
        gated = model(x, ts, text, audio_embeds=audio, audio_mask=torch.tensor([0.0, 1.0])).sample
    assert (with_audio - base).abs().max() > 1e-4
    torch.testing.assert_close(gated[0], base[0], atol=0, rtol=0)
    torch.testing.assert_close(gated[1], with_audio[1], atol=1e-6, rtol=0)


def test_time_aware_terms_skip_the_sink_frame():
    """Phase windows are in clip frames: the blocks get zero time-aware features for the sink
    frame and, for clip frame j, the features of frame j of the clip alone (it keeps time j)."""
    from generator.transformer_actavatar import phase_time_features

    model = _tiny(reference_sink=True, time_aware_phases=True)
    x, ts, text, audio, phase = _clip_inputs()
    rows = model.config.max_phases + 2
    windows = torch.zeros(2, rows, 2)
    windows[:, 0] = torch.tensor([0.0, 3.0])
    windows[:, 1] = torch.tensor([1.0, 2.0])
    seen = []
    block = model.blocks[0]
    forward = block.forward

    def spy(*args):
        seen.append(args[7])
        return forward(*args)

    block.forward = spy
    with torch.no_grad():
        out = model(x, ts, text, audio_embeds=audio, phase_ids=phase, phase_windows=windows).sample
    assert out.shape == x.shape and torch.isfinite(out).all()
    features, _ = seen[0]
    assert features.shape[1] == 4 and (features[:, 0] == 0).all()
    torch.testing.assert_close(
        features[:, 1:], phase_time_features(3, windows, model.config.phase_time_freqs)
    )


def test_checkpoint_with_sink_round_trips_and_old_checkpoints_load(tmp_path):
    model = _tiny(reference_sink=True)
    with torch.no_grad():
        model.sink_embedding.weight.normal_(std=0.3)
    model.save_pretrained(tmp_path / "sink", safe_serialization=True)
    again, info = ActAvatarTransformer3DModel.from_pretrained(
        tmp_path / "sink", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert again.config.reference_sink is True
    assert torch.equal(again.sink_embedding.weight, model.sink_embedding.weight)
    x, ts, text, audio, phase = _clip_inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            again.eval()(x, ts, text, audio_embeds=audio).sample,
            model(x, ts, text, audio_embeds=audio).sample,
            atol=0,
            rtol=0,
        )

    # an older ActAvatar checkpoint (its config.json has no `reference_sink`) loads as before
    import json

    old = _tiny()
    old.save_pretrained(tmp_path / "old", safe_serialization=True)
    cfg_path = tmp_path / "old" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["reference_sink"]
    cfg_path.write_text(json.dumps(cfg))
    loaded = ActAvatarTransformer3DModel.from_pretrained(tmp_path / "old")
    assert loaded.config.reference_sink is False and loaded.sink_embedding is None
    # ... and with the switch turned on it gets the sink embedding at zero
    sinked = ActAvatarTransformer3DModel.from_wan_pretrained(tmp_path / "old", reference_sink=True)
    assert sinked.sink_embedding.weight.abs().max() == 0
    assert torch.isfinite(sinked.sink_embedding.weight).all()

    # a plain Wan checkpoint loads with the switch on: only ActAvatar keys missing, sink at zero
    wan = WanTransformer3DModel(**wan_config_from_actavatar(TINY_TRANSFORMER_CONFIG))
    wan.save_pretrained(tmp_path / "wan", safe_serialization=True)
    adapter_cfg = {
        k: v for k, v in TINY_TRANSFORMER_CONFIG.items() if k.startswith(("audio_", "max_"))
    }
    from_wan = ActAvatarTransformer3DModel.from_wan_pretrained(
        tmp_path / "wan", reference_sink=True, **adapter_cfg
    )
    assert from_wan.sink_embedding.weight.abs().max() == 0
    assert not any(p.is_meta for p in from_wan.parameters())


def test_5b_preset_on_meta_gets_the_sink_embedding():
    model = meta_transformer("wan2.2-ti2v-5b", reference_sink=True)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["sink_embedding.weight"] == (1, 3072)
    assert all(is_actavatar_key(k) for k in shapes if is_sink_key(k))
    counts = model.parameter_counts()
    assert counts["reference_sink"] == 3072
    assert counts["backbone"] == 4_999_787_712  # the Wan backbone is untouched


# ------------------------------------------------------------------------------ pipeline
def _sink_pipe(tiny_dir, tmp_path, std: float = 0.0):
    """The tiny pipeline with a sink transformer (embedding at zero, or random)."""
    from generator.pipeline_actavatar import ActAvatarPipeline

    pipe = ActAvatarPipeline.from_pretrained(tiny_dir, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    tr = ActAvatarTransformer3DModel.from_wan_pretrained(
        tiny_dir, subfolder="transformer", reference_sink=True
    )
    if std:
        with torch.no_grad():
            tr.sink_embedding.weight.normal_(std=std)
    pipe.register_modules(transformer=tr.eval())
    return pipe


def _call(pipe, avatar, speech, **kw):
    args = dict(
        image=avatar,
        audio=speech[:8000],
        prompt="a person talks",
        num_frames=9,
        height=64,
        width=96,
        num_inference_steps=2,
        seed=3,
    )
    return pipe(**{**args, **kw})


def test_pipeline_sink_layout_and_stripping(tiny_dir, tmp_path, avatar, speech):
    pipe = _sink_pipe(tiny_dir, tmp_path, std=0.3)
    seen = []
    forward = pipe.transformer.forward

    def spy(hidden_states, timestep, *a, **k):
        seen.append((hidden_states.detach().clone(), timestep.detach().clone()))
        return forward(hidden_states, timestep, *a, **k)

    pipe.transformer.forward = spy
    ref = pipe.encode_condition_frames([avatar], 64, 96)
    lat = _call(pipe, avatar, speech, output_type="latent").frames
    assert lat.shape == (1, 48, 3, 4, 6)  # 9 frames -> 3 latent frames, the sink stripped
    assert pipe.sampling_stats["identity_sink"] == "on"
    x, ts = seen[0]
    assert x.shape[2] == 4  # [sink | image context | 2 generated]
    tpf = 2 * 3
    torch.testing.assert_close(x[:1, :, 0].float(), ref[:, :, 0], atol=1e-6, rtol=0)
    assert (ts[:, : 2 * tpf] == 0).all() and (ts[:, 2 * tpf :] > 0).all()
    # given reference_latents are used as the sink instead of encoding `image`
    seen.clear()
    other = torch.randn_like(ref)
    _call(pipe, avatar, speech, output_type="latent", reference_latents=other)
    torch.testing.assert_close(seen[0][0][:1, :, 0].float(), other[:, :, 0], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="reference_latents must be"):
        _call(pipe, avatar, speech, reference_latents=other[:, :, :, :2])
    # decoded output has the clip's frames only
    video = _call(pipe, avatar, speech).frames
    assert video.shape == (1, 9, 64, 96, 3) and np.isfinite(video).all()


def test_pipeline_without_switch_ignores_reference_latents(tiny_pipe, avatar, speech):
    a = _call(tiny_pipe, avatar, speech, output_type="latent").frames
    assert tiny_pipe.sampling_stats["identity_sink"] == "off"
    b = _call(
        tiny_pipe,
        avatar,
        speech,
        output_type="latent",
        reference_latents=torch.randn(1, 48, 1, 4, 6),
    ).frames
    assert torch.equal(a, b)


def test_denoise_holds_the_sink_and_shows_the_clip_only(tiny_dir, tmp_path):
    """`denoise(reference_latents=...)`: the model sees [sink | clean | noisy] every step, the
    sink at timestep 0; `on_step` and the result get the clip's frames only."""
    import copy

    from generator.pipeline_actavatar import Conditioning, Guidance, denoise

    pipe = _sink_pipe(tiny_dir, tmp_path, std=0.3)
    model = pipe.transformer
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 48, 3, 4, 6, generator=g)
    clean = torch.randn(1, 48, 1, 4, 6, generator=g)
    sink = torch.randn(1, 48, 1, 4, 6, generator=g)
    cfg = TINY_TRANSFORMER_CONFIG
    cond = Conditioning(
        prompt_embeds=torch.randn(1, 8, cfg["text_dim"], generator=g),
        phase_ids=None,
        negative_prompt_embeds=torch.zeros(1, 8, cfg["text_dim"]),
        negative_phase_ids=None,
        audio_embeds=torch.randn(1, 9, cfg["audio_layers"], cfg["audio_in_dim"], generator=g),
    )
    seen, steps = [], []
    forward = model.forward

    def spy(hidden_states, timestep, *a, **k):
        seen.append((hidden_states.detach().clone(), timestep.detach().clone()))
        return forward(hidden_states, timestep, *a, **k)

    model.forward = spy
    out, stats = denoise(
        model,
        copy.deepcopy(pipe.scheduler),
        latents,
        clean,
        cond,
        Guidance(1.0, 1.0),
        2,
        on_step=lambda i, t, x: steps.append(tuple(x.shape)),
        reference_latents=sink,
    )
    assert out.shape == latents.shape and steps == [(1, 48, 3, 4, 6)] * 2
    assert torch.equal(out[:, :, :1], clean) and stats["evaluations"] == 2
    for x, ts in seen:
        assert x.shape[2] == 4
        assert torch.equal(x[:, :, 0], sink[:, :, 0]) and torch.equal(x[:, :, 1], clean[:, :, 0])
        assert (ts[:, : 2 * 6] == 0).all() and (ts[:, 2 * 6 :] > 0).all()


def test_context_parallel_with_the_sink_is_refused():
    from diffusers import ContextParallelConfig

    with pytest.raises(NotImplementedError, match="reference_sink checkpoint"):
        _tiny(reference_sink=True).enable_parallelism(
            config=ContextParallelConfig(ulysses_degree=2)
        )
