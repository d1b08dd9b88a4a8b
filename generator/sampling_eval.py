"""Issue 21 measurement: few evaluations per clip against the *best* teacher, with unconfounded
students and a training-seed noise band, on the synthetic Action Bench, sampled with the
pipeline's own code.

    .venv/bin/python -m generator.sampling_eval --out docs/eval/sampling --work DIR [--quick]
    .venv/bin/python -m generator.sampling_eval --out X --work DIR --worker   # a 2nd process
    .venv/bin/python -m generator.sampling_eval --out X --work DIR --best ROW  # sensitivity
    .venv/bin/python -m generator.sampling_eval --record STUDENT --row ROW    # for --fast

Protocol (fixed before the first full run; one run, one process, one torch thread; every
expensive step is cached in `--work`, so an interrupted run resumes where it stopped):
1. Data: the issue-10 bench world and splits (`generator.eval.bench.build_data`, `BenchConfig`);
   the first `test_clips` (128) held-out test clips are scored (scaled down from 256 to fit the
   90-minute budget with 5 teachers; stated in the report).
2. Teachers: `train_seeds` = 5 training seeds (0-4). One backbone pre-training (brief captions,
   no audio, seed 0) is shared: in the product the backbone is Wan2.2's fixed pre-trained
   weights, so a training seed is what *we* train: stage 1 (adapter on talking heads) and
   stage 2 (PACA, progressive audio, time-aware phases, 10 % text and 10 % audio dropout so the
   unconditional branches exist), each seeded with the training seed. The noise band is the
   spread of these 5 teachers (df 4), replacing the df-2 band of issue 12.
3. Negative prompt as the product uses it: `ActAvatarPipeline.encode_prompt` encodes Wan's
   negative prompt (`prompting.DEFAULT_NEGATIVE_PROMPT`) with the pipeline's text encoder
   through `encode_structured_prompt` and gives it all-base phase ids. The synthetic world's
   text encoder is its umT5 stand-in (`build_world_tokenizer` / `build_world_text_encoder`),
   so the negative here is that same string through that same function with the world's
   tokenizer and encoder (cut to the world's 64 text tokens; words outside the world's
   vocabulary are spelled out piece by piece, as umT5 does with rare words). The issue-12
   negative (zero text states, training's dropped text) stays as a control row.
4. Guidance sweep of every teacher (UniPC 40 steps, flow shift 5, product negative): text and
   audio scale s in {1 (unguided), 2, 3, 5} (the two scales equal) x interval in {full,
   [0, 0.9]} (s = 1 has no interval: 7 settings). The **best teacher** is chosen by a rule
   fixed here: among the settings whose mean over the training seeds is within the selection
   MDE of the best setting's mean on H@S, temporal IoU and lip correlation, the one with the
   lowest mean identity error (ties: fewer evaluations). The selection MDE is step 8's formula
   with the training-seed SD pooled over the 7 settings (the best is not known yet). Every other row is judged against
   it. The sweep and the verdicts use the same test clips (the winner's curse makes the
   reference slightly better than it is, i.e. the verdicts slightly harsher: stated).
5. Training-free rows, each teacher, at the best setting: UniPC 12 and 8 steps, and the best
   setting with the zero-text negative (control).
6. Unconfounded students, each teacher (`generator.train.distill.DistillTrainer`, the same
   trainer, `distill.pool`): a **trajectory pool** is the best teacher's exact sampler (UniPC
   40 steps, its guidance scales and interval, the product negative, `pipeline_actavatar.
   denoise`) run once on `pool_clips` (128) training clips with one fixed noise each, the
   latents recorded at the sigmas of the 8-step Euler grid (a subset of the 40-step grid: same
   flow shift, same linear time spacing; the 4-step grid is a subset of the 8-step one). Each
   student's segment k starts at the teacher's own latent at sigma_k and its target is the
   chord to the teacher's latent at sigma_{k+1}, so one Euler step of the student lands where
   the judged sampler lands. Students: trajectory 8 and 4 steps, and the same two with the
   identity term (`distill.identity_weight` 1.0 on the world's identity channels, the
   module docstring of `generator.train.distill` argues it), `distill_steps` steps each,
   sampled with Euler at their steps, one forward per step.
7. Sampling: every row runs `generator.pipeline_actavatar.denoise` with noise seed 0 on the
   test clips (the same noise for every row and teacher): the sampling-seed noise of issue 12
   was degenerate (SD <= 0.001), the training seeds carry the noise here.
8. Metrics (`generator.eval.metrics`): H@S, temporal IoU, lip correlation, |lip lag|, identity
   error, and the relative distance of the latents to the best teacher's (same teacher, same
   noise). Noise: band MDE = (t_0.975 + t_0.8, df n-1) x SD x sqrt(2/n) with SD the best
   teacher's training-seed SD (n = 5 teachers): the smallest difference between two groups of
   n teachers the design detects. Each row's difference to the best teacher is *paired* (same
   teacher, same noise), mean over teachers +- SE (df 4). A row is *within the best teacher's
   noise* when no metric's mean paired difference is worse than the band MDE; *worse* when
   one is, in the bad direction.
9. Time: CPU seconds per clip of each row measured in this run (one thread, shared machine),
   and evaluations x the 5B forward's FLOPs (`generator.sampling.forward_flops`, the count
   `benchmarks/sampling.py` uses) projected to a 5-s 704x1280 clip on one H100 / H200 at
   40-60 % of the dense BF16 peak.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["Row", "StudyConfig", "choose_best", "run_study", "summarise"]

METRICS = ("hit_rate", "temporal_iou", "lip_corr", "lip_abs_lag", "identity_err")
VERDICT_METRICS = ("hit_rate", "temporal_iou", "lip_corr", "identity_err")
HIGHER_IS_BETTER = {"hit_rate": True, "temporal_iou": True, "lip_corr": True}
SELECTION_METRICS = ("hit_rate", "temporal_iou", "lip_corr")
THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8)
INTERVAL = (0.0, 0.9)


@dataclass(frozen=True)
class Row:
    """One table row: which model (the teacher or a student) sampled with which options.
    `scale` None: the best teacher's guidance scale and interval (known after the sweep)."""

    name: str
    model: str  # teacher | student name
    steps: int
    solver: str = "unipc"
    scale: float | None = None  # text = audio guidance scale; 1 = one forward per step
    interval: tuple[float, float] | None = None
    negative: str = "product"  # product (Wan's negative, encoded) | zero (training's dropped)


