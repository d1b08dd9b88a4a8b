"""The drift report (issue 20): curves per segment index, slopes, MDEs, paired verdicts.

Statistics (the unit is the seed: each seed is an independently trained model, and the rows
of a seed share its backbone, data and sampling noise):

- a curve point is the mean over chains of one seed, then mean ± SE over seeds;
- the slope per segment is each seed's OLS slope of its curve, mean and 95% t CI over seeds;
- "segment 12 vs segment 1" is paired per seed (same model, same chains): mean difference,
  95% t CI and the paired MDE ((t_0.975 + t_0.8) SD / sqrt(n)); the difference is *within the
  MDE* when its CI contains 0 and |mean| <= MDE;
- comparisons of modes of one row (same model) and of rows of one seed (same backbone) are
  paired the same way.
With one seed (the quick check) the CIs are not measurable and are reported as such.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["paired", "recommend", "slope_stats", "write_drift_report"]

KEYS = {
    "identity_err": "identity err.",
    "color_mean_err": "colour mean drift",
    "color_spread_err": "colour spread drift",
    "temporal_iou": "temporal IoU",
    "lip_corr": "lip corr.",
}


def _t(q: float, df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(q, df))


def paired(d: list[float] | np.ndarray) -> dict[str, Any]:
    """Mean, 95% t CI, paired MDE and verdict of per-seed differences `d`."""
    d = np.asarray(d, dtype=float)
    res: dict[str, Any] = {"n": len(d), "per_seed": d.round(5).tolist(), "mean": float(d.mean())}
    if len(d) < 2 or not np.isfinite(d).all():
        res.update(ci=[float("nan")] * 2, mde=float("nan"), verdict="not measurable (one seed)")
        return res
    sd = float(d.std(ddof=1))
    df = len(d) - 1
    half = _t(0.975, df) * sd / np.sqrt(len(d))
    mde = (_t(0.975, df) + _t(0.8, df)) * sd / np.sqrt(len(d))
    lo, hi = res["mean"] - half, res["mean"] + half
    res.update(sd=sd, ci=[lo, hi], mde=mde)
    if lo > 0:
        res["verdict"] = "larger (95% CI above 0)"
    elif hi < 0:
        res["verdict"] = "smaller (95% CI below 0)"
    elif abs(res["mean"]) <= mde:
        res["verdict"] = "within the MDE"
    else:
        res["verdict"] = "not detectable, but |mean| >= MDE"
    return res


def slope_stats(curves: list[list[float]]) -> dict[str, Any]:
    """Per-seed OLS slope per segment of each curve -> mean and 95% t CI over seeds."""
    slopes = []
    for c in curves:
        y = np.asarray(c, dtype=float)
        x = np.arange(1, len(y) + 1, dtype=float)
        slopes.append(float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()))
    return paired(slopes)


def _seg(runs: list[dict[str, Any]], key: str, i: int) -> np.ndarray:
    return np.array([r[key][i] for r in runs], dtype=float)


def _ms(v: np.ndarray, digits: int = 3) -> str:
    se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
    return f"{v.mean():.{digits}f} ± {se:.{digits}f}"


def _ci(p: dict[str, Any], digits: int = 4) -> str:
    lo, hi = p["ci"]
    if not np.isfinite(lo):
        return f"{p['mean']:+.{digits}f} [CI n/a, one seed]"
    return f"{p['mean']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _mde(p: dict[str, Any]) -> str:
    return f"{p['mde']:.4f}" if np.isfinite(p.get("mde", float("nan"))) else "n/a"


def drift_verdicts(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Segment S vs segment 1 (paired per seed) and the slope of one metric."""
    last = len(runs[0][key]) - 1
    return {
        "last_vs_first": paired(_seg(runs, key, last) - _seg(runs, key, 0)),
        "slope": slope_stats([r[key] for r in runs]),
    }


