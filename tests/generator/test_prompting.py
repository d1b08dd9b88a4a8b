"""PACA structured prompts: rendering, token -> block indices, joint encoding."""

from __future__ import annotations

import pytest
import torch

from generator.prompting import (
    encode_structured_prompt,
    render_structured_prompt,
    token_block_ids,
)
from generator.render_types import PromptPhase, StructuredPrompt


@pytest.fixture(scope="module")
def tokenizer(tiny_pipe):
    return tiny_pipe.tokenizer


PROMPTS = {
    "base only": StructuredPrompt("A woman in business attire speaking professionally"),
    "one phase": StructuredPrompt(
        "A man speaking calmly", (PromptPhase("Gestures outward with open palm", 0.0, 2.0),), 5.0
    ),
    "several phases": StructuredPrompt(
        "A presenter in a studio, bright soft light",
        (
            PromptPhase("Gestures outward with open palm", 0.0, 2.0),
            PromptPhase("Points downward to emphasize detail", 2.0, 4.0),
            PromptPhase("Waves hello", 4.0, 5.0),
        ),
        5.0,
    ),
    # odd splits: unknown characters, glued punctuation, extra whitespace, CJK, emoji, digits
    "odd": StructuredPrompt(
        "Zyx-qwv!!  speaker…   «quoted»",
        (
            PromptPhase("...nods;then☺ shrugs", 0.5, 1.25),
            PromptPhase("挥手 waves", 1.25, 3.0),
            PromptPhase("x", 3.0, 3.5),
            PromptPhase("12345,67890", 3.5, 5.0),
        ),
        5.0,
    ),
}


def test_render_spans_tile_the_text():
    r = render_structured_prompt(PROMPTS["several phases"])
    assert r.num_blocks == 4
    assert r.spans[0][0] == 0 and r.spans[-1][1] == len(r.text)
    assert all(a[1] == b[0] for a, b in zip(r.spans, r.spans[1:]))
    assert "[2.0s-4.0s] Points downward to emphasize detail" in r.text
    assert render_structured_prompt("plain   text ").text == "plain text"


@pytest.mark.parametrize("name", list(PROMPTS))
def test_token_block_ids_from_offsets(tokenizer, name):
    prompt = PROMPTS[name]
    r = render_structured_prompt(prompt)
    enc = tokenizer(r.text, return_offsets_mapping=True, add_special_tokens=True)
    offsets = enc["offset_mapping"]
    ids = token_block_ids(offsets, r.spans, r.text)
    assert len(ids) == len(enc["input_ids"])
    assert enc["input_ids"][-1] == tokenizer.eos_token_id and ids[-1] == 0  # EOS -> base
    body = ids[:-1]
    assert body == sorted(body), "blocks appear in order"
    assert set(body) == set(range(r.num_blocks)), "every block has at least one token"
    for (s, e), k in zip(offsets[:-1], body):
        text = r.text[s:e].strip()
        lo, hi = r.spans[k]
        # the token's visible text lies inside its block
        assert text == "" or (
            lo <= r.text.index(text, s) and r.text.index(text, s) + len(text) <= hi
        )


def test_token_block_ids_handles_straddling_tokens():
    text = "ab cd"
    spans = ((0, 2), (2, 5))
    # a token glued across the boundary (" c") belongs to the block of its first visible char
    assert token_block_ids([(0, 2), (2, 4), (4, 5), (0, 0)], spans, text) == [0, 1, 1, 0]
    assert token_block_ids([(1, 4)], spans, text) == [0]


def test_encode_structured_prompt(tiny_pipe):
    pipe = tiny_pipe
    max_phases = pipe.transformer.config.max_phases
    prompts = [PROMPTS["several phases"], PROMPTS["base only"], "negative words"]
    embeds, phase_ids = encode_structured_prompt(
        prompts, pipe.tokenizer, pipe.text_encoder, max_sequence_length=64, max_phases=max_phases
    )
    assert embeds.shape == (3, 64, pipe.transformer.config.text_dim)
    assert phase_ids.shape == (3, 64) and phase_ids.dtype == torch.long
    for b in range(3):
        n = int((phase_ids[b] != max_phases + 1).sum())
        assert torch.all(embeds[b, n:] == 0) and torch.all(embeds[b, :n].abs().sum(-1) > 0)
        assert torch.all(phase_ids[b, n:] == max_phases + 1)
    assert set(phase_ids[0].unique().tolist()) == {0, 1, 2, 3, max_phases + 1}
    assert set(phase_ids[1].unique().tolist()) == {0, max_phases + 1}

    too_many = StructuredPrompt(
        "x", tuple(PromptPhase("y", i, i + 1) for i in range(max_phases + 1)), 9
    )
    with pytest.raises(ValueError):
        encode_structured_prompt(too_many, pipe.tokenizer, pipe.text_encoder, max_phases=max_phases)

    # truncation keeps the alignment (and the EOS)
    embeds, phase_ids = encode_structured_prompt(
        PROMPTS["several phases"],
        pipe.tokenizer,
        pipe.text_encoder,
        max_sequence_length=8,
        max_phases=max_phases,
    )
    assert phase_ids.shape == (1, 8) and phase_ids[0, -1] == 0
