"""The synthetic ablation: base -> +PACA -> +progressive audio -> +two-stage, on CPU.

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
2. Held-out test prompts (action pair x window layout combinations never seen in
   training), sampled with the Euler flow-matching sampler, text cross-attention recorded.
"""

from __future__ import annotations

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

__all__ = ["VARIANTS", "BenchConfig", "Variant", "run_bench"]


@dataclass(frozen=True)
class Variant:
    """One ablation row."""

    name: str
    paca: bool
    progressive: bool
    two_stage: bool


VARIANTS: tuple[Variant, ...] = (
    Variant("base", paca=False, progressive=False, two_stage=False),
    Variant("+PACA", paca=True, progressive=False, two_stage=False),
    Variant("+progressive", paca=True, progressive=True, two_stage=False),
    Variant("+two-stage", paca=True, progressive=True, two_stage=True),
)

# The tiny preset, resized to the world (16 latent channels, 32-d text, 2x16-d audio).
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
    """Sizes and budgets of a bench run (`full()` / `quick()` give the two presets)."""

    world: WorldConfig = field(default_factory=WorldConfig)
    seeds: tuple[int, ...] = (0, 1, 2)
    pretrain_steps: int = 500
    steps: int = 1000
    stage1_steps: int = 300  # +two-stage: extra adapter-only steps before its stage 2
    batch_size: int = 16
    lr: float = 2e-3
    n_train: int = 1024
    n_talking_head: int = 512
    n_test: int = 64
    sample_steps: int = 16
    eval_batch: int = 32
    data_seed: int = 1234
    threads: int = 1
    model: dict[str, Any] = field(default_factory=lambda: dict(MODEL_OVERRIDES))
    backend: str = "trainer"  # "trainer" (generator.train.Trainer) or "loop" (train_loop.py)
    quick: bool = False

    @classmethod
    def full(cls) -> BenchConfig:
        return cls()

    @classmethod
    def quick_config(cls) -> BenchConfig:
        """Plumbing only (CI): tiny budgets, numbers mean nothing."""
        return cls(
            seeds=(0,),
            pretrain_steps=10,
            steps=12,
            stage1_steps=4,
            n_train=64,
            n_talking_head=32,
            n_test=8,
            sample_steps=3,
            eval_batch=8,
            quick=True,
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


def _encode(clips: list[Clip], tokenizer: Any, encoder: Any, cfg: WorldConfig, brief: bool):
    import torch

    from generator.eval.train_loop import TensorSet
    from generator.prompting import encode_structured_prompt

    prompts = [BRIEF_PROMPT if brief else c.prompt for c in clips]
    cache: dict[Any, tuple[torch.Tensor, torch.Tensor]] = {}
    texts, ids = [], []
    with torch.no_grad():
        for p in prompts:
            if p not in cache:
                cache[p] = encode_structured_prompt(
                    p, tokenizer, encoder, max_sequence_length=cfg.text_len, max_phases=4
                )
            e, i = cache[p]
            texts.append(e[0])
            ids.append(i[0])
    return TensorSet(
        latents=torch.from_numpy(np.stack([c.latents for c in clips])),
        audio=torch.from_numpy(np.stack([c.audio for c in clips])),
        text=torch.stack(texts).float(),
        phase_ids=torch.stack(ids).long(),
    )


def build_data(cfg: BenchConfig) -> _Data:
    """Generate and encode the bench data once (shared by every row and seed)."""
    from generator.eval.world import build_world_text_encoder, build_world_tokenizer

    world = SyntheticWorld(cfg.world)
    tokenizer = build_world_tokenizer(world)
    encoder = build_world_text_encoder(len(tokenizer), cfg.world.text_dim, cfg.world.world_seed)
    train = world.dataset(cfg.n_train, cfg.data_seed, "train")
    th = world.dataset(cfg.n_talking_head, cfg.data_seed + 1, "talking_head")
    test = world.dataset(cfg.n_test, cfg.data_seed + 2, "test")
    return _Data(
        world=world,
        train=_encode(train, tokenizer, encoder, cfg.world, brief=False),
        train_brief=_encode(train, tokenizer, encoder, cfg.world, brief=True),
        talking_head=_encode(th, tokenizer, encoder, cfg.world, brief=True),
        test=_encode(test, tokenizer, encoder, cfg.world, brief=False),
        test_clips=test,
    )


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def _new_model(cfg: BenchConfig, seed: int):
    import torch

    from generator.presets import get_transformer_config
    from generator.transformer_actavatar import ActAvatarTransformer3DModel

    torch.manual_seed(seed)
    return ActAvatarTransformer3DModel(**get_transformer_config("tiny", **cfg.model))


def _pretrain(cfg: BenchConfig, data: _Data, seed: int) -> tuple[dict[str, Any], list[float]]:
    """The shared 'public checkpoint': backbone trained with brief prompts and no audio."""
    from generator.eval.train_loop import train

    model = _new_model(cfg, seed)
    losses = train(
        model,
        data.train_brief,
        cfg.pretrain_steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=seed + 100,
        use_audio=False,
        use_phase_ids=False,
    )
    return copy.deepcopy(model.state_dict()), losses


def _train_variant(
    cfg: BenchConfig, data: _Data, variant: Variant, seed: int, backbone: dict[str, Any]
) -> tuple[Any, dict[str, list[float]]]:
    """In-memory loop backend: fine-tune one row from the shared backbone."""
    from generator.eval.train_loop import train

    model = _new_model(cfg, seed)
    model.load_state_dict(backbone)
    model.set_audio_scales(progressive=variant.progressive, scale=1.0)
    curves: dict[str, list[float]] = {}
    if variant.two_stage:
        steps1 = _stage1_steps(cfg)
        model.freeze_backbone()
        curves["stage1"] = train(
            model,
            data.talking_head,
            steps1,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            seed=seed + 200,
            use_audio=True,
            use_phase_ids=False,
        )
        # Extract the adapter and inject it into a fresh copy of the backbone (paper 3.4.2).
        with tempfile.TemporaryDirectory(prefix="adapter-") as tmp:
            path = Path(tmp) / "audio_adapter.safetensors"
            model.save_audio_adapter(path)
            model = _new_model(cfg, seed)
            model.load_state_dict(backbone)
            model.set_audio_scales(progressive=variant.progressive, scale=1.0)
            model.load_audio_adapter(path)
    for p in model.parameters():
        p.requires_grad_(True)
    curves["stage2" if variant.two_stage else "train"] = train(
        model,
        data.train,
        cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=seed + 300,
        use_audio=True,
        use_phase_ids=variant.paca,
    )
    return model, curves


def _stage1_steps(cfg: BenchConfig) -> int:
    """Stage-1 steps of +two-stage: extra, on top of the `steps` of its stage 2."""
    return max(1, cfg.stage1_steps)


class _TrainerRuns:
    """Trainer backend: caches written once, one `generator.train.Trainer` run per stage."""

    def __init__(self, cfg: BenchConfig, data: _Data, work: Path) -> None:
        from generator.eval.trainer_backend import write_cache

        self.cfg, self.data, self.work = cfg, data, work
        pad = cfg.model.get("max_phases", 4) + 1
        tr, th, br = data.train, data.talking_head, data.train_brief
        self.cache = {
            # block ids are stored; rows without PACA train with `use_phase_ids=False`
            "prompt": write_cache(
                work / "cache-prompt", tr.latents, tr.audio, (tr.text, tr.phase_ids), None, pad
            ),
            "brief": write_cache(
                work / "cache-brief", tr.latents, tr.audio, (br.text, br.phase_ids), None, pad
            ),
            "talking": write_cache(
                work / "cache-talking", th.latents, th.audio, None, th.text, pad
            ),
        }

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
        return backbone, res["losses"]

    def variant(self, variant: Variant, seed: int, backbone: Path) -> tuple[Any, dict]:
        from generator.eval.trainer_backend import load_trained

        tag = variant.name.strip("+")
        curves: dict[str, list[float]] = {}
        adapter = backbone / "audio_adapter.safetensors"
        steps = self.cfg.steps
        if variant.two_stage:
            s1 = _stage1_steps(self.cfg)
            res1 = self._run(
                "stage1",
                backbone,
                "talking",
                f"{tag}-s1-{seed}",
                s1,
                seed,
                audio_progressive=variant.progressive,
            )
            curves["stage1"] = res1["losses"]
            adapter = Path(res1["adapter"])  # stage 2 below = the +progressive run otherwise
        res = self._run(
            "stage2",
            backbone,
            "prompt",
            f"{tag}-{seed}",
            steps,
            seed,
            adapter=adapter,
            audio_progressive=variant.progressive,
            use_phase_ids=variant.paca,
        )
        curves["stage2" if variant.two_stage else "train"] = res["losses"]
        return load_trained(res["transformer"]), curves


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def evaluate(
    cfg: BenchConfig, data: _Data, model: Any, variant: Variant, seed: int
) -> dict[str, Any]:
    """Sample the held-out prompts, score every clip, measure phase focus per layer."""

    from generator.eval.metrics import aggregate, score_clip
    from generator.eval.phase_focus import capture_text_attention, phase_focus
    from generator.eval.train_loop import sample

    test = data.test
    tpf = (cfg.world.height // 2) * (cfg.world.width // 2)
    scores, probs = [], []
    for start in range(0, len(test), cfg.eval_batch):
        sl = slice(start, start + cfg.eval_batch)
        with capture_text_attention(model, tpf) as rec:
            out = sample(
                model,
                test.latents[sl],
                test.text[sl],
                test.audio[sl],
                test.phase_ids[sl] if variant.paca else None,
                cfg.sample_steps,
                seed=seed + 400 + start,
            )
        probs.append(rec.mean())  # (L, b, F, S)
        for i, x in enumerate(out.numpy()):
            scores.append(score_clip(data.world, x, data.test_clips[start + i]))
    all_probs = np.concatenate(probs, axis=1)  # (L, N, F, S)
    focus = phase_focus(all_probs, test.phase_ids.numpy(), [c.windows for c in data.test_clips])
    result = aggregate(scores)
    result["focus_last"] = float(focus["focus"][-1])
    result["focus_rel_last"] = float(focus["focus_rel"][-1])
    return {
        "metrics": result,
        "focus": {k: v.tolist() for k, v in focus.items()},
        "example_probs": all_probs[:, 0].tolist(),  # (L, F, S) of test clip 0
        "example_labels": scores[0]["labels"],
    }


# ----------------------------------------------------------------------------------------------
# The whole bench
# ----------------------------------------------------------------------------------------------
def run_bench(
    cfg: BenchConfig,
    out_dir: str | Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train and evaluate every row for every seed; write results.json and the report."""
    import torch

    from generator.eval.report import write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, cfg.threads))
    t0 = time.time()
    data = build_data(cfg)
    log(
        f"data: {len(data.train)} train, {len(data.talking_head)} talking-head, "
        f"{len(data.test)} held-out test clips ({time.time() - t0:.1f}s)"
    )
    runs: dict[str, list[dict[str, Any]]] = {v.name: [] for v in VARIANTS}
    pretrain_curves: list[list[float]] = []
    work_ctx = tempfile.TemporaryDirectory(prefix="eval-work-")
    work = Path(work_ctx.name)
    trainer = _TrainerRuns(cfg, data, work) if cfg.backend == "trainer" else None
    try:
        for seed in cfg.seeds:
            ts = time.time()
            if trainer is not None:
                backbone, pre_losses = trainer.pretrain(seed)
            else:
                backbone, pre_losses = _pretrain(cfg, data, seed)
            pretrain_curves.append(pre_losses)
            log(f"seed {seed}: backbone pre-trained in {time.time() - ts:.1f}s")
            for variant in VARIANTS:
                ts = time.time()
                if trainer is not None:
                    model, curves = trainer.variant(variant, seed, backbone)
                else:
                    model, curves = _train_variant(cfg, data, variant, seed, backbone)
                t_train = time.time() - ts
                ev = evaluate(cfg, data, model, variant, seed)
                ev.update(
                    seed=seed,
                    curves=curves,
                    train_seconds=t_train,
                    eval_seconds=time.time() - ts - t_train,
                    audio_scales=list(model.audio_block_scales),
                )
                runs[variant.name].append(ev)
                m = ev["metrics"]
                log(
                    f"seed {seed} {variant.name:<13} H@S {m['hit_rate']:.3f} IoU "
                    f"{m['temporal_iou']:.3f} lip {m['lip_corr']:.3f} id "
                    f"{m['identity_err']:.3f} focus {m['focus_rel_last']:.3f} "
                    f"({t_train:.0f}s train, {ev['eval_seconds']:.0f}s eval)"
                )
    finally:
        work_ctx.cleanup()
    results = {
        "config": _config_dict(cfg),
        "variants": [asdict(v) for v in VARIANTS],
        "runs": runs,
        "pretrain_curves": pretrain_curves,
        "seconds": time.time() - t0,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "trainer": (
            "the real two-stage trainer (`generator.train.Trainer`)"
            if cfg.backend == "trainer"
            else "the minimal in-memory flow-matching loop (`generator.eval.train_loop`)"
        ),
        "example": {
            "phase_ids": data.test.phase_ids[0].tolist(),
            "windows": [list(w) for w in data.test_clips[0].windows],
        },
    }
    (out / "results.json").write_text(json.dumps(_rounded(results)))
    write_report(results, out)
    log(f"report: {out / 'README.md'} ({time.time() - t0:.0f}s total)")
    return results


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
