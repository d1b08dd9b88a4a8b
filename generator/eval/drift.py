"""The drift instrument (issue 20): chains of segments rendered the way the product renders a
long talk, scored per segment index against the chain's reference.

Protocol (fixed before the first full run, `DriftConfig.full()`):

- World: the synthetic world with a per-clip colour offset in every frame
  (`generator.eval.world.drift_world_config`). A *chain* is `n_segments` consecutive segments
  of one talk (`SyntheticWorld.chain`): one identity and colour, a new prompt, phases and audio
  per segment.
- Models: per seed, a backbone pre-trained on brief captions without audio (the bench's
  stand-in for the public checkpoint), then one stage-2 `generator.train.Trainer` run per model
  row (`DriftRow`: +PACA +time-aware, the shipped method, plus the issue-20 switches when the
  model has them). Rows of a seed share the backbone, data and sampling noise (paired).
- Chains: segment 0 starts from the clean reference frame (the TI2V image); segment k >= 1
  starts from segment k-1's last *shown* latent frame (the product's continuity of 1 frame =
  1 latent frame), handed over as
  - `latent`: the latent itself;
  - `pixels`: the decoded-PNG round trip modelled in latent space: each channel is mapped to
    8 bits (`pixel_range` latent units either side of 0 = levels 0..255), shifted by
    `shift` levels along a fixed per-channel sign pattern (a decode/re-encode nudges colour),
    rounded and clipped, and mapped back.
  With `anchor`, each segment's shown frames get the colour anchor before they are shown and
  handed over: the latent-space equivalent of `generator.conditioning.color_match`'s mean
  term (per channel, the mean over the segment's frames is moved to the reference frame's
  mean; the spread term is left out because body and mouth channels legitimately change
  their spread with action and speech, so matching it to a resting reference would erase
  them).
- Metrics per segment (its shown frames, against the truth rendered with the chain's identity
  and colour): identity error (identity channels, spatial mean removed, relative L2 against
  the reference frame's pattern), colour mean / spread drift (RMS over channels of the
  per-channel mean / spatial SD minus the truth's), temporal IoU of the segment's phases and
  lip correlation (`generator.eval.metrics.score_clip` after removing the true colour), and
  the seam: the RMS change from the previous segment's last shown frame to this segment's
  first, and the mean RMS change between consecutive frames inside the segment.
- Controls: the perfect chain (every segment = its truth) and the blind chain (every segment =
  the truth of another chain: wrong identity and colour), no model involved.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from generator.eval.world import Clip, SyntheticWorld, WorldConfig, drift_world_config

__all__ = [
    "COLOUR_ROWS",
    "DRIFT_ROWS",
    "STUDIES",
    "ChainMode",
    "DriftConfig",
    "DriftRow",
    "chain_metrics",
    "colour_anchor",
    "pixel_round_trip",
    "merge_drift",
    "run_drift",
    "study_rows",
]

METRIC_KEYS: tuple[str, ...] = (
    "identity_err",
    "color_mean_err",
    "color_spread_err",
    "temporal_iou",
    "lip_corr",
    "seam_jump",
    "within_change",
)


@dataclass(frozen=True)
class DriftRow:
    """One trained model: the shipped method (+PACA +time-aware) plus the issue-20 switches,
    set through the trainer's config (`model.reference_sink`, `data.context_latents`,
    `train.context_noise`)."""

    name: str
    reference_sink: bool = False
    context_latents: int = 1
    context_noise: float = 0.0
    sink_gap: int = 0
    context_shift: float = 0.0

    def trainer_extra(self) -> dict[str, dict[str, Any]]:
        """The trainer config keys of the switches that differ from today (none for today)."""
        extra: dict[str, dict[str, Any]] = {}
        if self.reference_sink:
            extra.setdefault("model", {})["reference_sink"] = True
        if self.context_latents != 1:
            extra.setdefault("data", {})["context_latents"] = self.context_latents
        if self.sink_gap:
            extra.setdefault("data", {})["sink_gap"] = self.sink_gap
        if self.context_noise > 0:
            extra.setdefault("train", {})["context_noise"] = self.context_noise
        if self.context_shift > 0:
            extra.setdefault("train", {})["context_shift"] = self.context_shift
        return extra


TODAY = DriftRow("today")
# The issue-20 model rows (fixed before the first full run). "+context" trains with up to 3
# clean leading latent frames (a segment continues from frames that show action and speech,
# not only from the resting image); the sink and the noised context (levels up to 0.3,
# hidden from the model) are measured on top of it, each on/off.
DRIFT_ROWS: tuple[DriftRow, ...] = (
    TODAY,
    DriftRow("+context", context_latents=3),
    DriftRow("+context +sink", reference_sink=True, context_latents=3),
    DriftRow("+context +noise", context_latents=3, context_noise=0.3),
    DriftRow("+context +sink +noise", reference_sink=True, context_latents=3, context_noise=0.3),
)
# The colour study (fixed after the first run found a colour step at the first join of the
# sink + noise model, before this study's first run): two candidate model-side fixes on top of
# that model, each on/off, and the colour anchor on every row. `+gap` trains the later
# segments' layout, where the sink is an earlier frame than the context (`data.sink_gap` 2:
# the window starts 0-2 latent frames after the sink); `+shift` trains with colour-shifted
# context (`train.context_shift` 0.2: per-channel offsets up to 0.2 SD, about 3x the first
# segment's colour error of 0.064), so that colour is taken from the clean sink.
SINK_NOISE = DRIFT_ROWS[-1]
COLOUR_ROWS: tuple[DriftRow, ...] = (
    SINK_NOISE,
    replace(SINK_NOISE, name="+context +sink +noise +gap", sink_gap=2),
    replace(SINK_NOISE, name="+context +sink +noise +shift", context_shift=0.2),
    replace(SINK_NOISE, name="+context +sink +noise +gap +shift", sink_gap=2, context_shift=0.2),
)
STUDIES: dict[str, tuple[DriftRow, ...]] = {"switches": DRIFT_ROWS, "colour": COLOUR_ROWS}


@dataclass(frozen=True)
class ChainMode:
    """How a segment hands over to the next one."""

    continuity: str  # "latent" or "pixels"
    shift: float = 0.0  # pixels: colour shift per round trip, 8-bit levels
    anchor: bool = False  # the colour anchor post-process

    @property
    def name(self) -> str:
        base = "latent" if self.continuity == "latent" else f"pixels {self.shift:g}"
        return base + (" +anchor" if self.anchor else "")


@dataclass
class DriftConfig:
    """Sizes and budgets of a drift run (`full()` / `quick()`)."""

    world: WorldConfig = field(default_factory=drift_world_config)
    seeds: tuple[int, ...] = (0, 1, 2)
    pretrain_steps: int = 400
    steps: int = 500
    batch_size: int = 16
    lr: float = 2e-3
    n_train: int = 1024
    n_chains: int = 64
    n_segments: int = 12
    sample_steps: int = 16
    data_seed: int = 2020
    threads: int = 1
    # pixels mode: latent units mapped to the 8-bit range (+-pixel_range -> 0..255) and the
    # colour shift per round trip in levels (0 = quantisation only)
    pixel_range: float = 4.0
    shifts: tuple[float, ...] = (0.5, 1.0, 2.0)
    # the shift at which every model row is measured (the others: `today` only)
    main_shift: float = 1.0
    rows: tuple[str, ...] = tuple(r.name for r in DRIFT_ROWS)
    quick: bool = False
    # which row set (`STUDIES`): "switches" (the model switches, the first run) or "colour"
    # (fixes of the colour step at the first join, the colour anchor on every row)
    study: str = "switches"

    @classmethod
    def full(cls, study: str = "switches") -> DriftConfig:
        return cls(study=study, rows=tuple(r.name for r in study_rows(study)))

    @classmethod
    def quick_config(cls, study: str = "switches") -> DriftConfig:
        """Plumbing only (CI): tiny budgets, the numbers mean nothing."""
        return replace(cls.full(study), **cls._quick_sizes())

    @staticmethod
    def _quick_sizes() -> dict[str, Any]:
        return dict(
            seeds=(0,),
            pretrain_steps=4,
            steps=4,
            n_train=32,
            n_chains=8,
            n_segments=3,
            sample_steps=2,
            shifts=(1.0,),
            quick=True,
        )

    def modes(self, row: str) -> list[ChainMode]:
        """The chain modes a row is measured in: `today` in latent and pixels mode at every
        shift, and with the colour anchor in latent and pixels at `main_shift`; the other
        rows in latent and pixels at `main_shift`, without the anchor (switches study) or
        also with it in latent mode (colour study)."""
        main = [ChainMode("latent"), ChainMode("pixels", self.main_shift)]
        if self.study == "colour":
            return main + [ChainMode("latent", anchor=True)]
        if row != "today":
            return main
        extra = [ChainMode("pixels", s) for s in self.shifts if s != self.main_shift]
        return main + extra + [replace(m, anchor=True) for m in main]


def study_rows(study: str) -> tuple[DriftRow, ...]:
    """The model rows of a study (`STUDIES`), with a clear error for an unknown name."""
    if study not in STUDIES:
        raise ValueError(f"unknown drift study {study!r} (known: {', '.join(STUDIES)})")
    return STUDIES[study]


def model_switches_available() -> bool:
    """Whether the trainer knows the issue-20 switches (`model.reference_sink` etc.)."""
    from generator.train.config import ModelConfig

    return "reference_sink" in getattr(ModelConfig, "__dataclass_fields__", {})


# ----------------------------------------------------------------------------------------------
# Hand-off and post-process
# ----------------------------------------------------------------------------------------------
def shift_pattern(channels: int, seed: int) -> np.ndarray:
    """(C,) fixed signs of the per-channel colour shift (+1/-1, from the world seed)."""
    rng = np.random.default_rng(10_000 + seed)
    return np.where(rng.random(channels) < 0.5, -1.0, 1.0).astype(np.float32)


def pixel_round_trip(
    x: np.ndarray, shift: float, pattern: np.ndarray, pixel_range: float
) -> np.ndarray:
    """The decoded-PNG hand-off of latents (B, C, F, H, W): to 8 bits, + `shift` levels along
    `pattern` per channel, rounded and clipped to 0..255, back to latent units."""
    scale = 127.5 / pixel_range
    p = 127.5 + scale * x + shift * pattern[None, :, None, None, None]
    p = np.clip(np.round(p), 0, 255)
    return ((p - 127.5) / scale).astype(np.float32)


def colour_anchor(shown: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Shown frames (B, C, F, H, W) with each channel's mean over the segment moved to the
    reference frame's (B, C, H, W) mean (color_match's mean term, in latent space)."""
    delta = reference.mean(axis=(2, 3)) - shown.mean(axis=(2, 3, 4))
    return (shown + delta[:, :, None, None, None]).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------