def seam_stats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Seam ratio (jump across a join / change inside a segment): mean, CI, verdict vs 1."""
    ratio = np.array([r["seam_ratio"] for r in runs], dtype=float)
    p = paired(ratio - 1.0)
    verdict = {
        "larger (95% CI above 0)": "larger than the within-segment change",
        "smaller (95% CI below 0)": "smaller than the within-segment change",
    }.get(p["verdict"], "no larger than the within-segment change (CI contains 1)")
    if p["n"] < 2:
        verdict = "no larger" if ratio.mean() <= 1 else "larger"
        verdict += " than the within-segment change (one seed, no CI)"
    return {"mean": float(ratio.mean()), "ci": [c + 1 for c in p["ci"]], "verdict": verdict}


def _pairs_by_seed(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str, i: int):
    sa = {r["seed"]: r[key][i] for r in a}
    sb = {r["seed"]: r[key][i] for r in b}
    seeds = sorted(set(sa) & set(sb))
    return paired([sa[s] - sb[s] for s in seeds])


def analyse(results: dict[str, Any]) -> dict[str, Any]:
    """Every verdict of the report, as data (also written to results.json)."""
    cfg = results["config"]
    main_pixels = f"pixels {cfg['main_shift']:g}"
    last = cfg["n_segments"] - 1
    out: dict[str, Any] = {"drift": {}, "seam": {}, "pixels_vs_latent": {}, "rows": {}}
    for row, modes in results["runs"].items():
        for mode, runs in modes.items():
            name = f"{row} | {mode}"
            out["drift"][name] = {k: drift_verdicts(runs, k) for k in KEYS}
            out["seam"][name] = seam_stats(runs)
        if "latent" in modes and main_pixels in modes:
            out["pixels_vs_latent"][row] = {
                k: _pairs_by_seed(modes[main_pixels], modes["latent"], k, last) for k in KEYS
            }
    runs = results["runs"]
    if "today" in runs:
        for mode in ("latent", main_pixels):
            for row in runs:
                if row == "today" or mode not in runs[row] or mode not in runs["today"]:
                    continue
                out["rows"][f"{row} - today | {mode}"] = {
                    k: _pairs_by_seed(runs[row][mode], runs["today"][mode], k, last) for k in KEYS
                }
        for mode in ("latent", main_pixels):
            anchored = f"{mode} +anchor"
            if anchored in runs["today"] and mode in runs["today"]:
                out["rows"][f"today: {anchored} - {mode}"] = {
                    k: _pairs_by_seed(runs["today"][anchored], runs["today"][mode], k, last)
                    for k in KEYS
                }
    if "+context" in runs:
        for mode in ("latent", main_pixels):
            for row in runs:
                if row in ("today", "+context") or mode not in runs[row]:
                    continue
                out["rows"][f"{row} - +context | {mode}"] = {
                    k: _pairs_by_seed(runs[row][mode], runs["+context"][mode], k, last)
                    for k in KEYS
                }
    base = "+context +sink +noise"
    if cfg.get("study") == "colour" and base in runs:
        for mode in ("latent", main_pixels, "latent +anchor"):
            for row in runs:
                if row == base or mode not in runs[row] or mode not in runs[base]:
                    continue
                out["rows"][f"{row} - {base} | {mode}"] = {
                    k: _pairs_by_seed(runs[row][mode], runs[base][mode], k, last) for k in KEYS
                }
        for row in runs:
            if "latent +anchor" in runs[row] and "latent" in runs[row]:
                out["rows"][f"{row}: latent +anchor - latent"] = {
                    k: _pairs_by_seed(runs[row]["latent +anchor"], runs[row]["latent"], k, last)
                    for k in KEYS
                }
    out["recommendation"] = recommend(results, out)
    return out


def _passes(verdicts: dict[str, Any], seam: dict[str, Any]) -> bool:
    ok = all(
        verdicts[k]["last_vs_first"]["verdict"] in ("within the MDE", "smaller (95% CI below 0)")
        for k in ("identity_err", "color_mean_err")
    )
    return ok and not seam["verdict"].startswith("larger")


def recommend(results: dict[str, Any], analysis: dict[str, Any]) -> dict[str, Any]:
    """The rule (fixed before the first full run): among the (row, mode) combinations whose
    identity error and colour mean drift at the last segment are within the MDE of (or below)
    segment 1 and whose seam is no larger than the within-segment change, the one with the
    lowest mean identity error at the last segment; if none passes, the lowest identity error
    overall (said so). Colour anchor modes count as combinations too."""
    last = results["config"]["n_segments"] - 1
    cands = []
    for row, modes in results["runs"].items():
        for mode, runs in modes.items():
            name = f"{row} | {mode}"
            ident = float(_seg(runs, "identity_err", last).mean())
            colour = float(_seg(runs, "color_mean_err", last).mean())
            ok = _passes(analysis["drift"][name], analysis["seam"][name])
            cands.append((not ok, ident, colour, name))
    if not cands:
        return {}
    cands.sort()
    best = cands[0]
    return {
        "combination": best[3],
        "passes_done_when": not best[0],
        "identity_err_last": best[1],
        "color_mean_err_last": best[2],
        "passing": [c[3] for c in cands if not c[0]],
    }


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------
def _plot(results: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("identity_err", "color_mean_err", "color_spread_err", "temporal_iou")
    cfg = results["config"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6))
    seg = np.arange(1, results["config"]["n_segments"] + 1)
    for ax, key in zip(axes, keys):
        for row, modes in results["runs"].items():
            for mode, runs in modes.items():
                if "+anchor" in mode and row != "today" and cfg.get("study") != "colour":
                    continue
                y = np.array([r[key] for r in runs], dtype=float)
                m = y.mean(0)
                se = y.std(0, ddof=1) / np.sqrt(len(y)) if len(y) > 1 else np.zeros_like(m)
                style = "-" if mode == "latent" else ("--" if "anchor" not in mode else ":")
                ax.errorbar(seg, m, yerr=se, ls=style, lw=1, capsize=2, label=f"{row} | {mode}")
        for name, ctrl in results["controls"].items():
            if key in ("identity_err", "color_mean_err") and name == "blind chain":
                continue  # off the scale; in the table
            ax.plot(seg, ctrl[key], color="k", lw=2, alpha=0.4, label=name)
        ax.set_title(KEYS[key])
        ax.set_xlabel("segment")
    axes[0].legend(fontsize=5, loc="upper left")
    fig.tight_layout()
    path = out / "drift_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _main_table(results: dict[str, Any], analysis: dict[str, Any]) -> str:
    last = results["config"]["n_segments"] - 1
    head = (
        f"| row | mode | identity seg 1 | identity seg {last + 1} | identity slope/seg [95% CI] "
        f"| colour seg 1 | colour seg {last + 1} | colour slope/seg [95% CI] | spread seg "
        f"{last + 1} | IoU (mean) | lip (mean) | seam ratio |\n|---|---|---:|---:|---:|---:|---:|"
        "---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for row, modes in results["runs"].items():
        for mode, runs in modes.items():
            name = f"{row} | {mode}"
            dv = analysis["drift"][name]
            iou = np.array([np.mean(r["temporal_iou"]) for r in runs])
            lip = np.array([np.mean(r["lip_corr"]) for r in runs])
            lines.append(
                f"| {row} | {mode} | {_ms(_seg(runs, 'identity_err', 0))} | "
                f"{_ms(_seg(runs, 'identity_err', last))} | {_ci(dv['identity_err']['slope'])} | "
                f"{_ms(_seg(runs, 'color_mean_err', 0))} | "
                f"{_ms(_seg(runs, 'color_mean_err', last))} | "
                f"{_ci(dv['color_mean_err']['slope'])} | "
                f"{_ms(_seg(runs, 'color_spread_err', last))} | {_ms(iou)} | {_ms(lip)} | "
                f"{analysis['seam'][name]['mean']:.2f} |"
            )
    for name, c in results["controls"].items():
        lines.append(
            f"| *{name}* | (no model) | {c['identity_err'][0]:.3f} | {c['identity_err'][last]:.3f} "
            f"|  | {c['color_mean_err'][0]:.3f} | {c['color_mean_err'][last]:.3f} |  | "
            f"{c['color_spread_err'][last]:.3f} | {np.mean(c['temporal_iou']):.3f} | "
            f"{np.mean(c['lip_corr']):.3f} | {c['seam_ratio']:.2f} |"
        )
    return "\n".join(lines)


def _verdict_lines(results: dict[str, Any], analysis: dict[str, Any]) -> str:
    last = results["config"]["n_segments"]
    lines = []
    for name, dv in analysis["drift"].items():
        parts = []
        for key in ("identity_err", "color_mean_err"):
            p = dv[key]["last_vs_first"]
            parts.append(
                f"{KEYS[key]} seg {last} - seg 1 {_ci(p)}, paired MDE {_mde(p)}: **{p['verdict']}**"
            )
        seam = analysis["seam"][name]
        lo, hi = seam["ci"]
        ci = f" [95% CI {lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else ""
        parts.append(f"seam ratio {seam['mean']:.2f}{ci}: {seam['verdict']}")
        lines.append(f"- **{name}**: " + "; ".join(parts) + ".")
    return "\n".join(lines)


def _pair_lines(groups: dict[str, dict[str, Any]], keys: tuple[str, ...]) -> str:
    lines = []
    for name, per in groups.items():
        parts = [f"{KEYS[k]} {_ci(per[k])} (MDE {_mde(per[k])}, {per[k]['verdict']})" for k in keys]
        lines.append(f"- **{name}**: " + "; ".join(parts) + ".")
    return "\n".join(lines) or "- (no pair measured)"


def _shift_table(results: dict[str, Any]) -> str:
    runs = results["runs"].get("today", {})
    last = results["config"]["n_segments"] - 1
    rows = ["| hand-off | identity seg 12 | colour seg 12 | colour slope/seg [95% CI] |"]
    rows.append("|---|---:|---:|---:|")
    names = ["latent"] + sorted(
        (m for m in runs if m.startswith("pixels") and "anchor" not in m),
        key=lambda m: float(m.split()[1]),
    )
    for m in names:
        if m not in runs:
            continue
        r = runs[m]
        sl = slope_stats([x["color_mean_err"] for x in r])
        rows.append(
            f"| {m} | {_ms(_seg(r, 'identity_err', last))} | "
            f"{_ms(_seg(r, 'color_mean_err', last))} | {_ci(sl)} |"
        )
    return "\n".join(rows).replace("seg 12", f"seg {last + 1}")


def _row_text(r: dict[str, Any]) -> str:
    text = (
        f"`{r['name']}` (reference_sink={r['reference_sink']}, context_latents="
        f"{r['context_latents']}, context_noise={r['context_noise']}"
    )
    for key in ("sink_gap", "context_shift"):  # added with the colour study
        if r.get(key):
            text += f", {key}={r[key]}"
    return text + ")"


def _shift_section(results: dict[str, Any]) -> str:
    if "today" not in results["runs"]:
        return ""
    return (
        "### Drift against the size of the pixel round trip's colour shift (row `today`)\n\n"
        f"{_shift_table(results)}\n\n"
    )


def _time_lines(results: dict[str, Any]) -> str:
    t = results["timing"]
    train_w = sum(v["wall"] for v in t["train"].values())
    train_c = sum(v["cpu"] for v in t["train"].values())
    chain_w = sum(v["wall"] for v in t["chains"].values())
    chain_c = sum(v["cpu"] for v in t["chains"].values())
    parts = results.get("parts")
    head = (
        f"Total: wall {results['seconds'] / 60:.1f} min, CPU {results['cpu_seconds'] / 60:.1f} "
        f"min of one thread ({results['threads']} thread(s) per process, "
        f"{results['cpu_count']} CPUs shared with other jobs)."
    )
    if parts:
        head += (
            f" Run as {len(parts)} processes side by side (one per seed); the longest took "
            f"{max(p['seconds'] for p in parts) / 60:.1f} min wall, the total above is summed."
        )
    for p in parts or []:
        head += (
            f"\n- part seeds {p['seeds']}: wall {p['seconds'] / 60:.1f} min, CPU "
            f"{p['cpu_seconds'] / 60:.1f} min"
        )
    per_row: dict[str, list[float]] = {}
    for k, v in t["train"].items():
        per_row.setdefault(k.rsplit("-", 1)[0], []).append(v["cpu"])
    rows = ", ".join(f"{k} {np.mean(v) / 60:.1f}" for k, v in per_row.items())
    head += f"\n- training CPU per seed, min: {rows}"
    return (
        f"{head}\n- training (backbones + rows): wall {train_w / 60:.1f} min, CPU "
        f"{train_c / 60:.1f} min\n- chains (sampling + metrics): wall {chain_w / 60:.1f} min, "
        f"CPU {chain_c / 60:.1f} min ({len(t['chains'])} row x mode x seed runs)"
    )


def write_drift_report(results: dict[str, Any], out: str | Path) -> Path:
    """README.md + drift_curves.png into `out`; `results["analysis"]` is filled in."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    analysis = analyse(results)
    results["analysis"] = analysis
    png = _plot(results, out)
    cfg, w = results["config"], results["config"]["world"]
    rec = analysis["recommendation"]
    quick = " (QUICK MODE: plumbing check only, the numbers mean nothing)" if cfg["quick"] else ""
    switches = (
        "The issue-20 model switches (`model.reference_sink`, `data.context_latents`, "
        "`train.context_noise`) are in the trainer"
        if results.get("model_switches")
        else "The trainer had no issue-20 model switches: only the `today` row ran"
    )
    rec_text = (
        f"**{rec['combination']}** "
        + (
            "(passes the issue's drift criteria: identity and colour at the last segment "
            "within the MDE of segment 1, seam no larger than the within-segment change)"
            if rec.get("passes_done_when")
            else "(NO combination passes the issue's drift criteria; this is only the lowest "
            "identity error at the last segment)"
        )
        + f"; passing combinations: {', '.join(rec.get('passing', [])) or 'none'}."
        if rec
        else "none measured."
    )
    n_seg = cfg["n_segments"]
    study_flag = f" --study {cfg['study']}" if cfg.get("study", "switches") != "switches" else ""
    text = f"""# Drift over a long talk: chained segments in the synthetic world{quick}

Chains of {n_seg} segments ({n_seg * w["num_gen_frames"] * w["frame_seconds"]:.0f} s at
{w["num_gen_frames"] * w["frame_seconds"]:g} s per segment), {cfg["n_chains"]} chains, seeds
{", ".join(map(str, cfg["seeds"]))} (one trained model per seed and row), rendered
autoregressively as the product renders a talk: each segment's clean leading latent frame is
the previous segment's last shown latent frame. Curve points: mean over chains per seed, then
mean ± SE over seeds; slopes and segment-{n_seg}-vs-1 differences are paired per seed with
95% t CIs and the paired MDE (`generator.eval.drift_report`). {switches}.

## Reading

- **Recommended default** (the rule fixed before the run, `drift_report.recommend`): {rec_text}
- The verdicts below are the issue's "Done when" checks per combination; a finding against
  expectations is reported as measured.

## Results

{_main_table(results, analysis)}

Identity err. = relative L2 of the identity channels' spatial pattern against the reference
frame (perfect chain = observation noise floor; blind chain = another talk's identity);
colour mean / spread drift = RMS over channels of the segment's per-channel mean / spatial SD
minus the truth's (truth = the segment rendered with the chain's identity and colour); seam
ratio = RMS change across a join / mean RMS change between frames inside a segment (the
perfect chain's ratio is the world's own).

![drift curves]({png.name})

### Segment {n_seg} vs segment 1, and the seams

{_verdict_lines(results, analysis)}

### Pixels (decoded-PNG) hand-off vs latents, same model, segment {n_seg}

{_pair_lines(analysis["pixels_vs_latent"], ("identity_err", "color_mean_err", "temporal_iou"))}

{_shift_section(results)}### Model switches and the colour anchor (paired per seed, segment {n_seg})

{_pair_lines(analysis["rows"], ("identity_err", "color_mean_err", "temporal_iou", "lip_corr"))}

## Time

{_time_lines(results)}

## Setup (frozen before the first full run; not tuned on results)

- World: the synthetic Action Bench world (`generator.eval.world`) plus a per-clip colour
  offset per channel, SD {w["color_std"]} (`drift_world_config`; the ablation/attribution
  worlds are unchanged). {w["num_gen_frames"]} generated latent frames per segment + 1 clean
  leading frame, {w["channels"]} channels on a {w["height"]}x{w["width"]} grid, observation
  noise {w["observation_noise"]}. A chain = one identity and colour, a new prompt (training
  distribution of actions and layouts), phases and audio per segment.
- Models: the tiny ActAvatar transformer (`bench.MODEL_OVERRIDES`) with PACA and time-aware
  phases; per seed a backbone ({cfg["pretrain_steps"]} steps, brief captions, no audio) and
  per row {cfg["steps"]} stage-2 steps of the real `generator.train.Trainer` (batch
  {cfg["batch_size"]}, lr {cfg["lr"]}, {cfg["n_train"]} training clips). Rows:
  {"; ".join(_row_text(r) for r in results["rows"])}.
- Sampling: {cfg["sample_steps"]} Euler steps (`generator.eval.sampling.sample_clips`), no
  guidance; the initial noise depends only on (seed, segment), so modes and rows are paired.
  With the sink the layout is the pipeline's `[reference | context | generated]`.
- Hand-off: `latent` = the last shown latent frame itself. `pixels` = the decoded-PNG round
  trip modelled per channel: +-{cfg["pixel_range"]} latent units mapped to 8-bit levels
  0..255 (1 level = {2 * cfg["pixel_range"] / 255:.4f} latent units), plus a colour shift of
  `shift` levels per round trip along a fixed +-1 per-channel pattern, rounded and clipped,
  mapped back. Sizes {", ".join(f"{s:g}" for s in cfg["shifts"])} levels per join (the
  model rows at {cfg["main_shift"]:g}). The figure is an assumption, not a measurement of the
  Wan VAE: users of the open peers report correcting the accumulated tint by "about 2-7" hue
  steps after a handful of windows (ali-vilab/VACE#99) and a visible shift at every join
  (deepbeepmeep/Wan2GP#2132); 0.5-2 levels per join brackets 6-24 levels over {n_seg} joins.
- Colour anchor: after each segment, each channel's mean over the segment's shown frames is
  moved to the reference frame's mean (the mean term of `generator.conditioning.color_match`
  in latent space; its spread term is left out because body and mouth channels change their
  spread with action and speech); the anchored frames are shown and handed over.
- Controls: the perfect chain (each segment = its truth) and the blind chain (segment k of
  chain i = segment k of another chain), no model.

Reproduce: `avatar-flow eval drift{study_flag} --out DIR` (full; `--seeds N` per process and `--merge`
to join parts) or `--quick` (plumbing only). Raw numbers per seed: `results.json`.
"""
    path = out / "README.md"
    path.write_text(text)
    return path
