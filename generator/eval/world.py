"""A synthetic Action Bench in latent space: a small, controlled world for the ablation.

Why: the 5B model cannot be trained here, and nobody can judge a talking-avatar model by
reading its code. This world is built so that each ActAvatar mechanism has something to
explain, and so that every property can be read back exactly from a generated clip:

- **body** (channels `body`): inside the window of phase k the body shows the template
  of phase k's action (``waves`` alternates between two templates frame by frame);
  outside every window it rests (zero). Only the structured prompt explains it.
- **mouth** (channels `mouth`): a fixed template scaled by the clip's audio envelope,
  averaged over the video frames of each latent frame. The audio features carry the
  envelope (plus per-clip nuisance), so only the audio path can explain the mouth.
- **identity** (channels `identity`): a per-clip random pattern, present in every frame
  including the clean conditioning frame 0; only frame 0 tells the model what it is.
- **colour** (drift world only, `color_std > 0`): a per-clip offset per channel, added to
  every channel of every frame (the stand-in for a clip's colour grading); like identity,
  only the clean frames tell the model what it is. `color_std = 0` (the default) draws
  nothing, so the ablation and attribution worlds are unchanged draw for draw.

Chains (issue 20, `SyntheticWorld.chain`): consecutive segments of one talk that share the
identity and the colour; each segment has its own prompt, phases and audio.

Layout: latent (C, F, H, W) with F = 1 + `num_gen_frames`; frame 0 is the clean
conditioning frame (the TI2V reference image), generated frame j (latent j + 1) covers
``[j * frame_seconds, (j + 1) * frame_seconds)`` of the clip and the video frames
``4j + 1 .. 4j + 4`` of the audio (the Wan VAE's 1 + 4k layout).

Prompts use the real structured-prompt format with time anchors
(`generator.prompting.render_structured_prompt`), a Unigram tokenizer trained offline on
this world's sentences, and a small frozen randomly initialised umT5 encoder.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from generator.render_types import PromptPhase, StructuredPrompt

__all__ = [
    "ACTIONS",
    "BRIEF_PROMPT",
    "Clip",
    "SyntheticWorld",
    "WorldConfig",
    "build_world_tokenizer",
    "drift_world_config",
    "build_world_text_encoder",
]

REST = "rest"
# Index 0 is rest; the others are the phase actions (prompt text = the action name).
ACTIONS: tuple[str, ...] = (REST, "raises left hand", "raises right hand", "points down", "waves")
BASE_PROMPTS: tuple[str, ...] = (
    "A person speaking to the camera.",
    "A presenter talking in a studio.",
    "A speaker in an office, calm light.",
)
BRIEF_PROMPT = "A person speaking."


@dataclass(frozen=True)
class WorldConfig:
    """Sizes of the synthetic world (defaults: 6 s clips, 0.5 s per latent frame).

    Fixed before the first full run of the issue-10 bench (not tuned on results): 12
    generated frames, phases of 2-5 frames, first start 0-3, gaps 0-2, two phases per clip
    and three in `three_phase_fraction` of the clips (1,000+ window layouts instead of 36).
    """

    channels: int = 12
    height: int = 4
    width: int = 4
    num_gen_frames: int = 12  # generated latent frames; the clip has 1 + this
    frame_seconds: float = 0.5
    temporal_stride: int = 4  # video frames per latent frame (Wan VAE)
    identity_channels: tuple[int, int] = (0, 4)  # [start, end)
    body_channels: tuple[int, int] = (4, 10)
    mouth_channels: tuple[int, int] = (10, 12)
    audio_layers: int = 2
    audio_dim: int = 16
    audio_nuisance: float = 0.3
    observation_noise: float = 0.05
    num_phases: int = 2  # phases of most clips
    three_phase_fraction: float = 0.3  # share of clips with num_phases + 1 phases
    phase_len: tuple[int, int] = (2, 5)  # inclusive range, in generated frames
    max_start: int = 3
    max_gap: int = 2
    heldout_fraction: float = 0.2
    text_len: int = 64
    text_dim: int = 32
    world_seed: int = 0
    # issue 20 (drift world): per-clip colour offset per channel, N(0, color_std); 0 = none
    color_std: float = 0.0

    @property
    def num_latent_frames(self) -> int:
        return 1 + self.num_gen_frames

    @property
    def num_video_frames(self) -> int:
        return 1 + self.temporal_stride * self.num_gen_frames

    @property
    def duration(self) -> float:
        return self.num_gen_frames * self.frame_seconds

    @property
    def fps(self) -> float:
        return self.temporal_stride / self.frame_seconds

    @property
    def phase_counts(self) -> tuple[int, ...]:
        """Phases per clip that occur: `num_phases`, and one more if `three_phase_fraction`."""
        return (self.num_phases,) + ((self.num_phases + 1,) if self.three_phase_fraction else ())


@dataclass
class Clip:
    """One sample: latents, audio features, prompt and the ground truth to score against."""

    latents: np.ndarray  # (C, F, H, W) float32, F = 1 + num_gen_frames
    audio: np.ndarray  # (F_video, audio_layers, audio_dim) float32
    prompt: StructuredPrompt
    windows: list[tuple[int, int]]  # per phase: [start, end) in generated frames
    actions: list[int]  # per phase: index into ACTIONS (never 0)
    labels: np.ndarray  # (num_gen_frames,) int: ground-truth action per generated frame
    mouth: np.ndarray  # (num_gen_frames,) float: ground-truth mouth opening
    envelope: np.ndarray  # (F_video,) float: audio envelope per video frame
    identity: np.ndarray  # (n_id, H, W) float32
    meta: dict[str, Any] = field(default_factory=dict)
    color: np.ndarray | None = None  # (C,) per-channel colour offset (drift world), else None


def _hash01(*parts: Any) -> float:
    """Deterministic value in [0, 1) from a key: decides which prompt combos are held out."""
    digest = hashlib.sha256(json.dumps(parts).encode()).hexdigest()
    return int(digest[:8], 16) / 2**32


class SyntheticWorld:
    """Templates (fixed by `world_seed`) and the clip generator.

    The templates, the audio directions and the held-out split depend only on the world
    seed, so every ablation run and every training seed sees the same world.
    """

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = cfg = config or WorldConfig()
        rng = np.random.default_rng(cfg.world_seed)
        nb = cfg.body_channels[1] - cfg.body_channels[0]
        nm = cfg.mouth_channels[1] - cfg.mouth_channels[0]
        shape = (cfg.height, cfg.width)
        # body templates: raise left, raise right, point down, wave A, wave B (unit std)
        self.body_templates = rng.standard_normal((5, nb, *shape)).astype(np.float32)
        self.template_actions = np.array([1, 2, 3, 4, 4])  # template -> action index
        self.mouth_template = np.abs(rng.standard_normal((nm, *shape))).astype(np.float32) + 0.5
        self.audio_directions = rng.standard_normal((cfg.audio_layers, cfg.audio_dim)).astype(
            np.float32
        )
        self.layouts_by_count = {n: self._layouts(n) for n in cfg.phase_counts}
        self.layouts = [lay for n in cfg.phase_counts for lay in self.layouts_by_count[n]]
        self.train_by_count: dict[int, list] = {}
        self.heldout_by_count: dict[int, list] = {}
        for n in cfg.phase_counts:
            perms = list(itertools.permutations(range(1, len(ACTIONS)), n))
            combos = [(p, lay) for p in perms for lay in self.layouts_by_count[n]]
            held = [c for c in combos if _hash01(cfg.world_seed, c) < cfg.heldout_fraction]
            held_set = set(held)
            self.heldout_by_count[n] = held
            self.train_by_count[n] = [c for c in combos if c not in held_set]
        self.heldout_combos = [c for n in cfg.phase_counts for c in self.heldout_by_count[n]]
        self.train_combos = [c for n in cfg.phase_counts for c in self.train_by_count[n]]

    def draw_count(self, rng: np.random.Generator) -> int:
        """Phases of a new clip: `num_phases`, or one more with `three_phase_fraction`."""
        cfg = self.config
        if len(cfg.phase_counts) > 1 and rng.random() < cfg.three_phase_fraction:
            return cfg.phase_counts[1]
        return cfg.phase_counts[0]

    # ------------------------------------------------------------------ structure
    def _layouts(self, num_phases: int) -> list[tuple[tuple[int, int], ...]]:
        """All layouts of `num_phases` windows: ordered, non-overlapping, on the frame grid."""
        cfg = self.config
        lo, hi = cfg.phase_len
        out: list[tuple[tuple[int, int], ...]] = []

        def rec(pos: int, left: int, acc: tuple[tuple[int, int], ...]) -> None:
            if left == 0:
                out.append(acc)
                return
            gaps = range(0, cfg.max_start + 1) if not acc else range(0, cfg.max_gap + 1)
            for gap in gaps:
                for length in range(lo, hi + 1):
                    s, e = pos + gap, pos + gap + length
                    if e <= cfg.num_gen_frames:
                        rec(e, left - 1, (*acc, (s, e)))

        rec(0, num_phases, ())
        return out

    def frame_labels(self, windows: list[tuple[int, int]], actions: list[int]) -> np.ndarray:
        """(num_gen_frames,) action index per generated frame (0 = rest)."""
        labels = np.zeros(self.config.num_gen_frames, dtype=np.int64)
        for (s, e), a in zip(windows, actions):
            labels[s:e] = a
        return labels

    def prompt_for(
        self, windows: list[tuple[int, int]], actions: list[int], base: str
    ) -> StructuredPrompt:
        """The structured prompt (base + time-anchored phases) for a clip."""
        fs = self.config.frame_seconds
        phases = tuple(
            PromptPhase(ACTIONS[a], s * fs, e * fs) for (s, e), a in zip(windows, actions)
        )
        return StructuredPrompt(base=base, phases=phases, duration=self.config.duration)

    # ------------------------------------------------------------------ signals
    def envelope(self, rng: np.random.Generator) -> np.ndarray:
        """(F_video,) speech-like envelope in [0, 1]: syllables of 2-6 frames and pauses."""
        n = self.config.num_video_frames
        env = np.zeros(n + 8, dtype=np.float32)
        pos = 0
        while pos < n:
            length = int(rng.integers(2, 7))
            amp = 0.0 if rng.random() < 0.3 else float(rng.uniform(0.2, 1.0))
            env[pos : pos + length] = amp
            pos += length
        env = np.convolve(env, np.array([0.25, 0.5, 0.25], dtype=np.float32), mode="same")
        return env[:n]

    def mouth_from_envelope(self, env: np.ndarray) -> np.ndarray:
        """(1 + num_gen_frames,) mouth opening per latent frame (mean over its video frames)."""
        s = self.config.temporal_stride
        rest = env[1:].reshape(-1, s).mean(axis=1)
        return np.concatenate([env[:1], rest]).astype(np.float32)

    def audio_features(self, env: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(F_video, L, D) features: envelope along fixed directions + per-clip nuisance."""
        cfg = self.config
        nuisance = rng.standard_normal((len(env), cfg.audio_layers, cfg.audio_dim))
        feats = env[:, None, None] * self.audio_directions[None] + cfg.audio_nuisance * nuisance
        return feats.astype(np.float32)

    def render(
        self,
        labels: np.ndarray,
        mouth: np.ndarray,
        identity: np.ndarray,
        phase_starts: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
        color: np.ndarray | None = None,
    ) -> np.ndarray:
        """Latents (C, F, H, W) for per-generated-frame labels and per-latent-frame mouth.

        `phase_starts[j]` is the first frame of the window frame j belongs to (for the
        wave's alternation); frame 0 (conditioning) always rests. `color` (C,) is added to
        every frame (before the observation noise).
        """
        cfg = self.config
        F = cfg.num_latent_frames
        x = np.zeros((cfg.channels, F, cfg.height, cfg.width), dtype=np.float32)
        i0, i1 = cfg.identity_channels
        b0, b1 = cfg.body_channels
        m0, m1 = cfg.mouth_channels
        x[i0:i1] = identity[:, None]
        for j, a in enumerate(labels):
            if a == 0:
                continue
            t = int(np.flatnonzero(self.template_actions == a)[0])
            if a == 4:  # waves: alternate A, B from the window start
                start = 0 if phase_starts is None else int(phase_starts[j])
                t += (j - start) % 2
            x[b0:b1, j + 1] = self.body_templates[t]
        x[m0:m1] = mouth[None, :, None, None] * self.mouth_template[:, None]
        if color is not None:
            x += np.asarray(color, dtype=np.float32)[:, None, None, None]
        if rng is not None and cfg.observation_noise > 0:
            x += cfg.observation_noise * rng.standard_normal(x.shape).astype(np.float32)
        return x

    def make_clip(
        self,
        rng: np.random.Generator,
        combo: tuple[tuple[int, ...], tuple[tuple[int, int], ...]] | None = None,
        talking_head: bool = False,
        brief: bool = False,
        identity: np.ndarray | None = None,
        color: np.ndarray | None = None,
    ) -> Clip:
        """A random clip; `combo` = (actions, windows) fixes the prompt's action/layout.

        `talking_head=True` gives a stage-1 style clip: no actions (body rests), brief caption.
        `identity` / `color` fix the clip's identity and colour (a chain's segments share
        them); otherwise they are drawn (colour only in the drift world, `color_std > 0`).
        """
        cfg = self.config
        if talking_head:
            actions: list[int] = []
            windows: list[tuple[int, int]] = []
        else:
            if combo is None:
                pool = self.train_by_count[self.draw_count(rng)]
                combo = pool[int(rng.integers(len(pool)))]
            actions, windows = list(combo[0]), [tuple(w) for w in combo[1]]
        labels = self.frame_labels(windows, actions)
        starts = np.zeros(cfg.num_gen_frames, dtype=np.int64)
        for s, e in windows:
            starts[s:e] = s
        env = self.envelope(rng)
        mouth = self.mouth_from_envelope(env)
        ni = cfg.identity_channels[1] - cfg.identity_channels[0]
        if identity is None:
            identity = rng.standard_normal((ni, cfg.height, cfg.width)).astype(np.float32)
        if color is None and cfg.color_std > 0:
            color = (cfg.color_std * rng.standard_normal(cfg.channels)).astype(np.float32)
        latents = self.render(labels, mouth, identity, starts, rng, color=color)
        base = BASE_PROMPTS[int(rng.integers(len(BASE_PROMPTS)))]
        prompt = (
            StructuredPrompt(base=BRIEF_PROMPT, duration=cfg.duration)
            if (brief or talking_head)
            else self.prompt_for(windows, actions, base)
        )
        return Clip(
            latents=latents,
            audio=self.audio_features(env, rng),
            prompt=prompt,
            windows=windows,
            actions=actions,
            labels=labels,
            mouth=mouth[1:],
            envelope=env,
            identity=identity,
            color=None if color is None else np.asarray(color, dtype=np.float32),
        )

    def chain(self, rng: np.random.Generator, num_segments: int) -> list[Clip]:
        """`num_segments` consecutive segments of one talk: one identity and one colour (drawn
        once), a new prompt (training combos), phases and audio per segment. Segment 0's
        frame 0 is the clean reference image; later segments' frame 0 is only the truth's
        rest frame (a chained render replaces it with the previous segment's tail)."""
        cfg = self.config
        ni = cfg.identity_channels[1] - cfg.identity_channels[0]
        identity = rng.standard_normal((ni, cfg.height, cfg.width)).astype(np.float32)
        color = (cfg.color_std * rng.standard_normal(cfg.channels)).astype(np.float32)
        return [self.make_clip(rng, identity=identity, color=color) for _ in range(num_segments)]

    def dataset(self, n: int, seed: int, split: str = "train") -> list[Clip]:
        """`n` clips: ``train`` (training combos), ``test`` (held-out combos, cycled in a
        seeded order), ``talking_head`` (rest body, brief prompt: stage-1 data)."""
        rng = np.random.default_rng(seed)
        if split == "talking_head":
            return [self.make_clip(rng, talking_head=True) for _ in range(n)]
        if split == "train":
            return [self.make_clip(rng) for _ in range(n)]
        if split == "test":
            orders = {k: rng.permutation(len(v)) for k, v in self.heldout_by_count.items()}
            used = dict.fromkeys(orders, 0)
            clips = []
            for _ in range(n):
                k = self.draw_count(rng)
                pool, order = self.heldout_by_count[k], orders[k]
                clips.append(self.make_clip(rng, combo=pool[int(order[used[k] % len(order)])]))
                used[k] += 1
            return clips
        raise ValueError(f"unknown split {split!r}")

    def corpus(self) -> list[str]:
        """Every sentence this world can prompt with (the offline tokenizer's corpus)."""
        from generator.prompting import render_structured_prompt

        lines = [BRIEF_PROMPT, *BASE_PROMPTS, *ACTIONS[1:]]
        # every anchor that any layout can write (the vocabulary is words + characters)
        fs = self.config.frame_seconds
        for k in range(self.config.num_gen_frames + 1):
            lines.append(f"[{k * fs:.1f}s-{k * fs:.1f}s]")
        for acts, lay in self.train_combos[:50]:
            lines.append(
                render_structured_prompt(
                    self.prompt_for(list(lay), list(acts), BASE_PROMPTS[0])
                ).text
            )
        return lines