def _rms(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.sqrt((x.astype(np.float64) ** 2).mean(axis=axes))


def chain_metrics(
    world: SyntheticWorld,
    shown: np.ndarray,
    truth: np.ndarray,
    reference: np.ndarray,
    clips: list[list[Clip]],
) -> dict[str, np.ndarray]:
    """Per chain and segment metrics (each (B, S)) of shown frames (B, S, C, F, H, W) against
    the truth (same shape), the reference frames (B, C, H, W) and the chains' clips (B x S).
    `seam_jump` of segment 0 is NaN (no join before it)."""
    from generator.eval.metrics import score_clip

    cfg = world.config
    b, s = shown.shape[:2]
    i0, i1 = cfg.identity_channels
    gi = shown[:, :, i0:i1] - shown[:, :, i0:i1].mean(axis=(4, 5), keepdims=True)
    ri = reference[:, i0:i1] - reference[:, i0:i1].mean(axis=(2, 3), keepdims=True)
    ri = ri[:, None, :, None]  # (B, 1, n_id, 1, H, W)
    err = np.sqrt(((gi - ri) ** 2).sum(axis=(2, 4, 5))) / np.sqrt((ri**2).sum(axis=(2, 4, 5)))
    out: dict[str, np.ndarray] = {"identity_err": err.mean(axis=2)}
    mean_g, mean_t = shown.mean(axis=(3, 4, 5)), truth.mean(axis=(3, 4, 5))  # (B, S, C)
    out["color_mean_err"] = _rms(mean_g - mean_t, (2,))
    sd_g = shown.std(axis=(4, 5)).mean(axis=3)  # (B, S, C)
    sd_t = truth.std(axis=(4, 5)).mean(axis=3)
    out["color_spread_err"] = _rms(sd_g - sd_t, (2,))
    iou = np.zeros((b, s))
    lip = np.zeros((b, s))
    for i in range(b):
        for k in range(s):
            clip = clips[i][k]
            x = shown[i, k] - clip.color[:, None, None, None]
            full = np.concatenate([np.zeros_like(x[:, :1]), x], axis=1)
            sc = score_clip(world, full, clip)
            iou[i, k] = float(np.mean(sc["ious"]))
            lip[i, k] = sc["lip_corr"]
    out["temporal_iou"], out["lip_corr"] = iou, lip
    jump = np.full((b, s), np.nan)
    jump[:, 1:] = _rms(shown[:, 1:, :, 0] - shown[:, :-1, :, -1], (2, 3, 4))
    out["seam_jump"] = jump
    out["within_change"] = _rms(np.diff(shown, axis=3), (2, 4, 5)).mean(axis=2)
    return out


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
@dataclass
class _DriftData:
    world: SyntheticWorld
    train: Any  # TensorSet, structured prompts
    train_brief: Any  # TensorSet, brief captions (backbone pre-training)
    chains: list[list[Clip]]  # n_chains x n_segments
    segments: Any  # TensorSet of the chains' segments, chain-major (chain * S + segment)
    truth: np.ndarray  # (B, S, C, F_gen, H, W): the segments' true shown frames
    reference: np.ndarray  # (B, C, H, W): the clean reference frame of each chain


def build_drift_data(cfg: DriftConfig) -> _DriftData:
    """The training clips (drift world) and the test chains, encoded once."""
    from generator.eval.bench import MODEL_OVERRIDES, encode_clips
    from generator.eval.world import build_world_text_encoder, build_world_tokenizer

    world = SyntheticWorld(cfg.world)
    tokenizer = build_world_tokenizer(world)
    encoder = build_world_text_encoder(len(tokenizer), cfg.world.text_dim, cfg.world.world_seed)
    mp = MODEL_OVERRIDES["max_phases"]
    train = world.dataset(cfg.n_train, cfg.data_seed, "train")
    rng = np.random.default_rng(cfg.data_seed + 1)
    chains = [world.chain(rng, cfg.n_segments) for _ in range(cfg.n_chains)]
    flat = [seg for chain in chains for seg in chain]
    lat = np.stack([np.stack([seg.latents for seg in chain]) for chain in chains])
    return _DriftData(
        world=world,
        train=encode_clips(train, tokenizer, encoder, cfg.world, mp),
        train_brief=encode_clips(train, tokenizer, encoder, cfg.world, mp, brief=True),
        chains=chains,
        segments=encode_clips(flat, tokenizer, encoder, cfg.world, mp),
        truth=lat[:, :, :, 1:],
        reference=lat[:, 0, :, 0],
    )


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def _model_overrides() -> dict[str, Any]:
    from generator.eval.bench import MODEL_OVERRIDES

    return dict(MODEL_OVERRIDES)


def _new_model(seed: int) -> Any:
    import torch

    from generator.presets import get_transformer_config
    from generator.transformer_actavatar import ActAvatarTransformer3DModel

    torch.manual_seed(seed)
    return ActAvatarTransformer3DModel(**get_transformer_config("tiny", **_model_overrides()))


class _Trainers:
    """Trainer caches written once; per seed a backbone, per row a stage-2 `Trainer` run."""

    def __init__(self, cfg: DriftConfig, data: _DriftData, work: Path) -> None:
        from generator.eval.trainer_backend import write_cache

        self.cfg, self.work = cfg, work
        pad = _model_overrides()["max_phases"] + 1
        tr, br = data.train, data.train_brief
        self.prompt = write_cache(
            work / "cache-prompt",
            tr.latents,
            tr.audio,
            (tr.text, tr.phase_ids),
            None,
            pad,
            windows=tr.windows,
        )
        self.brief = write_cache(
            work / "cache-brief", tr.latents, tr.audio, (br.text, br.phase_ids), None, pad
        )
        self.backbones: dict[int, Path] = {}

    def _run(self, stage: str, base: Path, cache: Path, name: str, steps: int, seed: int, **kw):
        from generator.eval.trainer_backend import run_trainer

        return run_trainer(
            stage,
            base,
            cache,
            self.work / name,
            steps,
            seed=seed,
            lr=self.cfg.lr,
            batch_size=self.cfg.batch_size,
            text_len=self.cfg.world.text_len,
            **kw,
        )

    def pretrain(self, seed: int) -> list[float]:
        from generator.eval.trainer_backend import load_trained, write_base

        init = write_base(self.work / f"init-{seed}", _new_model(seed))
        adapter0 = init / "audio_adapter.safetensors"
        _new_model(seed).save_audio_adapter(adapter0)
        res = self._run(
            "stage2",
            init,
            self.brief,
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
        return res["losses"]

    def row(self, row: DriftRow, seed: int) -> tuple[Any, list[float]]:
        from generator.eval.trainer_backend import load_trained

        backbone = self.backbones[seed]
        tag = re.sub(r"[^A-Za-z0-9]+", "-", row.name).strip("-")
        res = self._run(
            "stage2",
            backbone,
            self.prompt,
            f"{tag}-{seed}",
            self.cfg.steps,
            seed,
            adapter=backbone / "audio_adapter.safetensors",
            audio_progressive=False,
            use_phase_ids=True,
            time_aware_phases=True,
            extra=row.trainer_extra(),
        )
        return load_trained(res["transformer"]), res["losses"]


# ----------------------------------------------------------------------------------------------
# Chains
# ----------------------------------------------------------------------------------------------
def render_chains(
    cfg: DriftConfig, data: _DriftData, model: Any, mode: ChainMode, seed: int
) -> np.ndarray:
    """Generate every chain segment by segment; returns the shown frames (B, S, C, F, H, W).
    The sampling noise depends on (seed, segment) only, so modes and rows are paired."""
    import torch

    from generator.conditioning import prepend_sink, strip_sink
    from generator.eval.sampling import SamplerOptions, sample_clips

    seg = data.segments
    b, s = cfg.n_chains, cfg.n_segments
    pattern = shift_pattern(cfg.world.channels, cfg.world.world_seed)
    sink = bool(getattr(model.config, "reference_sink", False))
    reference = data.reference  # (B, C, H, W)
    ref = torch.from_numpy(reference[:, :, None])  # (B, C, 1, H, W)
    context = reference[:, :, None]  # (B, C, 1, H, W)
    shown_all = []
    for k in range(s):
        idx = torch.arange(b) * s + k
        lat = torch.zeros(seg.latents[idx].shape)
        lat[:, :, :1] = torch.from_numpy(context)
        gen = torch.Generator().manual_seed(seed * 7919 + 31 * k + 5)
        noise = torch.randn(lat.shape, generator=gen)  # the same for every row and mode
        num_clean = 1
        if sink:  # [reference | context | generated], the pipeline's layout
            lat, noise = prepend_sink(lat, ref), prepend_sink(noise, torch.zeros_like(ref))
            num_clean = 2
        batch = {
            "latents": lat,
            "noise": noise,
            "audio": seg.audio[idx],
            "text": seg.text[idx],
            "phase_ids": seg.phase_ids[idx],
            "phase_windows": seg.windows[idx],
        }
        opts = SamplerOptions(steps=cfg.sample_steps, num_clean=num_clean)
        out = sample_clips(model, batch, opts)
        out = (strip_sink(out) if sink else out).numpy()
        shown = out[:, :, 1:]
        if mode.anchor:
            shown = colour_anchor(shown, reference)
        shown_all.append(shown)
        tail = shown[:, :, -1:]
        if mode.continuity == "pixels":
            tail = pixel_round_trip(tail, mode.shift, pattern, cfg.pixel_range)
        context = tail
    return np.stack(shown_all, axis=1)


def _summarise_chain(per: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per-segment means over chains, and the chain-level SE, of every metric."""
    out: dict[str, Any] = {}
    for key, v in per.items():
        ok = ~np.isnan(v).all(axis=0)  # seam_jump has no value at segment 0
        mean = np.full(v.shape[1], np.nan)
        se = np.full(v.shape[1], np.nan)
        mean[ok] = v[:, ok].mean(axis=0)
        if v.shape[0] > 1:
            se[ok] = v[:, ok].std(axis=0, ddof=1) / np.sqrt(v.shape[0])
        out[key], out[key + "_se"] = mean.tolist(), se.tolist()
    seg = np.arange(1, next(iter(per.values())).shape[1] + 1, dtype=float)
    for key in ("identity_err", "color_mean_err", "color_spread_err"):
        # per-chain OLS slope per segment: the chain-level spread of the drift rate
        v = per[key]
        slopes = ((v - v.mean(1, keepdims=True)) * (seg - seg.mean())).sum(1) / (
            (seg - seg.mean()) ** 2
        ).sum()
        out[key + "_chain_slope"] = float(slopes.mean())
        out[key + "_chain_slope_se"] = float(slopes.std(ddof=1) / np.sqrt(len(slopes)))
    jump, within = per["seam_jump"][:, 1:], per["within_change"][:, 1:]
    out["seam_ratio"] = float(np.mean(jump) / np.mean(within)) if jump.size else float("nan")
    return out


def controls(data: _DriftData) -> dict[str, dict[str, Any]]:
    """The perfect chain (truth) and the blind chain (another chain's truth), no model."""
    truth = data.truth
    b, s = truth.shape[:2]
    # segment k of chain i shows chain (i + k + 1)'s segment k: never its own identity/colour
    blind = np.stack([truth[(np.arange(b) + k + 1) % b, k] for k in range(s)], axis=1)
    return {
        name: _summarise_chain(chain_metrics(data.world, shown, truth, data.reference, data.chains))
        for name, shown in (("perfect chain", truth), ("blind chain", blind))
    }


# ----------------------------------------------------------------------------------------------
# The study
# ----------------------------------------------------------------------------------------------
def run_drift(
    cfg: DriftConfig, out_dir: str | Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Train every row for every seed, render the chains in every mode, write the report."""
    import torch

    from generator.eval.drift_report import write_drift_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, cfg.threads))
    t0, c0 = time.time(), time.process_time()
    known = study_rows(cfg.study)
    rows = [r for r in known if r.name in cfg.rows]
    unknown = set(cfg.rows) - {r.name for r in known}
    if unknown:
        raise ValueError(f"unknown drift rows: {', '.join(sorted(unknown))}")
    if any(r.trainer_extra() for r in rows) and not model_switches_available():
        raise ValueError("this trainer has no model.reference_sink: run the 'today' row only")
    data = build_drift_data(cfg)
    log(
        f"data: {len(data.train)} training clips, {cfg.n_chains} chains x {cfg.n_segments} "
        f"segments ({time.time() - t0:.1f}s)"
    )
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {r.name: {} for r in rows}
    timing: dict[str, Any] = {"train": {}, "chains": {}}
    pretrain_curves = []
    with tempfile.TemporaryDirectory(prefix="drift-work-") as tmp:
        trainers = _Trainers(cfg, data, Path(tmp))
        for seed in cfg.seeds:
            ts, cs = time.time(), time.process_time()
            pretrain_curves.append(trainers.pretrain(seed))
            timing["train"][f"pretrain-{seed}"] = _took(ts, cs)
            log(f"seed {seed}: backbone pre-trained in {time.time() - ts:.0f}s")
            for row in rows:
                ts, cs = time.time(), time.process_time()
                model, losses = trainers.row(row, seed)
                timing["train"][f"{row.name}-{seed}"] = _took(ts, cs)
                for mode in cfg.modes(row.name):
                    ts, cs = time.time(), time.process_time()
                    shown = render_chains(cfg, data, model, mode, seed)
                    per = chain_metrics(data.world, shown, data.truth, data.reference, data.chains)
                    res = _summarise_chain(per)
                    res.update(seed=seed, final_loss=float(np.mean(losses[-20:])))
                    runs[row.name].setdefault(mode.name, []).append(res)
                    timing["chains"][f"{row.name}|{mode.name}|{seed}"] = _took(ts, cs)
                    log(
                        f"seed {seed} {row.name:<22} {mode.name:<18} identity "
                        f"{res['identity_err'][0]:.3f}->{res['identity_err'][-1]:.3f} colour "
                        f"{res['color_mean_err'][0]:.3f}->{res['color_mean_err'][-1]:.3f} IoU "
                        f"{np.mean(res['temporal_iou']):.3f} seam {res['seam_ratio']:.2f} "
                        f"({time.time() - ts:.0f}s)"
                    )
    results = {
        "config": _config_dict(cfg),
        "rows": [asdict(r) for r in rows],
        "runs": runs,
        "controls": controls(data),
        "pretrain_curves": pretrain_curves,
        "timing": timing,
        "seconds": time.time() - t0,
        "cpu_seconds": time.process_time() - c0,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "model_switches": model_switches_available(),
    }
    write_drift_report(results, out)
    (out / "results.json").write_text(json.dumps(_rounded(results)))
    log(f"report: {out / 'README.md'} ({time.time() - t0:.0f}s total)")
    return results


def merge_drift(parts: list[str | Path], out_dir: str | Path) -> dict[str, Any]:
    """Join the results.json of drift runs that differ only in their seeds (one process per
    seed on a shared machine) into one report; times are summed and kept per part."""
    from generator.eval.drift_report import write_drift_report

    loaded = [json.loads((Path(p) / "results.json").read_text()) for p in parts]
    first = loaded[0]
    base = {k: v for k, v in first["config"].items() if k != "seeds"}
    for res, path in zip(loaded[1:], parts[1:]):
        cfg = {k: v for k, v in res["config"].items() if k != "seeds"}
        if cfg != base:
            diff = sorted(k for k in cfg if cfg.get(k) != base.get(k))
            raise ValueError(f"{path}: a different drift config ({', '.join(diff)})")
    merged = dict(first)
    merged["runs"] = {
        row: {
            mode: sorted(
                (r for res in loaded for r in res["runs"].get(row, {}).get(mode, [])),
                key=lambda r: r["seed"],
            )
            for mode in modes
        }
        for row, modes in first["runs"].items()
    }
    merged["config"] = dict(first["config"])
    merged["config"]["seeds"] = sorted(s for res in loaded for s in res["config"]["seeds"])
    merged["pretrain_curves"] = [c for res in loaded for c in res["pretrain_curves"]]
    merged["timing"] = {
        part: {k: v for res in loaded for k, v in res["timing"][part].items()}
        for part in ("train", "chains")
    }
    merged["seconds"] = sum(r["seconds"] for r in loaded)
    merged["cpu_seconds"] = sum(r["cpu_seconds"] for r in loaded)
    merged["parts"] = [
        {
            "dir": str(p),
            "seeds": r["config"]["seeds"],
            "seconds": r["seconds"],
            "cpu_seconds": r["cpu_seconds"],
        }
        for p, r in zip(parts, loaded)
    ]
    merged.pop("analysis", None)
    out = Path(out_dir)
    write_drift_report(merged, out)
    (out / "results.json").write_text(json.dumps(_rounded(merged)))
    return merged


def _took(t_wall: float, t_cpu: float) -> dict[str, float]:
    return {"wall": time.time() - t_wall, "cpu": time.process_time() - t_cpu}


def _rounded(obj: Any, digits: int = 5) -> Any:
    if isinstance(obj, float):
        return round(obj, digits) if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v, digits) for v in obj]
    return obj


def _config_dict(cfg: DriftConfig) -> dict[str, Any]:
    d = asdict(replace(cfg))
    d["world"] = asdict(cfg.world)
    return d