@dataclass(frozen=True)
class Student:
    name: str
    steps: int
    identity_weight: float = 0.0


STUDENTS = (
    Student("traj-8", 8),
    Student("traj-8+id", 8, 1.0),
    Student("traj-4", 4),
    Student("traj-4+id", 4, 1.0),
)


def sweep_rows(scales: tuple[float, ...], steps: int = 40) -> tuple[Row, ...]:
    rows = []
    for s in scales:
        for interval in (None, INTERVAL):
            if s == 1.0 and interval is not None:
                continue  # no guidance: nothing to restrict
            where = "full" if interval is None else "[0, 0.9]"
            name = f"teacher unguided (unipc {steps})" if s == 1.0 else f"teacher s={s:g} {where}"
            rows.append(Row(name, "teacher", steps, scale=s, interval=interval))
    return tuple(rows)


def best_rows(students: tuple[Student, ...]) -> tuple[Row, ...]:
    """Rows at the best teacher's setting (scale None), and the students."""
    rows = [
        Row("best teacher, zero-text negative (control)", "teacher", 40, negative="zero"),
        Row("best guidance, unipc 12", "teacher", 12),
        Row("best guidance, unipc 8", "teacher", 8),
    ]
    for st in students:
        plus = " + identity" if st.identity_weight else ""
        rows.append(
            Row(f"trajectory student {st.steps}{plus}", st.name, st.steps, "euler", scale=1.0)
        )
    return tuple(rows)


@dataclass
class StudyConfig:
    train_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    sample_seed: int = 0
    text_dropout: float = 0.1
    audio_dropout: float = 0.1
    scales: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0)
    teacher_steps: int = 40
    test_clips: int = 128
    pool_clips: int = 128
    distill_steps: int = 200
    distill_lr: float = 1e-3
    identity_weight: float = 1.0
    eval_batch: int = 128
    quick: bool = False
    bench: Any = None  # generator.eval.bench.BenchConfig
    students: tuple[Student, ...] = STUDENTS
    # a sweep row to judge against instead of the rule's choice (a labelled sensitivity run)
    best_override: str | None = None

    @classmethod
    def make(cls, quick: bool) -> StudyConfig:
        from generator.eval.bench import BenchConfig

        if not quick:
            return cls(bench=BenchConfig.full())
        return cls(
            train_seeds=(0, 1),
            scales=(1.0, 5.0),
            test_clips=16,
            pool_clips=16,
            distill_steps=3,
            eval_batch=16,
            quick=True,
            bench=BenchConfig.quick_config(),
        )


# ------------------------------------------------------------------------------------ training
def _config(stage: str, out: Path, base: Path, cache: Path, steps: int, cfg: Any, seed: int, **kw):
    from generator.train import config_from_dict

    b = cfg.bench
    data = {
        "dataset": str(cache),
        "batch_size": b.batch_size,
        "text_len": b.world.text_len,
        **kw.pop("data", {}),
    }
    return config_from_dict(
        {
            "name": out.name,
            "stage": stage,
            "output_dir": str(out),
            "seed": seed,
            "model": {"base": str(base), "gradient_checkpointing": False, **kw.pop("model", {})},
            "data": data,
            "optim": {"lr": kw.pop("lr", b.lr), "warmup_steps": min(50, steps)},
            "train": {
                "max_steps": steps,
                "timestep_shift": 1.0,
                "checkpoint_every": steps,
                "keep_checkpoints": 1,
                "log_every": 1,
                "resume": "never",
            },
            **kw,
        }
    )


def _run(config: Any, what: str, log: Any) -> dict[str, Any]:
    from generator.train.stages import trainer_for

    t0 = time.perf_counter()
    summary = trainer_for(config, echo=False).train()
    log(
        f"  {what}: {summary['steps_run']} steps, loss {summary['loss']:.4f}, "
        f"{time.perf_counter() - t0:.0f} s"
    )
    return summary