def drift_world_config() -> WorldConfig:
    """The drift world (issue 20), frozen before the first full run: the bench's world plus a
    per-clip colour offset of SD 0.5 per channel (half the SD of a body template value)."""
    return WorldConfig(color_std=0.5)


def build_world_tokenizer(world: SyntheticWorld, extra_pieces: tuple[str, ...] = ()):
    """A word-level Unigram `T5Tokenizer` for the world's vocabulary, built offline.

    umT5's layout (Metaspace `▁` pieces, `<pad>`=0, `</s>`=1, `<unk>`=2, `</s>` appended)
    so character offsets behave as with the real tokenizer. Every word of the corpus is one
    piece; digits and punctuation are single-character pieces, so a time anchor such as
    `[1.5s-3.0s]` is spelled out digit by digit, as umT5 does with numbers.
    `extra_pieces` are appended after every other piece (ids unchanged) with a score that
    beats spelling them out (the readable-anchor variant, `generator.eval.anchors`).
    """
    import re

    from transformers import T5Tokenizer

    words: set[str] = set()
    chars: set[str] = set()
    for line in world.corpus():
        for w in re.findall(r"[A-Za-z]+", line):
            words.add("▁" + w)
        chars.update(c for c in line if not c.isspace())
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    vocab += [(w, -1.0) for w in sorted(words)]
    vocab += [(c, -5.0) for c in sorted(chars)]
    vocab += [("▁" + c, -4.0) for c in sorted(chars) if not c.isalpha()]
    vocab += [(piece, -0.5) for piece in extra_pieces]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=world.config.text_len)


def build_world_text_encoder(vocab_size: int, text_dim: int = 32, seed: int = 0):
    """A small umT5 encoder, randomly initialised from `seed` and frozen (eval mode)."""
    import torch
    from transformers import UMT5EncoderModel

    from generator.presets import tiny_umt5_config

    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        enc = UMT5EncoderModel(tiny_umt5_config(vocab_size, text_dim)).eval()
    finally:
        torch.random.set_rng_state(gen_state)
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc
