"""The synthetic ablation: base -> +PACA -> +progressive -> +two-stage -> +time-aware, on CPU,
with the controls that show the instrument can see timing (`generator.eval.controls`).

Protocol (same world, data, seeds and stage-2 optimizer-step budget for every row):

0. *Backbone pre-training* (the stand-in for the public Wan2.2 checkpoint, shared by all
   rows of a seed): full model, brief prompt, no audio, on the training clips. It learns
   the world's video prior (identity copying, what bodies and mouths look like) but not
   the conditioning.
1. Rows, each `steps` optimizer steps from that backbone:
   - **base**: the structured prompt rendered to one flat text (time anchors included),
     *no* phase ids (no PACA embedding), constant audio scale 1.0 in every block;
   - **+PACA**: the same text plus the per-token block ids (phase embeddings);
   - **+progressive**: + audio scale (l/L)^gamma;
   - **+two-stage**: stage 1 = `stage1_steps` extra steps of audio-adapter-only
     training on the frozen backbone with brief prompts on talking-head clips (body at
     rest); the adapter is extracted and injected into a fresh copy of the backbone;
     stage 2 = exactly the +progressive run (same `steps`, data and seeds: full
     fine-tuning with PACA + progressive audio), started from the stage-1 adapter. As in
     the paper (stage 1 20K steps, then stage 2 14K), stage 1 is additional pre-training,
     so this row differs from +progressive only in the adapter stage 2 starts from.
   - **+time-aware**: +two-stage (same stage-1 adapter) with time-aware phase attention
     (`time_aware_phases=True`: a zero-init logit term between each frame's time and each
     phase token's anchor window; beyond the paper).
2. Controls: the positive control (oracle routing, trained like +progressive but with the
   oracle mask, in-memory loop through the trainer's loss) and the negative controls
   (evaluation-time: text-blind, shuffled phase ids, wrong anchors); reference levels
   (chance, anchor-blind) in closed form.
3. Held-out test prompts (action x window layout combinations never seen in training),
   sampled with the Euler flow-matching sampler (`generator.eval.sampling.sample_clips`),
   text cross-attention recorded; probes of frame time and key phase.

The attribution suite (`BenchConfig.attribution()`, issue 19) asks *which element* carries the
gain of +time-aware, on the same world, seeds, backbones and stage-2 steps: +PACA alone, +PACA
with an absolute frame-time embedding, with numeric anchors added to each phase's tokens, with
both, with readable anchor tokens (one token per anchor value), and with time-aware phase
attention (`ATTRIBUTION`; each a config switch of the real model or the text cache, trained by
the real `Trainer`); the oracle trained by the `Trainer`; a budget curve (`budget_mults`); and
every row's IoU against the true timing with jittered test anchors (`jitter_seconds`). Verdicts
are paired per-seed differences with 95% CIs (`generator.eval.report.paired_difference`). On a
shared machine, run one process per seed (`--seeds N --rows ...`) and `merge_runs` the parts.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from generator.eval.world import BRIEF_PROMPT, Clip, SyntheticWorld, WorldConfig

__all__ = [
    "ATTRIBUTION",
    "MODEL_OVERRIDES",
    "VARIANTS",
    "BenchConfig",
    "Variant",
    "encode_clips",
    "merge_runs",
    "run_bench",
]


@dataclass(frozen=True)
class Variant:
    """One row: switches of the real model (`ActAvatarTransformer3DModel` config flags, set
    through the trainer's `model.*` config) and of the data (which text cache it trains on)."""

    name: str
    paca: bool
    progressive: bool
    two_stage: bool
    time_aware: bool = False
    frame_time: bool = False  # model.frame_time_embedding: absolute frame time on video tokens
    anchor_embedding: bool = False  # model.phase_anchor_embedding: numeric anchors on phase tokens
    anchor_tokens: bool = False  # text: one token per anchor value (readable anchors)
    steps_mult: int = 1  # stage-2 budget as a multiple of `BenchConfig.steps`

    def scaled(self, mult: int) -> Variant:
        """The same row at `mult` x the stage-2 steps (the budget curve)."""
        return replace(self, name=f"{self.name} ({mult}x)", steps_mult=mult)


VARIANTS: tuple[Variant, ...] = (
    Variant("base", paca=False, progressive=False, two_stage=False),
    Variant("+PACA", paca=True, progressive=False, two_stage=False),
    Variant("+progressive", paca=True, progressive=True, two_stage=False),
    Variant("+two-stage", paca=True, progressive=True, two_stage=True),
    Variant("+time-aware", paca=True, progressive=True, two_stage=True, time_aware=True),
)
# Issue 19: what carries the gain of +time-aware? Every row is +PACA (no progressive audio, no
# two-stage: those showed no effect) plus one timing element, on the same seeds and backbones.
ATTRIBUTION: tuple[Variant, ...] = (
    Variant("+PACA", paca=True, progressive=False, two_stage=False),
    Variant("+PACA +frame time", paca=True, progressive=False, two_stage=False, frame_time=True),
    Variant(
        "+PACA +numeric anchors",
        paca=True,
        progressive=False,
        two_stage=False,
        anchor_embedding=True,
    ),
    Variant(
        "+PACA +frame time +numeric anchors",
        paca=True,
        progressive=False,
        two_stage=False,
        frame_time=True,
        anchor_embedding=True,
    ),
    Variant(
        "+PACA +anchor tokens", paca=True, progressive=False, two_stage=False, anchor_tokens=True
    ),
    Variant("+PACA +time-aware", paca=True, progressive=False, two_stage=False, time_aware=True),
)
# the budget curve: these rows again at each multiple (the numeric-anchor row with the highest
# 1x IoU is added; rule fixed before the run)
BUDGET_ROWS: tuple[str, ...] = ("+PACA", "+PACA +time-aware")
NUMERIC_ANCHOR_ROWS: tuple[str, ...] = (
    "+PACA +numeric anchors",
    "+PACA +frame time +numeric anchors",
)
ORACLE = Variant("oracle routing", paca=True, progressive=True, two_stage=False)
# evaluation-time negative controls: (name, row it is applied to, input change)
NEGATIVE_CONTROLS: tuple[tuple[str, str, str], ...] = (
    ("text-blind (+two-stage)", "+two-stage", "text_blind"),
    ("shuffled ids (+PACA)", "+PACA", "shuffled_ids"),
    ("shuffled ids (+time-aware)", "+time-aware", "shuffled_ids"),
    ("wrong anchors (+two-stage)", "+two-stage", "wrong_anchors"),
    ("wrong anchors (+time-aware)", "+time-aware", "wrong_anchors"),
)

# The tiny preset, resized to the world (12 latent channels, 32-d text, 2x16-d audio).
MODEL_OVERRIDES: dict[str, Any] = {
    "in_channels": 12,
    "out_channels": 12,
    "text_dim": 32,
    "audio_in_dim": 16,
    "audio_layers": 2,
    "num_attention_heads": 4,
    "attention_head_dim": 16,
    "ffn_dim": 128,
    "num_layers": 4,
    "rope_max_seq_len": 32,
    "max_phases": 4,
    "audio_gamma": 1.5,
}


@dataclass
class BenchConfig:
    """Sizes and budgets of a bench run (`full()` / `quick_config()` give the two presets)."""

    world: WorldConfig = field(default_factory=WorldConfig)
    # sized so that the full run (3 seeds x 6 trained rows + 5 evaluation-only controls)
    # takes about 20 min alone on this 2-core machine (11.7 trainer steps/s on one thread)
    seeds: tuple[int, ...] = (0, 1, 2)
    pretrain_steps: int = 400
    steps: int = 500
    stage1_steps: int = 300  # +two-stage / +time-aware: extra adapter-only steps before stage 2
    batch_size: int = 16
    lr: float = 2e-3
    n_train: int = 1024
    n_talking_head: int = 512
    n_test: int = 256
    sample_steps: int = 16
    eval_batch: int = 64
    data_seed: int = 1234
    threads: int = 1
    model: dict[str, Any] = field(default_factory=lambda: dict(MODEL_OVERRIDES))
    backend: str = "trainer"  # "trainer" (generator.train.Trainer) or "loop" (train_loop.py)
    rows: tuple[str, ...] | None = None  # None: every row and control; else only these rows
    quick: bool = False
    # "ablation" (the paper's rows + controls) or "attribution" (issue 19: ATTRIBUTION rows,
    # oracle, budget curve, jitter curve)
    suite: str = "ablation"
    budget_mults: tuple[int, ...] = (3,)  # attribution: extra budgets (x `steps`) of BUDGET_ROWS
    # attribution: test-time anchor error, seconds: each edge moves by U(-J, J), rounded to 0.1 s
    jitter_seconds: tuple[float, ...] = (0.25, 0.5, 1.0)

    @classmethod
    def full(cls) -> BenchConfig:
        return cls()

    @classmethod
    def attribution(cls) -> BenchConfig:
        """Issue 19's committed run: same world, seeds and budgets as `full()`."""
        return cls(suite="attribution")

    @classmethod
    def quick_config(cls) -> BenchConfig:
        """Plumbing only (CI): tiny budgets, numbers mean nothing."""
        return cls(
            seeds=(0,),
            pretrain_steps=6,
            steps=8,
            stage1_steps=3,
            n_train=48,
            n_talking_head=16,
            n_test=16,
            sample_steps=2,
            eval_batch=16,
            quick=True,
        )

    @classmethod
    def quick_attribution(cls) -> BenchConfig:
        """The attribution suite with the quick budgets (plumbing only)."""
        return replace(
            cls.quick_config(), suite="attribution", budget_mults=(2,), jitter_seconds=(0.5,)
        )


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
@dataclass
class _Data:
    world: SyntheticWorld
    train: Any  # TensorSet, structured prompts
    train_brief: Any  # TensorSet, same clips with the brief prompt
    talking_head: Any  # TensorSet, rest body, brief prompt
    test: Any  # TensorSet, held-out prompts
    test_clips: list[Clip]
    test_wrong: Any  # TensorSet, test prompts with another layout's anchors (same actions)
    references: dict[str, dict[str, float]]
    # attribution suite: the same clips with one token per anchor value, and jittered anchors
    train_tokens: Any = None
    test_tokens: Any = None
    test_jitter: dict[tuple[float, bool], Any] = field(default_factory=dict)

    def test_set(self, anchor_tokens: bool, change: str | None = None) -> Any:
        """The held-out inputs of a row (readable anchors or not), optionally changed."""
        if change is not None and change.startswith("jitter:"):
            return self.test_jitter[(float(change.split(":")[1]), anchor_tokens)]
        if change == "wrong_anchors":
            if anchor_tokens:
                raise ValueError("wrong anchors are not encoded with anchor tokens")
            return self.test_wrong
        return self.test_tokens if anchor_tokens else self.test


def _encode(
    clips: list[Clip],
    tokenizer: Any,
    encoder: Any,
    cfg: WorldConfig,
    brief: bool,
    max_phases: int,
    prompts: list[Any] | None = None,
):
    import torch

    from generator.eval.train_loop import TensorSet
    from generator.prompting import encode_structured_prompt, phase_windows

    if prompts is None:
        prompts = [BRIEF_PROMPT if brief else c.prompt for c in clips]
    cache: dict[Any, tuple[torch.Tensor, torch.Tensor]] = {}
    texts, ids, wins = [], [], []
    with torch.no_grad():
        for p in prompts:
            if p not in cache:
                cache[p] = encode_structured_prompt(
                    p, tokenizer, encoder, max_sequence_length=cfg.text_len, max_phases=max_phases
                )
            e, i = cache[p]
            texts.append(e[0])
            ids.append(i[0])
            wins.append(
                phase_windows(
                    None if isinstance(p, str) else p,
                    cfg.fps,
                    cfg.num_latent_frames,
                    max_phases,
                    cfg.temporal_stride,
                )
            )
    return TensorSet(
        latents=torch.from_numpy(np.stack([c.latents for c in clips])),
        audio=torch.from_numpy(np.stack([c.audio for c in clips])),
        text=torch.stack(texts).float(),
        phase_ids=torch.stack(ids).long(),
        windows=torch.stack(wins).float(),
    )


def encode_clips(
    clips: list[Clip],
    tokenizer: Any,
    encoder: Any,
    cfg: WorldConfig,
    max_phases: int,
    brief: bool = False,
) -> Any:
    """Clips -> `TensorSet` with their structured prompts (or, `brief`, the brief caption)
    encoded: text states, block ids and phase windows."""
    return _encode(clips, tokenizer, encoder, cfg, brief, max_phases)


def build_data(cfg: BenchConfig) -> _Data:
    """Generate and encode the bench data once (shared by every row and seed)."""
    from generator.eval.controls import reference_levels, wrong_layouts
    from generator.eval.world import build_world_text_encoder, build_world_tokenizer

    world = SyntheticWorld(cfg.world)
    tokenizer = build_world_tokenizer(world)
    encoder = build_world_text_encoder(len(tokenizer), cfg.world.text_dim, cfg.world.world_seed)
    mp = cfg.model.get("max_phases", 4)
    train = world.dataset(cfg.n_train, cfg.data_seed, "train")
    th = world.dataset(cfg.n_talking_head, cfg.data_seed + 1, "talking_head")
    test = world.dataset(cfg.n_test, cfg.data_seed + 2, "test")
    wrong = wrong_layouts(world, test, cfg.data_seed + 3)
    wrong_prompts = [world.prompt_for(lay, c.actions, c.prompt.base) for lay, c in zip(wrong, test)]
    extra: dict[str, Any] = {}
    if cfg.suite == "attribution":
        from generator.eval.anchors import anchor_token_text, jitter_prompts

        tok2, enc2 = anchor_token_text(world)
        extra["train_tokens"] = _encode(train, tok2, enc2, cfg.world, False, mp)
        extra["test_tokens"] = _encode(test, tok2, enc2, cfg.world, False, mp)
        jit: dict[tuple[float, bool], Any] = {}
        for i, level in enumerate(cfg.jitter_seconds):
            prompts = jitter_prompts([c.prompt for c in test], level, cfg.data_seed + 10 + i)
            jit[(level, False)] = _encode(test, tokenizer, encoder, cfg.world, False, mp, prompts)
            jit[(level, True)] = _encode(test, tok2, enc2, cfg.world, False, mp, prompts)
        extra["test_jitter"] = jit
    return _Data(
        world=world,
        train=_encode(train, tokenizer, encoder, cfg.world, False, mp),
        train_brief=_encode(train, tokenizer, encoder, cfg.world, True, mp),
        talking_head=_encode(th, tokenizer, encoder, cfg.world, True, mp),
        test=_encode(test, tokenizer, encoder, cfg.world, False, mp),
        test_clips=test,
        test_wrong=_encode(test, tokenizer, encoder, cfg.world, False, mp, wrong_prompts),
        references=reference_levels(world, test, seed=cfg.data_seed),
        **extra,
    )


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def _new_model(cfg: BenchConfig, seed: int, time_aware: bool = False):
    import torch

    from generator.presets import get_transformer_config
    from generator.transformer_actavatar import ActAvatarTransformer3DModel

    torch.manual_seed(seed)
    return ActAvatarTransformer3DModel(
        **get_transformer_config("tiny", **cfg.model, time_aware_phases=time_aware)
    )


def _from_backbone(cfg: BenchConfig, seed: int, backbone: dict[str, Any], time_aware: bool):
    model = _new_model(cfg, seed, time_aware)
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    if unexpected or any(".phase_time." not in k for k in missing):
        raise RuntimeError(f"backbone does not fit: {missing[:4]} {unexpected[:4]}")
    return model


def _stage1_steps(cfg: BenchConfig) -> int:
    """Stage-1 steps of +two-stage: extra, on top of the `steps` of its stage 2."""
    return max(1, cfg.stage1_steps)


class _LoopRuns:
    """In-memory backend (also the oracle control): `train_loop.train` = the trainer's loss."""

    def __init__(self, cfg: BenchConfig, data: _Data) -> None:
        self.cfg, self.data = cfg, data
        self.adapters: dict[int, dict[str, Any]] = {}

    def pretrain(self, seed: int) -> tuple[dict[str, Any], list[float]]:
        """The shared 'public checkpoint': backbone trained with brief prompts and no audio."""
        from generator.eval.train_loop import train

        model = _new_model(self.cfg, seed)
        losses = train(
            model,
            self.data.train_brief,
            self.cfg.pretrain_steps,
            batch_size=self.cfg.batch_size,
            lr=self.cfg.lr,
            seed=seed + 100,
            use_audio=False,
            use_phase_ids=False,
        )
        return copy.deepcopy(model.state_dict()), losses

    def _stage1(self, seed: int, backbone: dict[str, Any]) -> tuple[dict[str, Any], list[float]]:
        from generator.eval.train_loop import train

        model = _from_backbone(self.cfg, seed, backbone, False)
        model.set_audio_scales(progressive=True, scale=1.0)
        model.freeze_backbone()
        losses = train(
            model,
            self.data.talking_head,
            _stage1_steps(self.cfg),
            batch_size=self.cfg.batch_size,
            lr=self.cfg.lr,
            seed=seed + 200,
            use_audio=True,
            use_phase_ids=False,
            num_clean=0,
        )
        return copy.deepcopy(model.audio_adapter_state_dict()), losses

    def variant(
        self, variant: Variant, seed: int, backbone: dict[str, Any], oracle: bool = False
    ) -> tuple[Any, dict[str, list[float]]]:
        from generator.eval.train_loop import train

        curves: dict[str, list[float]] = {}
        model = _from_backbone(self.cfg, seed, backbone, variant.time_aware)
        model.set_audio_scales(progressive=variant.progressive, scale=1.0)
        if variant.two_stage:
            if seed not in self.adapters:
                self.adapters[seed] = self._stage1(seed, backbone)
            adapter, curves["stage1"] = self.adapters[seed]
            model.load_state_dict(adapter, strict=False)
        model.requires_grad_(True)
        on_batch = None
        ctx = contextlib.nullcontext(None)
        if oracle:
            from generator.eval.controls import oracle_routing

            ctx = oracle_routing(model)
        with ctx as procs:
            if procs is not None:
                on_batch = _oracle_setter(self.cfg, self.data.train, procs, self.data)
            curves["stage2" if variant.two_stage else "train"] = train(
                model,
                self.data.train,
                self.cfg.steps,
                batch_size=self.cfg.batch_size,
                lr=self.cfg.lr,
                seed=seed + 300,
                use_audio=True,
                use_phase_ids=variant.paca,
                on_batch=on_batch,
            )
        return model, curves


def _oracle_setter(cfg: BenchConfig, data: Any, procs: list[Any], full: _Data):
    """on_batch callback: the oracle mask of the batch's clips on every processor."""
    from generator.eval.controls import oracle_mask

    windows = full.train_windows_gen  # type: ignore[attr-defined]
    pad = cfg.model.get("max_phases", 4) + 1
    tpf = (cfg.world.height // 2) * (cfg.world.width // 2)

    def set_mask(idx: Any) -> None:
        mask = oracle_mask(
            data.phase_ids[idx],
            [windows[int(i)] for i in idx],
            cfg.world.num_latent_frames,
            tpf,
            pad,
        )
        for proc in procs:
            proc.mask = mask

    return set_mask


class _TrainerRuns:
    """Trainer backend: caches written once, one `generator.train.Trainer` run per stage."""

    def __init__(self, cfg: BenchConfig, data: _Data, work: Path) -> None:
        from generator.eval.trainer_backend import write_bench_caches

        self.cfg, self.data, self.work = cfg, data, work
        self.stage1: dict[int, tuple[Path, list[float]]] = {}
        # block ids and windows are stored; rows without PACA train with use_phase_ids=False
        self.cache = write_bench_caches(data, work, cfg.model.get("max_phases", 4) + 1)
        self.backbones: dict[int, Path] = {}

    def _run(
        self, stage: str, base: Path, cache: str, name: str, steps: int, seed: int, **kw: Any
    ) -> dict[str, Any]:
        from generator.eval.trainer_backend import run_trainer

        return run_trainer(
            stage,
            base,
            self.cache[cache],
            self.work / name,
            steps,
            seed=seed,
            lr=self.cfg.lr,
            batch_size=self.cfg.batch_size,
            text_len=self.cfg.world.text_len,
            **kw,
        )

    def pretrain(self, seed: int) -> tuple[Path, list[float]]:
        """Stage-2 run on brief captions with every audio gate closed -> the backbone folder."""
        from generator.eval.trainer_backend import load_trained, write_base

        init = write_base(self.work / f"init-{seed}", _new_model(self.cfg, seed))
        adapter0 = init / "audio_adapter.safetensors"
        _new_model(self.cfg, seed).save_audio_adapter(adapter0)
        res = self._run(
            "stage2",
            init,
            "brief",
            f"pretrain-{seed}",
            self.cfg.pretrain_steps,
            seed,
            adapter=adapter0,
            audio_dropout=1.0,
            use_phase_ids=False,
        )
        model = load_trained(res["transformer"])
        backbone = write_base(self.work / f"backbone-{seed}", model)
        model.save_audio_adapter(backbone / "audio_adapter.safetensors")
        self.backbones[seed] = backbone
        return backbone, res["losses"]

    def _stage1(self, seed: int, backbone: Path) -> tuple[Path, list[float]]:
        if seed not in self.stage1:
            res1 = self._run(
                "stage1",
                backbone,
                "talking",
                f"stage1-{seed}",
                _stage1_steps(self.cfg),
                seed,
                audio_progressive=True,
            )
            self.stage1[seed] = (Path(res1["adapter"]), res1["losses"])
        return self.stage1[seed]

    def variant(
        self, variant: Variant, seed: int, backbone: Path, oracle: bool = False
    ) -> tuple[Any, dict]:
        """One row: a stage-2 `Trainer` run from the seed's backbone, its switches set through
        the trainer config (`model.time_aware_phases`, `model.frame_time_embedding`,
        `model.phase_anchor_embedding`; new modules start as identity) and the text cache."""
        import re

        from generator.eval.trainer_backend import OracleRoutingTrainer, load_trained

        tag = re.sub(r"[^A-Za-z0-9]+", "-", variant.name).strip("-")
        curves: dict[str, list[float]] = {}
        adapter = backbone / "audio_adapter.safetensors"
        if variant.two_stage:
            adapter, curves["stage1"] = self._stage1(seed, backbone)
        res = self._run(
            "stage2",
            backbone,
            "prompt-tokens" if variant.anchor_tokens else "prompt",
            f"{tag}-{seed}",
            self.cfg.steps * variant.steps_mult,
            seed,
            adapter=adapter,
            audio_progressive=variant.progressive,
            use_phase_ids=variant.paca,
            time_aware_phases=variant.time_aware or None,
            frame_time_embedding=variant.frame_time or None,
            phase_anchor_embedding=variant.anchor_embedding or None,
            trainer_cls=OracleRoutingTrainer if oracle else None,
        )
        curves["stage2" if variant.two_stage else "train"] = res["losses"]
        return load_trained(res["transformer"]), curves


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def _inputs(data: _Data, variant: Variant, change: str | None) -> dict[str, Any]:
    """Test inputs of a row, or of a negative control applied to it."""
    import torch

    from generator.eval.controls import shuffled_phase_ids
    from generator.prompting import unconditional_phase_ids

    src = data.test_set(variant.anchor_tokens, change)
    text, ids, windows = src.text, src.phase_ids, src.windows
    if change == "text_blind":
        text = torch.zeros_like(text)
        ids = unconditional_phase_ids(*ids.shape)
        windows = windows.clone()
        windows[:, 1:] = 0
    elif change == "shuffled_ids":
        ids = shuffled_phase_ids(ids, [len(c.windows) for c in data.test_clips])
    return {
        "latents": data.test.latents,
        "audio": data.test.audio,
        "text": text,
        "phase_ids": ids if variant.paca else None,
        "phase_windows": windows if variant.paca else None,
    }


def evaluate(
    cfg: BenchConfig,
    data: _Data,
    model: Any,
    variant: Variant,
    seed: int,
    change: str | None = None,
    oracle: bool = False,
    metrics_only: bool = False,
) -> dict[str, Any]:
    """Sample the held-out prompts, score every clip, phase focus/contrast per layer, probes
    (`metrics_only`: sample and score only, with the model's own processors)."""
    import torch

    from generator.eval.controls import oracle_mask
    from generator.eval.metrics import aggregate, score_clip
    from generator.eval.phase_focus import capture_text_attention, phase_contrast, phase_focus
    from generator.eval.probes import frame_time_r2, key_phase_accuracy
    from generator.eval.sampling import SamplerOptions, sample_clips

    inputs = _inputs(data, variant, change)
    # the true blocks of every token (for the focus measures)
    test_ids = data.test_set(variant.anchor_tokens).phase_ids
    windows = [c.windows for c in data.test_clips]
    tpf = (cfg.world.height // 2) * (cfg.world.width // 2)
    pad = cfg.model.get("max_phases", 4) + 1
    n = len(data.test)
    scores, probs, frame_inputs = [], [], []
    for start in range(0, n, cfg.eval_batch):
        sl = slice(start, start + cfg.eval_batch)
        batch = {k: (v[sl] if v is not None else None) for k, v in inputs.items()}
        mask = (
            oracle_mask(test_ids[sl], windows[sl], cfg.world.num_latent_frames, tpf, pad)
            if oracle
            else None
        )
        opts = SamplerOptions(steps=cfg.sample_steps, seed=seed * 7919 + 400 + start)
        if metrics_only:  # the production attention processors, nothing recorded
            out = sample_clips(model, batch, opts)
        else:
            with capture_text_attention(model, tpf, mask=mask) as rec:
                out = sample_clips(model, batch, opts)
            probs.append(rec.mean())  # (L, b, F, S)
        for i, x in enumerate(out.numpy()):
            scores.append(score_clip(data.world, x, data.test_clips[start + i]))
        if change is None:  # probe: cross-attention inputs at sigma 0.5 on the true latents
            g = torch.Generator().manual_seed(seed + 900 + start)
            lat = batch["latents"]
            xt = 0.5 * lat + 0.5 * torch.randn(lat.shape, generator=g)
            xt[:, :, :1] = lat[:, :, :1]
            from generator.conditioning import clean_frame_mask, token_timesteps

            ts = token_timesteps(
                torch.full((lat.shape[0],), 500.0),
                clean_frame_mask(lat.shape[2], 1, lat.shape[0]),
                tpf,
            )
            with (
                torch.no_grad(),
                capture_text_attention(model, tpf, keep_inputs=True, mask=mask) as r2,
            ):
                model(
                    xt,
                    ts,
                    batch["text"],
                    audio_embeds=batch["audio"],
                    phase_ids=batch["phase_ids"],
                    phase_windows=batch["phase_windows"],
                )
            frame_inputs.append([torch.cat(layer).numpy() for layer in r2.inputs])
    if metrics_only:
        return {"metrics": aggregate(scores)}
    all_probs = np.concatenate(probs, axis=1)  # (L, N, F, S)
    focus = phase_focus(all_probs, test_ids.numpy(), windows)
    contrast = phase_contrast(all_probs, test_ids.numpy(), windows)
    result = aggregate(scores)
    result["focus_rel_last"] = float(focus["focus_rel"][-1])
    result["contrast_last"] = float(contrast[-1])
    out: dict[str, Any] = {
        "metrics": result,
        "focus": {k: v.tolist() for k, v in focus.items()},
        "contrast": contrast.tolist(),
    }
    if change is None:
        layers = len(model.blocks)
        r2 = [
            frame_time_r2(np.concatenate([fi[layer] for fi in frame_inputs]))
            for layer in range(layers)
        ]
        out["frame_time_r2"] = r2
        result["frame_time_r2_max"] = float(max(r2))
        ref = data.test_set(variant.anchor_tokens)
        result["key_probe_acc"] = key_phase_accuracy(
            model, ref.text, ref.phase_ids, use_paca=variant.paca
        )
        out["example_probs"] = all_probs[:, 0].tolist()  # (L, F, S) of test clip 0
        out["example_labels"] = scores[0]["labels"]
    return out


# ----------------------------------------------------------------------------------------------
# The whole bench
# ----------------------------------------------------------------------------------------------
def run_bench(
    cfg: BenchConfig,
    out_dir: str | Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train and evaluate every row and control for every seed; write results.json + report."""
    import torch

    from generator.eval.report import write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, cfg.threads))
    t0, c0 = time.time(), time.process_time()
    data = build_data(cfg)
    data.train_windows_gen = [c.windows for c in _train_clips(cfg, data)]  # type: ignore[attr-defined]
    log(
        f"data: {len(data.train)} train, {len(data.talking_head)} talking-head, "
        f"{len(data.test)} held-out test clips, {len(data.world.layouts)} layouts "
        f"({time.time() - t0:.1f}s)"
    )
    work_ctx = tempfile.TemporaryDirectory(prefix="eval-work-")
    work = Path(work_ctx.name)
    try:
        if cfg.suite == "attribution":
            if cfg.backend != "trainer":
                raise ValueError("the attribution suite runs on the trainer backend only")
            variants, runs, control_runs, pretrain_curves = _run_attribution(cfg, data, work, log)
        else:
            variants, runs, control_runs, pretrain_curves = _run_ablation(cfg, data, work, log)
    finally:
        work_ctx.cleanup()
    results = {
        "config": _config_dict(cfg),
        "variants": [asdict(v) for v in variants],
        "runs": runs,
        "controls": control_runs,
        "references": data.references,
        "pretrain_curves": pretrain_curves,
        "seconds": time.time() - t0,
        "cpu_seconds": time.process_time() - c0,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "num_layouts": {str(k): len(v) for k, v in data.world.layouts_by_count.items()},
        "test_phases": int(sum(len(c.windows) for c in data.test_clips)),
        "jitter_reference": _jitter_reference(cfg) if cfg.suite == "attribution" else None,
        "trainer": (
            "the real two-stage trainer (`generator.train.Trainer`)"
            if cfg.backend == "trainer"
            else "the in-memory loop through the trainer's loss (`generator.eval.train_loop`)"
        ),
        "example": {
            "phase_ids": data.test.phase_ids[0].tolist(),
            "windows": [list(w) for w in data.test_clips[0].windows],
        },
    }
    # the numbers first: a report that fails to render must not lose the runs
    (out / "results.json").write_text(json.dumps(_rounded(compact_results(results))))
    write_report(results, out)
    log(f"report: {out / 'README.md'} ({time.time() - t0:.0f}s total)")
    return results


def _run_ablation(cfg: BenchConfig, data: _Data, work: Path, log: Callable[[str], None]):
    """The paper's ablation rows, the negative controls and the oracle (issue 10 protocol)."""
    variants = [v for v in VARIANTS if cfg.rows is None or v.name in cfg.rows]
    wanted = {v.name for v in variants}
    controls = [c for c in NEGATIVE_CONTROLS if c[1] in wanted and cfg.rows is None]
    with_oracle = cfg.rows is None or ORACLE.name in cfg.rows
    runs: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    control_runs: dict[str, list[dict[str, Any]]] = {c[0]: [] for c in controls}
    if with_oracle:
        control_runs[ORACLE.name] = []
    pretrain_curves: list[list[float]] = []
    loop = _LoopRuns(cfg, data)
    trainer = _TrainerRuns(cfg, data, work) if cfg.backend == "trainer" else None
    for seed in cfg.seeds:
        ts = time.time()
        if trainer is not None:
            backbone_dir, pre_losses = trainer.pretrain(seed)
            from generator.eval.trainer_backend import load_trained

            backbone = load_trained(backbone_dir / "transformer").state_dict()
        else:
            backbone, pre_losses = loop.pretrain(seed)
        pretrain_curves.append(pre_losses)
        log(f"seed {seed}: backbone pre-trained in {time.time() - ts:.1f}s")
        models: dict[str, Any] = {}
        for variant in variants:
            ts = time.time()
            if trainer is not None:
                model, curves = trainer.variant(variant, seed, backbone_dir)
            else:
                model, curves = loop.variant(variant, seed, backbone)
            t_train = time.time() - ts
            ev = evaluate(cfg, data, model, variant, seed)
            ev.update(seed=seed, curves=curves, train_seconds=t_train)
            ev["eval_seconds"] = time.time() - ts - t_train
            runs[variant.name].append(ev)
            models[variant.name] = model
            _log_row(log, seed, variant.name, ev, t_train)
        for name, row, change in controls:
            ts = time.time()
            v = next(x for x in variants if x.name == row)
            ev = evaluate(cfg, data, models[row], v, seed, change=change)
            ev.update(seed=seed, eval_seconds=time.time() - ts)
            control_runs[name].append(ev)
            _log_row(log, seed, name, ev, 0.0)
        if with_oracle:
            ts = time.time()
            if trainer is not None:  # the oracle trains with the product Trainer too
                model, curves = trainer.variant(ORACLE, seed, backbone_dir, oracle=True)
            else:
                model, curves = loop.variant(ORACLE, seed, backbone, oracle=True)
            t_train = time.time() - ts
            ev = evaluate(cfg, data, model, ORACLE, seed, oracle=True)
            ev.update(seed=seed, curves=curves, train_seconds=t_train)
            ev["eval_seconds"] = time.time() - ts - t_train
            control_runs[ORACLE.name].append(ev)
            _log_row(log, seed, ORACLE.name, ev, t_train)
    return variants, runs, control_runs, pretrain_curves


def _train_eval(
    cfg: BenchConfig,
    data: _Data,
    trainer: _TrainerRuns,
    variant: Variant,
    seed: int,
    log: Callable[[str], None],
    oracle: bool = False,
) -> tuple[Any, dict[str, Any]]:
    ts = time.time()
    model, curves = trainer.variant(variant, seed, trainer.backbones[seed], oracle=oracle)
    t_train = time.time() - ts
    ev = evaluate(cfg, data, model, variant, seed, oracle=oracle)
    ev.update(seed=seed, curves=curves, train_seconds=t_train)
    ev["eval_seconds"] = time.time() - ts - t_train
    _log_row(log, seed, variant.name, ev, t_train)
    return model, ev


def _jitter_curve(
    cfg: BenchConfig, data: _Data, model: Any, variant: Variant, seed: int, ev: dict[str, Any]
) -> None:
    """IoU against the true timing with every anchor edge jittered (`generator.eval.anchors`)."""
    ev["jitter"] = {"0.0": ev["metrics"]}
    for level in cfg.jitter_seconds:
        res = evaluate(cfg, data, model, variant, seed, change=f"jitter:{level}", metrics_only=True)
        ev["jitter"][str(level)] = res["metrics"]


def _by_name(name: str) -> Variant:
    return next(v for v in ATTRIBUTION if v.name == name)


def _scaled_from_name(name: str) -> Variant | None:
    """`"+PACA (3x)"` -> +PACA at 3x the steps; None for a plain row name."""
    import re

    m = re.fullmatch(r"(.+) \((\d+)x\)", name)
    if m is None or m.group(1) not in {v.name for v in ATTRIBUTION}:
        return None
    return _by_name(m.group(1)).scaled(int(m.group(2)))


def best_numeric_anchor_row(runs: dict[str, list[dict[str, Any]]]) -> str | None:
    """The numeric-anchor row with the highest mean 1x temporal IoU (the budget curve's third
    row; the rule is fixed before the run)."""
    scored = [
        (float(np.mean([r["metrics"]["temporal_iou"] for r in runs[n]])), n)
        for n in NUMERIC_ANCHOR_ROWS
        if runs.get(n)
    ]
    return max(scored)[1] if scored else None


def _run_attribution(cfg: BenchConfig, data: _Data, work: Path, log: Callable[[str], None]):
    """Issue 19: the ATTRIBUTION rows on the same seeds and backbones, each with its jitter
    curve; the oracle (trained with the Trainer); then the budget curve (BUDGET_ROWS and the
    best numeric-anchor row at `budget_mults` x the steps)."""
    variants = [v for v in ATTRIBUTION if cfg.rows is None or v.name in cfg.rows]
    runs: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    with_oracle = cfg.rows is None or ORACLE.name in cfg.rows
    control_runs: dict[str, list[dict[str, Any]]] = {ORACLE.name: []} if with_oracle else {}
    pretrain_curves: list[list[float]] = []
    trainer = _TrainerRuns(cfg, data, work)
    for seed in cfg.seeds if variants or with_oracle else ():
        ts = time.time()
        _, pre_losses = trainer.pretrain(seed)
        pretrain_curves.append(pre_losses)
        log(f"seed {seed}: backbone pre-trained in {time.time() - ts:.1f}s")
        for variant in variants:
            model, ev = _train_eval(cfg, data, trainer, variant, seed, log)
            ts = time.time()
            _jitter_curve(cfg, data, model, variant, seed, ev)
            ev["jitter_seconds"] = time.time() - ts
            log(
                f"seed {seed} {variant.name:<28} IoU under jitter "
                + ", ".join(f"{k}s {m['temporal_iou']:.3f}" for k, m in ev["jitter"].items())
            )
            runs[variant.name].append(ev)
        if with_oracle:
            _, ev = _train_eval(cfg, data, trainer, ORACLE, seed, log, oracle=True)
            control_runs[ORACLE.name].append(ev)
    if cfg.rows is None:  # the committed rule: BUDGET_ROWS and the best numeric-anchor row
        names = [n for n in BUDGET_ROWS if n in runs]
        best = best_numeric_anchor_row(runs)
        names += [best] if best is not None else []
        scaled = [_by_name(n).scaled(m) for m in cfg.budget_mults for n in names]
    else:  # rows named "<row> (kx)" (a budget run split off, e.g. one process per seed)
        scaled = [v for v in map(_scaled_from_name, cfg.rows) if v is not None]
    for variant in scaled:
        runs[variant.name] = []
        variants.append(variant)
    for seed in cfg.seeds if scaled else ():
        if seed not in trainer.backbones:
            ts = time.time()
            _, pre_losses = trainer.pretrain(seed)
            pretrain_curves.append(pre_losses)
            log(f"seed {seed}: backbone pre-trained in {time.time() - ts:.1f}s")
        for variant in scaled:
            _, ev = _train_eval(cfg, data, trainer, variant, seed, log)
            runs[variant.name].append(ev)
    return variants, runs, control_runs, pretrain_curves


def _jitter_reference(cfg: BenchConfig) -> dict[str, dict[str, float]]:
    """The exact-anchor-follower ceiling per jitter level (`anchors.anchor_follower_reference`)."""
    from generator.eval.anchors import anchor_follower_reference

    world = SyntheticWorld(cfg.world)
    test = world.dataset(cfg.n_test, cfg.data_seed + 2, "test")
    return anchor_follower_reference(world, test, tuple(cfg.jitter_seconds), cfg.data_seed)


def merge_runs(parts: list[str | Path], out_dir: str | Path) -> dict[str, Any]:
    """Merge the results.json of runs of the same suite and config that differ only in their
    seeds or rows (e.g. one process per seed on a shared machine) into one report: runs are
    joined per row in seed order, `seconds`/`cpu_seconds` are summed (one-thread time) and
    each part's time is kept in `parts` (a part that is itself a merge brings its own parts, so
    a report can be extended by merging it with new runs)."""
    from generator.eval.report import write_report

    loaded = [json.loads((Path(p) / "results.json").read_text()) for p in parts]
    first = loaded[0]
    keep = ("seeds", "rows", "budget_mults")
    base_cfg = {k: v for k, v in first["config"].items() if k not in keep}
    for res, path in zip(loaded[1:], parts[1:]):
        cfg = {k: v for k, v in res["config"].items() if k not in keep}
        if cfg != base_cfg:
            diff = sorted(k for k in cfg if cfg.get(k) != base_cfg.get(k))
            raise ValueError(f"{path}: a different bench config ({', '.join(diff)})")
    merged = copy.deepcopy(first)
    for group in ("runs", "controls"):
        names: list[str] = []
        for res in loaded:
            names += [n for n in res.get(group, {}) if n not in names]
        order = [v.name for v in (*VARIANTS, *ATTRIBUTION)]
        names.sort(key=lambda n: (n.endswith("x)"), order.index(n) if n in order else len(order)))
        merged[group] = {
            n: sorted(
                [r for res in loaded for r in res.get(group, {}).get(n, [])],
                key=lambda r: r["seed"],
            )
            for n in names
        }
    merged["config"]["seeds"] = sorted({s for res in loaded for s in res["config"]["seeds"]})
    merged["pretrain_curves"] = [c for res in loaded for c in res.get("pretrain_curves", [])]
    if merged.get("jitter_reference") is None and merged["config"].get("suite") == "attribution":
        cfg = BenchConfig(
            world=WorldConfig(**_tuples(merged["config"]["world"])),
            n_test=merged["config"]["n_test"],
            data_seed=merged["config"]["data_seed"],
            jitter_seconds=tuple(merged["config"]["jitter_seconds"]),
        )
        merged["jitter_reference"] = _jitter_reference(cfg)
    merged["seconds"] = sum(r["seconds"] for r in loaded)
    merged["cpu_seconds"] = sum(r.get("cpu_seconds", 0.0) for r in loaded)
    merged["parts"] = [
        part
        for p, r in zip(parts, loaded)
        for part in r.get("parts")
        or [
            {
                "dir": str(p),
                "seeds": r["config"]["seeds"],
                "rows": r["config"].get("rows"),
                "seconds": r["seconds"],
                "cpu_seconds": r.get("cpu_seconds"),
            }
        ]
    ]
    out = Path(out_dir)
    write_report(merged, out)
    (out / "results.json").write_text(json.dumps(_rounded(compact_results(merged))))
    return merged


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples of a frozen config."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def compact_results(results: dict[str, Any]) -> dict[str, Any]:
    """results.json without the per-run attention maps, except the one the report plots
    (seed 0 of the last row): a small committed file with every number of the table."""
    out = copy.deepcopy(results)
    names = list(out["runs"])
    for group in ("runs", "controls"):
        for name, runs in out.get(group, {}).items():
            for i, run in enumerate(runs):
                if not (group == "runs" and name == names[-1] and i == 0):
                    run.pop("example_probs", None)
    return out


def _train_clips(cfg: BenchConfig, data: _Data) -> list[Clip]:
    """The training clips again (same seed): their windows for the oracle masks."""
    return data.world.dataset(cfg.n_train, cfg.data_seed, "train")


def _log_row(log: Callable[[str], None], seed: int, name: str, ev: dict, t_train: float) -> None:
    m = ev["metrics"]
    extra = (
        f" R2 {m['frame_time_r2_max']:.2f} key {m['key_probe_acc']:.2f}"
        if "frame_time_r2_max" in m
        else ""
    )
    log(
        f"seed {seed} {name:<28} H@S {m['hit_rate']:.3f} IoU {m['temporal_iou']:.3f} "
        f"contrast {m['contrast_last']:+.3f} lip {m['lip_corr']:.3f}{extra} "
        f"({t_train:.0f}s train, {ev['eval_seconds']:.0f}s eval)"
    )


def _rounded(obj: Any, digits: int = 4) -> Any:
    """Floats rounded for a small results.json (curves and attention maps are long)."""
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v, digits) for v in obj]
    return obj


def _config_dict(cfg: BenchConfig) -> dict[str, Any]:
    d = asdict(replace(cfg))
    d["world"] = asdict(cfg.world)
    return d