def train_backbone(cfg: StudyConfig, data: Any, work: Path, log: Any) -> dict[str, Path]:
    """The shared backbone (pre-training on brief captions, seed 0) and the trainer caches."""
    from generator.eval.trainer_backend import load_trained, write_base, write_bench_caches
    from generator.presets import get_transformer_config
    from generator.transformer_actavatar import ActAvatarTransformer3DModel

    b = cfg.bench
    cache = {k: work / f"cache-{k}" for k in ("prompt", "brief", "talking")}
    done = work / "backbone" / "transformer" / "config.json"
    if not done.is_file():
        write_bench_caches(data, work, b.model.get("max_phases", 4) + 1)
        torch.manual_seed(0)
        model = ActAvatarTransformer3DModel(
            **get_transformer_config("tiny", **b.model, time_aware_phases=True)
        )
        init = write_base(work / "init", model)
        model.save_audio_adapter(init / "audio_adapter.safetensors")
        s = _run(
            _config(
                "stage2",
                work / "pretrain",
                init,
                cache["brief"],
                b.pretrain_steps,
                cfg,
                0,
                model={"adapter": str(init / "audio_adapter.safetensors")},
                data={"audio_dropout": 1.0, "use_phase_ids": False},
            ),
            "backbone pre-training (shared, seed 0)",
            log,
        )
        write_base(work / "backbone", load_trained(Path(s["checkpoint"]) / "transformer"))
    return {**cache, "backbone": work / "backbone"}


def train_teacher(cfg: StudyConfig, seed: int, base: dict[str, Path], work: Path, log: Any) -> Path:
    """Stage 1 + stage 2 with training seed `seed`; returns the teacher's pipeline-like folder."""
    from generator.eval.trainer_backend import load_trained, write_base

    b = cfg.bench
    folder = work / f"seed-{seed}" / "teacher"
    if (folder / "transformer" / "config.json").is_file():
        return folder
    s1 = _run(
        _config(
            "stage1",
            work / f"seed-{seed}" / "stage1",
            base["backbone"],
            base["talking"],
            b.stage1_steps,
            cfg,
            seed,
        ),
        f"seed {seed} stage 1 (adapter)",
        log,
    )
    s2 = _run(
        _config(
            "stage2",
            work / f"seed-{seed}" / "stage2",
            base["backbone"],
            base["prompt"],
            b.steps,
            cfg,
            seed,
            model={"adapter": s1["adapter"]},
            data={"text_dropout": cfg.text_dropout, "audio_dropout": cfg.audio_dropout},
        ),
        f"seed {seed} stage 2 (PACA + progressive + time-aware, text/audio dropout)",
        log,
    )
    return write_base(folder, load_trained(Path(s2["checkpoint"]) / "transformer"))


