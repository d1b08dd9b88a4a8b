"""Which inputs each guidance branch receives (issue 10 defect 4), and the train/inference
agreement of the unconditional text input (defect 2)."""

from __future__ import annotations

import torch
from support import TINY_F, TINY_H, TINY_W, TWO_PHASE_PROMPT

from generator.prompting import encode_structured_prompt, phase_windows, unconditional_phase_ids

H, W, F = TINY_H, TINY_W, TINY_F
PROMPT = TWO_PHASE_PROMPT


def _record_calls(pipe, batched: bool, avatar, speech) -> list[dict]:
    calls: list[dict] = []

    def hook(module, args, kwargs):
        calls.append(
            {
                "x": args[0].clone(),
                "text": args[2].clone(),
                "phase_ids": kwargs.get("phase_ids"),
                "audio": kwargs.get("audio_embeds"),
                "audio_mask": kwargs.get("audio_mask"),
                "phase_windows": kwargs.get("phase_windows"),
            }
        )

    handle = pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        pipe(
            image=avatar,
            audio=speech,
            prompt=PROMPT,
            num_frames=F,
            height=H,
            width=W,
            num_inference_steps=1,
            seed=0,
            guidance_scale=5.0,
            audio_guidance_scale=4.0,
            max_sequence_length=32,
            batched_guidance=batched,
        )
    finally:
        handle.remove()
    return calls


def _expected(pipe, speech):
    emb, ids = encode_structured_prompt(
        PROMPT, pipe.tokenizer, pipe.text_encoder, 32, pipe.transformer.config.max_phases
    )
    neg, _ = encode_structured_prompt(
        "Bright tones, overexposed, static, blurred details, subtitles, style, works, "
        "paintings, images, static, overall gray, worst quality, low quality, JPEG compression "
        "residue, ugly, incomplete, extra fingers, poorly drawn hands, poorly drawn faces, "
        "deformed, disfigured, misshapen limbs, fused fingers, still picture, messy "
        "background, three legs, many people in the background, walking backwards",
        pipe.tokenizer,
        pipe.text_encoder,
        32,
        pipe.transformer.config.max_phases,
    )
    audio = pipe.encode_audio(speech, F, 25)
    win = phase_windows(PROMPT, 25, 3, pipe.transformer.config.max_phases)[None]
    return emb, ids, neg, audio, win


def test_three_passes_get_uncond_text_textaudio(tiny_pipe, avatar, speech):
    calls = _record_calls(tiny_pipe, batched=False, avatar=avatar, speech=speech)
    emb, ids, neg, audio, win = _expected(tiny_pipe, speech)
    assert len(calls) == 3  # one step, three branches
    u, t, ta = calls
    # unconditional: the negative prompt, all-base ids, no audio (adapter skipped)
    torch.testing.assert_close(u["text"], neg)
    assert torch.equal(u["phase_ids"], unconditional_phase_ids(1, 32))
    assert u["audio"] is None
    # text: the structured prompt with its PACA ids, no audio
    torch.testing.assert_close(t["text"], emb)
    assert torch.equal(t["phase_ids"], ids) and t["audio"] is None
    # text + audio: the same prompt and ids, plus the speech features
    torch.testing.assert_close(ta["text"], emb)
    assert torch.equal(ta["phase_ids"], ids)
    torch.testing.assert_close(ta["audio"], audio)
    for c in calls:  # same noisy latents; the windows of the prompt in every branch
        assert torch.equal(c["x"], u["x"])
        torch.testing.assert_close(c["phase_windows"], win)
        assert c["audio_mask"] is None


def test_batched_call_carries_the_same_inputs_per_row(tiny_pipe, avatar, speech):
    (call,) = _record_calls(tiny_pipe, batched=True, avatar=avatar, speech=speech)
    emb, ids, neg, audio, win = _expected(tiny_pipe, speech)
    torch.testing.assert_close(call["text"], torch.cat([neg, emb, emb]))
    assert torch.equal(call["phase_ids"], torch.cat([unconditional_phase_ids(1, 32), ids, ids]))
    assert call["audio_mask"].tolist() == [0.0, 0.0, 1.0]  # audio only in the last row
    torch.testing.assert_close(call["audio"], audio.expand(3, -1, -1, -1))
    torch.testing.assert_close(call["phase_windows"], win.expand(3, -1, -1))


def test_dropped_text_in_training_equals_the_inference_unconditional_ids(tiny_pipe, tmp_path):
    """Defect 2: the training null text kept the prompt's phase pattern."""
    from generator.train.data import CachedClipDataset, CacheWriter, collate_clips

    emb, ids = encode_structured_prompt(PROMPT, tiny_pipe.tokenizer, tiny_pipe.text_encoder, 32, 8)
    n = int((ids[0] != 9).sum())
    with CacheWriter(tmp_path / "c") as w:
        w.add(
            "a",
            {
                "latents": torch.randn(48, 3, 2, 2),
                "audio": torch.randn(9, 2, 16),
                "prompt_embeds": emb[0, :n],
                "phase_ids": ids[0, :n],
                "phase_windows": phase_windows(PROMPT, 25, 3, 8),
                "caption_embeds": emb[0, :n].clone(),
            },
            {"latent_shape": [48, 3, 2, 2], "stage2": True},
        )
    kept = CachedClipDataset(tmp_path / "c", stage="stage2", text_dropout=0.0)
    dropped = CachedClipDataset(tmp_path / "c", stage="stage2", text_dropout=1.0)
    b_keep = collate_clips([kept[0]], text_len=32, phase_pad_id=9)
    b_drop = collate_clips([dropped[0]], text_len=32, phase_pad_id=9)
    assert torch.equal(b_keep["phase_ids"], ids) and b_keep["prompt_embeds"].abs().sum() > 0
    _, _, _, neg_ids = tiny_pipe.encode_prompt(PROMPT, max_sequence_length=32)
    assert b_drop["prompt_embeds"].abs().sum() == 0
    assert torch.equal(b_drop["phase_ids"], neg_ids.cpu())  # same ids as inference's uncond
    assert torch.equal(b_drop["phase_ids"], torch.zeros(1, 32, dtype=torch.long))
    # windows: base row only, like the unconditional branch (whose ids read row 0 alone)
    assert b_drop["phase_windows"][0, 0].tolist() == [0.0, 3.0]
    assert b_drop["phase_windows"][0, 1:].abs().sum() == 0
    assert b_keep["phase_windows"][0, 1:3].abs().sum() > 0