# ------------------------------------------------------------------------------------ sampling
def product_negative(data: Any, cfg: StudyConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Wan's negative prompt through the product's encoding (`encode_structured_prompt`, all-base
    ids) with the world's umT5 stand-in (the tokenizer and encoder the bench's prompts use)."""
    from generator.eval.world import build_world_text_encoder, build_world_tokenizer
    from generator.prompting import (
        DEFAULT_NEGATIVE_PROMPT,
        encode_structured_prompt,
        unconditional_phase_ids,
    )

    w = cfg.bench.world
    tok = build_world_tokenizer(data.world)
    enc = build_world_text_encoder(len(tok), w.text_dim, w.world_seed)
    with torch.no_grad():
        emb, _ = encode_structured_prompt(
            DEFAULT_NEGATIVE_PROMPT,
            tok,
            enc,
            max_sequence_length=w.text_len,
            max_phases=cfg.bench.model.get("max_phases", 4),
        )
    return emb.float(), unconditional_phase_ids(1, w.text_len)


def _inputs(ts: Any, n: int, negative: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
    from generator.prompting import unconditional_phase_ids

    return {
        "latents": ts.latents[:n].float(),
        "text": ts.text[:n].float(),
        "ids": ts.phase_ids[:n].long(),
        "windows": ts.windows[:n].float(),
        "audio": ts.audio[:n].float(),
        "neg": {
            "product": negative,
            "zero": (
                torch.zeros(1, *ts.text.shape[1:]),
                unconditional_phase_ids(1, ts.text.shape[1]),
            ),
        },
    }


def _cond(inp: dict[str, Any], sl: slice, negative: str) -> Any:
    from generator.pipeline_actavatar import Conditioning

    neg, neg_ids = inp["neg"][negative]
    return Conditioning(
        prompt_embeds=inp["text"][sl],
        phase_ids=inp["ids"][sl],
        negative_prompt_embeds=neg,
        negative_phase_ids=neg_ids,
        audio_embeds=inp["audio"][sl],
        phase_windows=inp["windows"][sl],
    )


def sample(
    model: Any, inp: dict[str, Any], row: Row, best: Row, seed: int, cfg: StudyConfig
) -> tuple[torch.Tensor, int, float]:
    """The pipeline's `denoise` over the clips of `inp`; returns latents, evaluations per clip
    and CPU seconds per clip."""
    from generator.pipeline_actavatar import Guidance, denoise
    from generator.sampling import make_scheduler

    scale, interval = (
        (row.scale, row.interval) if row.scale is not None else (best.scale, best.interval)
    )
    lat = inp["latents"]
    noise = torch.randn(lat.shape, generator=torch.Generator().manual_seed(1000 + seed))
    outs, evals = [], 0
    t0 = time.process_time()
    for i in range(0, lat.shape[0], cfg.eval_batch):
        sl = slice(i, min(i + cfg.eval_batch, lat.shape[0]))
        with torch.no_grad():
            out, stats = denoise(
                model,
                make_scheduler(row.solver, {"flow_shift": 5.0}),
                noise[sl].clone(),
                lat[sl, :, :1],
                _cond(inp, sl, row.negative),
                Guidance(scale, scale, interval=interval),
                row.steps,
            )
        outs.append(out)
        evals = stats["evaluations"]
    return torch.cat(outs), evals, (time.process_time() - t0) / lat.shape[0]


def _pool_cache(cfg: StudyConfig, data: Any, work: Path) -> Path:
    """The trainer cache of the pool's training clips (the students' `data.dataset`)."""
    from generator.eval.trainer_backend import write_cache

    n, tr = cfg.pool_clips, data.train
    cache_dir = work / f"cache-pool-n{n}"
    if not (cache_dir / "index.json").is_file():
        pad = cfg.bench.model.get("max_phases", 4) + 1
        write_cache(
            cache_dir,
            tr.latents[:n],
            tr.audio[:n],
            (tr.text[:n], tr.phase_ids[:n]),
            None,
            pad,
            windows=tr.windows[:n],
        )
    return cache_dir


def build_pool(
    cfg: StudyConfig, teacher_dir: Path, data: Any, negative: Any, best: Row, work: Path, seed: int
) -> tuple[Path, Path]:
    """The best teacher's exact sampler on `pool_clips` training clips (one fixed noise each),
    recorded on the 8-step Euler grid; returns (pool file, a trainer cache of those clips)."""
    from generator.eval.trainer_backend import load_trained
    from generator.pipeline_actavatar import Guidance
    from generator.sampling import make_scheduler
    from generator.train.distill import student_sigmas, teacher_trajectory, write_trajectory_pool
    from generator.train.trainer import model_files_sha256

    folder = work / f"seed-{seed}"
    n = cfg.pool_clips
    pool_file = folder / f"pool-{_row_key(best)}-n{n}.safetensors"
    cache_dir = work / f"cache-pool-n{n}"
    tr = data.train
    if not (cache_dir / "index.json").is_file():
        raise RuntimeError(f"{cache_dir}: the pool cache is missing (run_study writes it)")
    if pool_file.is_file():
        return pool_file, cache_dir
    model = load_trained(teacher_dir / "transformer")
    inp = _inputs(tr, n, negative)
    grid, _ = student_sigmas(max(s.steps for s in cfg.students), {"flow_shift": 5.0})
    noise = torch.randn(inp["latents"].shape, generator=torch.Generator().manual_seed(5000 + seed))
    trajs = []
    for i in range(0, n, cfg.eval_batch):
        sl = slice(i, min(i + cfg.eval_batch, n))
        trajs.append(
            teacher_trajectory(
                model,
                make_scheduler(best.solver, {"flow_shift": 5.0}),
                noise[sl],
                inp["latents"][sl, :, :1],
                _cond(inp, sl, "product"),
                Guidance(best.scale, best.scale, interval=best.interval),
                best.steps,
                grid,
            )
        )
    traj = torch.cat(trajs)
    sampler = {
        "solver": best.solver,
        "steps": best.steps,
        "guidance_scale": best.scale,
        "audio_guidance_scale": best.scale,
        "guidance_interval": None if best.interval is None else list(best.interval),
        "negative_prompt": "Wan's default (DEFAULT_NEGATIVE_PROMPT), world text encoder",
        "noise_seed": 5000 + seed,
    }
    write_trajectory_pool(
        pool_file,
        {f"clip{i:05d}": traj[i] for i in range(n)},
        grid,
        model_files_sha256(teacher_dir / "transformer"),
        sampler,
    )
    return pool_file, cache_dir


def train_student(
    cfg: StudyConfig,
    st: Student,
    seed: int,
    teacher_dir: Path,
    pool: Path,
    cache: Path,
    work: Path,
    log: Any,
) -> Path:
    from generator.train.trainer import find_checkpoints

    out = work / f"seed-{seed}" / f"student-{st.name}-{pool.stem}-s{cfg.distill_steps}"
    done = find_checkpoints(out) if out.is_dir() else []
    if done and (done[-1] / "transformer" / "config.json").is_file():
        return done[-1] / "transformer"
    ic = cfg.bench.world.identity_channels
    d = {
        "teacher": str(teacher_dir),
        "mode": "trajectory",
        "student_steps": st.steps,
        "teacher_steps": cfg.teacher_steps,
        "negative_prompt": "",
        "export": False,
        "pool": str(pool),
    }
    if st.identity_weight:
        d |= {
            "identity_weight": st.identity_weight * cfg.identity_weight,
            "identity_channels": list(ic),
        }
    sd = _run(
        _config(
            "distill",
            out,
            teacher_dir,
            cache,
            cfg.distill_steps,
            cfg,
            seed,
            distill=d,
            lr=cfg.distill_lr,
        ),
        f"seed {seed} student {st.name}",
        log,
    )
    return Path(sd["checkpoint"]) / "transformer"


# ------------------------------------------------------------------------------------ scoring
def score(world: Any, latents: torch.Tensor, clips: list[Any]) -> dict[str, float]:
    from generator.eval.metrics import aggregate, score_clip

    arr = latents.numpy()
    return aggregate([score_clip(world, arr[i], c) for i, c in enumerate(clips)])


def _mult(n: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1))


def band_mde(sd: float, n: int) -> float:
    """(t_0.975 + t_0.8, df n-1) x SD x sqrt(2/n): two groups of n teachers."""
    return _mult(n) * sd * float(np.sqrt(2.0 / n))


def choose_best(
    sweep: dict[str, dict[int, dict[str, float]]], evals: dict[str, int]
) -> dict[str, Any]:
    """The protocol's rule (module docstring, step 4) on per-seed sweep metrics."""
    names = list(sweep)
    seeds = sorted(next(iter(sweep.values())))
    n = len(seeds)
    mde = {}
    for key in (*SELECTION_METRICS, "identity_err"):
        var = np.mean([np.var([sweep[r][s][key] for s in seeds], ddof=1) for r in names])
        mde[key] = band_mde(float(np.sqrt(var)), n)
    mean = {r: {k: float(np.mean([sweep[r][s][k] for s in seeds])) for k in mde} for r in names}
    eligible = []
    for r in names:
        ok = True
        for key in SELECTION_METRICS:
            best = max(mean[x][key] for x in names)
            if best - mean[r][key] > mde[key]:
                ok = False
        if ok:
            eligible.append(r)
    chosen = min(eligible, key=lambda r: (mean[r]["identity_err"], evals[r]))
    return {"best": chosen, "eligible": eligible, "selection_mde": mde, "means": mean}


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Per row: per-seed metrics, mean, paired difference to the best teacher (mean, SE), the
    verdict against the band MDE of the best teacher's training-seed spread."""
    from scipy import stats

    runs = results["runs"]  # row -> seed -> {"metrics", "evaluations", "cpu_s"}
    best = results["best_row"]
    seeds = sorted(runs[best])
    n = len(seeds)
    band = {}
    for key in (*METRICS, "distance"):
        vals = [runs[best][s]["metrics"][key] for s in seeds]
        sd = float(np.std(vals, ddof=1))
        band[key] = {"mean": float(np.mean(vals)), "sd": sd, "mde": band_mde(sd, n), "df": n - 1}
    t95 = float(stats.t.ppf(0.975, n - 1))
    table = {}
    for name, per in runs.items():
        common = [s for s in seeds if s in per]
        any_seed = per[common[0]]
        row: dict[str, Any] = {
            "evaluations": any_seed["evaluations"],
            "cpu_s_per_clip": float(np.mean([per[s]["cpu_s"] for s in common])),
            "teachers": len(common),
        }
        worse = []
        for key in (*METRICS, "distance"):
            vals = [per[s]["metrics"][key] for s in common]
            diffs = [per[s]["metrics"][key] - runs[best][s]["metrics"][key] for s in common]
            se = float(np.std(diffs, ddof=1) / np.sqrt(len(diffs))) if len(diffs) > 1 else 0.0
            d = float(np.mean(diffs))
            row[key] = {
                "mean": float(np.mean(vals)),
                "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                "diff": d,
                "diff_se": se,
                "diff_ci95": [d - t95 * se, d + t95 * se],
            }
            if key in VERDICT_METRICS:
                bad = -d if HIGHER_IS_BETTER.get(key, False) else d
                if bad > band[key]["mde"]:
                    worse.append(f"{key} {d:+.3f}")
        row["worse_than_best"] = worse
        row["within_noise"] = not worse
        table[name] = row
    return {"band": band, "table": table, "best": best, "teachers": n}


def projection(evals: int) -> dict[str, float]:
    """Seconds for a 5-s 704x1280 clip on one H100 / H200 at 40 and 60 % of the BF16 peak
    (`generator.sampling.forward_flops` of the 5B forward)."""
    from generator.presets import WAN22_TI2V_5B_TRANSFORMER_CONFIG
    from generator.sampling import forward_flops

    flops = forward_flops(WAN22_TI2V_5B_TRANSFORMER_CONFIG)["full"]
    return {f"{int(u * 100)}%": evals * flops / (u * 989e12) for u in (0.4, 0.6)}


def write_report(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["summary"]
    table, band, best = s["table"], s["band"], s["best"]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    for ax, key in zip(axes, ("identity_err", "lip_corr", "temporal_iou", "hit_rate")):
        for name, r in table.items():
            marker = "o" if "student" in name else ("s" if name == best else "^")
            ax.errorbar(
                r["evaluations"],
                r[key]["mean"],
                yerr=r[key]["sd"],
                fmt=marker,
                capsize=3,
                label=name,
            )
        t = table[best][key]["mean"]
        ax.axhspan(t - band[key]["mde"], t + band[key]["mde"], color="grey", alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel("model evaluations per clip")
        ax.set_title(f"{key} (band: best teacher ± training-seed MDE)")
    axes[-1].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "quality_vs_evaluations.png", dpi=110)
    plt.close(fig)

    quick = " (QUICK MODE: plumbing only, the numbers mean nothing)" if results["quick"] else ""
    sel = results["selection"]
    n = s["teachers"]
    lines = [
        f"# Few evaluations against the best teacher (issues 12 and 21){quick}",
        "",
        "Generated by `python -m generator.sampling_eval --out docs/eval/sampling"
        + (f" --best '{results['best_override']}'" if results.get("best_override") else "")
        + f"` in {results['seconds'] / 60:.1f} min on this machine (CPU, one torch thread, "
        "shared with other jobs; with a `--worker` process on the same `--work` folder). Protocol: module docstring of `generator/sampling_eval.py`. Every row "
        "is sampled with the pipeline's own loop (`pipeline_actavatar.denoise`).",
        "",
        f"{n} teachers (training seeds {', '.join(map(str, results['train_seeds']))}, one shared "
        f"backbone), noise seed {results['sample_seed']}, {results['test_clips']} held-out test "
        f"clips ({results['test_phases']} phases; scaled down from 256 to fit the time budget). "
        f"Students: {results['distill_steps']} distillation steps each on a pool of "
        f"{results['pool_clips']} training clips sampled once by the best teacher's sampler.",
        "",
        "## 1. Guidance sweep (UniPC 40, Wan's negative prompt)",
        "",
        "| setting | evals/clip | H@S | temporal IoU | lip corr | identity err | eligible |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in results["sweep_rows"]:
        r = table[name]
        cells = [f"{r[k]['mean']:.3f} ± {r[k]['sd']:.3f}" for k in VERDICT_METRICS]
        el = "yes" if name in sel["eligible"] else "no"
        lines.append(f"| {name} | {r['evaluations']} | " + " | ".join(cells) + f" | {el} |")
    lines += [
        "",
        "Selection MDE (pooled training-seed SD over the sweep): "
        + ", ".join(f"{k} {v:.3f}" for k, v in sel["selection_mde"].items())
        + (
            f". **Best teacher: {best}** (lowest identity error among the settings within that "
            "MDE of the best on H@S, temporal IoU and lip corr)."
            if not results.get("best_override")
            else f". The rule chose {sel['best']}; **this run judges against {best} instead** "
            "(`--best`, a sensitivity analysis chosen after seeing the sweep: label it so)."
        ),
        "",
        "## 2. Quality vs evaluations per clip, against the best teacher",
        "",
        "Mean ± SD over the teachers; Δ = mean paired difference to the best teacher (same "
        "teacher, same noise) ± its SE. Within noise = no metric worse than the best teacher by "
        "more than the training-seed MDE below. CPU s/clip: measured here (process time, one "
        "thread); H100/H200: evaluations x the 5B forward's FLOPs for a 5-s 704x1280 clip at "
        "40-60 % of the dense BF16 peak (989 TFLOP/s).",
        "",
        "| row | evals/clip | H@S (Δ) | temporal IoU (Δ) | lip corr (Δ) | identity err (Δ) | "
        "distance to best | CPU s/clip | H100/H200 s/clip | within best teacher's noise |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in table.items():
        cells = [
            f"{r[k]['mean']:.3f} ({r[k]['diff']:+.3f} ± {r[k]['diff_se']:.3f})"
            for k in VERDICT_METRICS
        ]
        proj = projection(r["evaluations"])
        verdict = "yes" if r["within_noise"] else "no: " + ", ".join(r["worse_than_best"])
        lines.append(
            f"| {name} | {r['evaluations']} | "
            + " | ".join(cells)
            + f" | {r['distance']['mean']:.3f} | {r['cpu_s_per_clip']:.3f} | "
            f"{proj['60%']:.0f}-{proj['40%']:.0f} | {verdict} |"
        )
    lines += [
        "",
        f"Training-seed noise of the best teacher ({n} teachers, df {n - 1}, alpha 0.05 "
        "two-sided, power 0.8): "
        + ", ".join(f"{k} SD {band[k]['sd']:.4f}, MDE {band[k]['mde']:.4f}" for k in METRICS)
        + ".",
        "",
    ]
    few = [(r["evaluations"], nm) for nm, r in table.items() if r["evaluations"] <= 8]
    ok = sorted((e, nm) for e, nm in few if table[nm]["within_noise"])
    lines.append(
        "At <= 8 evaluations per clip, within the best teacher's training-seed noise on every "
        "metric: " + (", ".join(f"{nm} ({e})" for e, nm in ok) if ok else "**none**") + "."
    )
    if not ok and few:
        fails: dict[str, list[str]] = {}
        for _, nm in few:
            for w in table[nm]["worse_than_best"]:
                fails.setdefault(w.split()[0], []).append(nm)
        lines.append(
            "Metrics not held at <= 8 evaluations: "
            + "; ".join(f"{k} ({len(v)} of {len(few)} rows)" for k, v in fails.items())
            + "."
        )
    pairs = [
        (nm, nm.replace(" + identity", ""))
        for nm in table
        if nm.endswith(" + identity") and nm.replace(" + identity", "") in table
    ]
    if pairs:
        lines += [
            "",
            "Identity term, paired (same teacher, same pool, same noise): Δ = row with the term "
            "minus the same student without it, mean ± SE over the teachers.",
            "",
            "| students | H@S Δ | temporal IoU Δ | lip corr Δ | identity err Δ |",
            "|---|---|---|---|---|",
        ]
        runs = results["runs"]
        for with_id, plain in pairs:
            cells = []
            for k in VERDICT_METRICS:
                d = [
                    runs[with_id][s_]["metrics"][k] - runs[plain][s_]["metrics"][k]
                    for s_ in runs[with_id]
                    if s_ in runs[plain]
                ]
                se = float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
                cells.append(f"{np.mean(d):+.3f} ± {se:.3f}")
            lines.append(f"| {with_id} vs {plain} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Training: " + "; ".join(results["training_log"]),
        "",
        "![quality vs evaluations](quality_vs_evaluations.png)",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def _row_key(row: Row) -> str:
    return "".join(c if c.isalnum() else "_" for c in row.name)


class _Claims:
    """Units of work shared by processes on one `--work` folder: a unit is claimed by creating
    `claims/<unit>.lock` (exclusive) with the claimer's pid and finished by `<unit>.done`. A
    lock whose process is gone is taken over, so a killed run resumes."""

    def __init__(self, work: Path, log: Any) -> None:
        self.dir = work / "claims"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = log

    def _alive(self, lock: Path) -> bool:
        import os

        try:
            pid = int(lock.read_text().strip() or 0)
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return True

    def take(self, unit: str) -> bool:
        import os

        if (self.dir / f"{unit}.done").is_file():
            return False
        lock = self.dir / f"{unit}.lock"
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if self._alive(lock) and int(lock.read_text().strip() or 0) != os.getpid():
                    return False
                lock.unlink(missing_ok=True)  # a dead claimer's (or our own earlier) lock
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            return True
        return False

    def finish(self, unit: str) -> None:
        (self.dir / f"{unit}.done").write_text("")
        (self.dir / f"{unit}.lock").unlink(missing_ok=True)

    def wait(self, units: list[str]) -> None:
        """Until every unit is done; a unit whose claimer died is reported (rerun to redo it)."""
        while True:
            missing = [u for u in units if not (self.dir / f"{u}.done").is_file()]
            if not missing:
                return
            for u in missing:
                lock = self.dir / f"{u}.lock"
                if not lock.is_file() or not self._alive(lock):
                    raise RuntimeError(f"unit {u} is neither done nor running (rerun the study)")
            time.sleep(5)


def run_study(
    cfg: StudyConfig,
    out: Path,
    log: Any = print,
    work: Path | None = None,
    worker: bool = False,
) -> dict[str, Any]:
    """The study; `worker` runs only the per-seed units it can claim (a second process on the
    same `work` folder) and returns {} without a report."""
    from generator.eval.bench import build_data
    from generator.eval.trainer_backend import load_trained

    torch.set_num_threads(cfg.bench.threads)
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if work is None:  # caches and checkpoints: outside the report folder
        import tempfile

        work = Path(tempfile.mkdtemp(prefix="sampling-eval-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"work folder {work}")
    data = build_data(cfg.bench)
    clips = data.test_clips[: cfg.test_clips]
    negative = product_negative(data, cfg)
    inp = _inputs(data.test, cfg.test_clips, negative)
    log(f"data: {len(clips)} test clips ({time.perf_counter() - t0:.0f} s)")
    training_log: list[str] = []

    def tlog(line: str) -> None:  # every process's training lines, in the work folder
        training_log.append(line.strip())
        with open(work / "training.log", "a") as fh:
            fh.write(line.strip() + "\n")
        log(line)

    claims = _Claims(work, log)
    if claims.take("backbone"):
        base = train_backbone(cfg, data, work, tlog)
        claims.finish("backbone")
    claims.wait(["backbone"])
    base = train_backbone(cfg, data, work, tlog)  # done: only the paths
    if claims.take(f"cache-pool-n{cfg.pool_clips}"):
        _pool_cache(cfg, data, work)
        claims.finish(f"cache-pool-n{cfg.pool_clips}")
    claims.wait([f"cache-pool-n{cfg.pool_clips}"])
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    latents: dict[tuple[str, int], torch.Tensor] = {}

    def measure(model: Any, row: Row, best: Row, seed: int) -> None:
        key = _row_key(row)
        if row.scale is None or row.model != "teacher":  # depends on the best teacher
            key += f"-{_row_key(best)}"
        if row.model != "teacher":
            key += f"-p{cfg.pool_clips}-s{cfg.distill_steps}"
        cache = work / f"seed-{seed}" / f"row-{key}-n{cfg.test_clips}.pt"
        if cache.is_file():
            rec = torch.load(cache, weights_only=False)
        else:
            lat, evals, cpu = sample(model, inp, row, best, cfg.sample_seed, cfg)
            metrics = score(data.world, lat, clips)
            rec = {"latents": lat, "evaluations": evals, "cpu_s": cpu, "metrics": metrics}
            torch.save(rec, cache)
            m = metrics
            log(
                f"  seed {seed} {row.name:44s} {evals:4d} evals  IoU {m['temporal_iou']:.3f} "
                f"H@S {m['hit_rate']:.3f} lip {m['lip_corr']:.3f} id {m['identity_err']:.3f} "
                f"({cpu * len(clips):.0f} s)"
            )
        latents[(row.name, seed)] = rec["latents"]
        runs.setdefault(row.name, {})[seed] = {k: v for k, v in rec.items() if k != "latents"}

    def teacher(seed: int) -> Path:
        return work / f"seed-{seed}" / "teacher"

    # 1. teachers and the guidance sweep (a unit per training seed; `worker` processes share)
    sweep = sweep_rows(cfg.scales, cfg.teacher_steps)
    for seed in cfg.train_seeds:
        if claims.take(f"sweep-{seed}"):
            train_teacher(cfg, seed, base, work, tlog)
            model = load_trained(teacher(seed) / "transformer")
            for row in sweep:
                measure(model, row, row, seed)
            claims.finish(f"sweep-{seed}")
    claims.wait([f"sweep-{seed}" for seed in cfg.train_seeds])
    for seed in cfg.train_seeds:
        for row in sweep:
            measure(None, row, row, seed)  # cached
    sel = choose_best(
        {r.name: {s: runs[r.name][s]["metrics"] for s in cfg.train_seeds} for r in sweep},
        {r.name: runs[r.name][cfg.train_seeds[0]]["evaluations"] for r in sweep},
    )
    chosen = cfg.best_override or sel["best"]
    if chosen not in {r.name for r in sweep}:
        raise ValueError(f"--best {chosen!r}: not a sweep row ({', '.join(r.name for r in sweep)})")
    best = next(r for r in sweep if r.name == chosen)
    log(f"best teacher: {best.name} (rule: {sel['best']}; eligible: {', '.join(sel['eligible'])})")

    # 2. rows at the best setting, pools and unconfounded students
    tag = f"best-{_row_key(best)}-n{cfg.test_clips}-p{cfg.pool_clips}-s{cfg.distill_steps}"
    for seed in cfg.train_seeds:
        if claims.take(f"{tag}-{seed}"):
            models = {"teacher": load_trained(teacher(seed) / "transformer")}
            pool, cache = build_pool(cfg, teacher(seed), data, negative, best, work, seed)
            for st in cfg.students:
                path = train_student(cfg, st, seed, teacher(seed), pool, cache, work, tlog)
                models[st.name] = load_trained(path)
            for row in best_rows(cfg.students):
                measure(models[row.model], row, best, seed)
            claims.finish(f"{tag}-{seed}")
    if worker:
        return {}
    claims.wait([f"{tag}-{seed}" for seed in cfg.train_seeds])
    for seed in cfg.train_seeds:
        for row in best_rows(cfg.students):
            measure(None, row, best, seed)  # cached

    for (name, seed), lat in latents.items():
        ref = latents[(best.name, seed)]
        runs[name][seed]["metrics"]["distance"] = float(
            (lat - ref)[:, :, 1:].norm() / ref[:, :, 1:].norm()
        )
    results = {
        "quick": cfg.quick,
        "train_seeds": list(cfg.train_seeds),
        "sample_seed": cfg.sample_seed,
        "test_clips": len(clips),
        "test_phases": sum(len(c.windows) for c in clips),
        "pool_clips": cfg.pool_clips,
        "distill_steps": cfg.distill_steps,
        "identity_weight": cfg.identity_weight,
        "sweep_rows": [r.name for r in sweep],
        "best_row": best.name,
        "best_override": cfg.best_override,
        "best": {
            "solver": best.solver,
            "steps": best.steps,
            "guidance_scale": best.scale,
            "audio_guidance_scale": best.scale,
            "guidance_interval": None if best.interval is None else list(best.interval),
        },
        "selection": sel,
        "rows": {
            r.name: {**r.__dict__, "interval": r.interval}
            for r in (*sweep, *best_rows(cfg.students))
        },
        "runs": {k: {str(s): v for s, v in per.items()} for k, per in runs.items()},
        "training_log": (work / "training.log").read_text().splitlines()
        if (work / "training.log").is_file()
        else training_log,
    }
    results["summary"] = summarise({"runs": runs, "best_row": best.name})
    results["options"] = {
        name: {"within_noise": row["within_noise"], "evaluations": row["evaluations"]}
        for name, row in results["summary"]["table"].items()
    }
    results["seconds"] = time.perf_counter() - t0
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    write_report(results, out)
    return results


def record_measurement(student: Path, results: Path, row: str) -> Path:
    """A study row's verdict against the best teacher as the student's `measured` record."""
    from generator.sampling import write_student_measurement

    data = json.loads(Path(results).read_text())
    table = data["summary"]["table"]
    if row not in table:
        raise SystemExit(f"{results}: no row {row!r} (rows: {', '.join(table)})")
    r = table[row]
    return write_student_measurement(
        student,
        {
            "within_noise": bool(r["within_noise"]),
            "worse": list(r["worse_than_best"]),
            "reference": data["best_row"],
            "row": row,
            "metrics": {k: r[k]["mean"] for k in VERDICT_METRICS},
            "source": f"{results.parent.name}/{results.name}: {row}"
            + (" (QUICK)" if data.get("quick") else ""),
        },
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m generator.sampling_eval", description=__doc__)
    parser.add_argument("--out", type=Path, help="report folder (the study)")
    parser.add_argument("--quick", action="store_true", help="plumbing only (tiny budgets)")
    parser.add_argument("--work", type=Path, default=None, help="caches and checkpoints (resume)")
    parser.add_argument(
        "--calibrate", type=Path, metavar="PIPELINE", help="write a step-cache calibration"
    )
    parser.add_argument("--threshold", type=float, default=None, help="with --calibrate")
    parser.add_argument("--size", default="704x1280", help="HxW of the calibration probe")
    parser.add_argument(
        "--worker",
        action="store_true",
        help="a second process: claim per-seed units of the run in --work, write no report",
    )
    parser.add_argument(
        "--record",
        type=Path,
        metavar="STUDENT",
        help="write a study row's measured quality into a student's sampling.json (--fast "
        "then prefers the best measured student)",
    )
    parser.add_argument("--row", default=None, help="with --record: the study row's name")
    parser.add_argument(
        "--best",
        default=None,
        metavar="ROW",
        help="judge against this sweep row instead of the rule's best teacher (sensitivity)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "docs/eval/sampling/results.json",
        help="with --record: the study's results.json",
    )
    args = parser.parse_args(argv)
    if args.record:
        if not args.row:
            parser.error("--record needs --row (a row of the study's table)")
        print(record_measurement(args.record, args.results, args.row))
        return 0
    if args.calibrate:
        from generator.calibration import calibrate_pipeline

        if not (args.calibrate / "model_index.json").is_file():
            parser.error(f"{args.calibrate}: not a pipeline folder (no model_index.json)")
        threshold = args.threshold
        if threshold is None:
            from generator.sampling import read_sampling_file

            bench = read_sampling_file(Path(__file__).resolve().parents[1] / "docs/eval/sampling")
            if not bench:
                parser.error("--threshold is required (no docs/eval/sampling/sampling.json)")
            threshold = float(bench["step_cache"]["threshold"])
        h, w = (int(v) for v in args.size.lower().split("x"))
        print(calibrate_pipeline(args.calibrate, threshold, h, w))
        return 0
    if args.out is None:
        parser.error("give --out DIR (the study) or --calibrate PIPELINE")
    cfg = replace(StudyConfig.make(args.quick), best_override=args.best)
    if args.worker:
        if args.work is None:
            parser.error("--worker needs --work (the main run's folder)")
        run_study(cfg, args.out, work=args.work, worker=True)
        return 0
    res = run_study(cfg, args.out, work=args.work)
    print(f"done in {res['seconds'] / 60:.1f} min -> {args.out / 'README.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
