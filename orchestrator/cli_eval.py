"""`avatar-flow eval`: measure the method.

- `eval synthetic [--quick] --out DIR`: the synthetic Action Bench (tiny ActAvatar models
  trained on CPU with the real trainer; the paper's ablation rows) -> DIR/README.md.
- `eval drift [--quick] [--study switches|colour] --out DIR`: issue 20's drift study (chains
  of segments, latent vs decoded-PNG hand-off, colour anchor, identity sink, noised context;
  `colour`: the fixes of the colour step at the first join) -> DIR/README.md.
- `eval judge VIDEO --plan plan.json`: the paper's MLLM-judge protocol on a real video
  (any OpenAI-compatible vision endpoint from the environment), optional SyncNet scores.

Heavy imports happen inside the commands so `--help` answers at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.runtime.errors import InputError
from orchestrator.console import console, one_line_errors, out

eval_app = typer.Typer(
    help="Measure the method: synthetic ablation bench, drift study, MLLM judge.",
    no_args_is_help=True,
)


@eval_app.command("synthetic")
def synthetic(
    out_dir: Annotated[Path, typer.Option("--out", help="Report folder.")],
    quick: Annotated[bool, typer.Option(help="Plumbing check only (CI): tiny budgets.")] = False,
    seeds: Annotated[
        str | None, typer.Option(help="Comma-separated seeds (default 0,1,2).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps per row.")] = None,
    backend: Annotated[str, typer.Option(help="trainer (generator.train) or loop.")] = "trainer",
    suite: Annotated[
        str,
        typer.Option(
            help="ablation (the paper's rows + controls) or attribution (which timing element "
            "carries the gain: rows, oracle, budget and jitter curves)."
        ),
    ] = "ablation",
    rows: Annotated[
        str | None, typer.Option(help="Only these rows (comma-separated names).")
    ] = None,
    budget: Annotated[
        str | None, typer.Option(help="attribution: budget multiples, e.g. 3 or 3,9 ('' none).")
    ] = None,
    merge: Annotated[
        str | None,
        typer.Option(help="Merge these report folders (comma-separated; e.g. one per seed)."),
    ] = None,
) -> None:
    """Train tiny ActAvatar models with the real trainer on the synthetic world; write the report."""
    from dataclasses import replace

    from generator.eval.bench import BenchConfig, merge_runs, run_bench

    if merge:
        with one_line_errors():
            parts = [Path(p.strip()) for p in merge.split(",") if p.strip()]
            for p in parts:
                if not (p / "results.json").is_file():
                    raise InputError(f"{p}: no results.json", field="merge")
            try:
                merge_runs(parts, out_dir)
            except ValueError as exc:
                raise InputError(str(exc), field="merge") from None
        out.print(f"report: {out_dir / 'README.md'}", highlight=False)
        return
    if suite not in ("ablation", "attribution"):
        with one_line_errors():
            raise InputError(f"unknown suite {suite!r} (ablation or attribution)", field="suite")
    if suite == "attribution":
        cfg = BenchConfig.quick_attribution() if quick else BenchConfig.attribution()
    else:
        cfg = BenchConfig.quick_config() if quick else BenchConfig.full()
    if rows:
        cfg = replace(cfg, rows=tuple(r.strip() for r in rows.split(",") if r.strip()))
    if budget is not None:
        with one_line_errors():
            try:
                mults = tuple(int(b) for b in budget.split(",") if b.strip())
            except ValueError:
                raise InputError(
                    f"--budget takes whole multiples like 3 or 3,9, got {budget!r}", field="budget"
                ) from None
            if any(m < 1 for m in mults):
                raise InputError(
                    f"--budget multiples must be at least 1, got {budget!r}", field="budget"
                )
        cfg = replace(cfg, budget_mults=mults)
    with one_line_errors():
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError(f"--out must be a folder, got the file {str(out_dir)!r}", field="out")
        if seeds:
            try:
                cfg = replace(cfg, seeds=tuple(int(s) for s in seeds.split(",") if s.strip()))
            except ValueError:
                raise InputError(
                    f"--seeds takes whole numbers like 0,1,2, got {seeds!r}", field="seeds"
                ) from None
        if steps is not None:
            if steps < 1:
                raise InputError(f"--steps must be at least 1, got {steps}", field="steps")
            cfg = replace(cfg, steps=steps)
        if backend not in ("trainer", "loop"):
            raise InputError(f"unknown backend {backend!r} (trainer or loop)", field="backend")
        cfg = replace(cfg, backend=backend)
        run_bench(cfg, out_dir, log=lambda m: console.print(m, highlight=False))
    out.print(f"report: {out_dir / 'README.md'}", highlight=False)


@eval_app.command("drift")
def drift(
    out_dir: Annotated[Path, typer.Option("--out", help="Report folder.")],
    quick: Annotated[bool, typer.Option(help="Plumbing check only (CI): tiny budgets.")] = False,
    seeds: Annotated[
        str | None, typer.Option(help="Comma-separated seeds (default 0,1,2).")
    ] = None,
    rows: Annotated[
        str | None,
        typer.Option(help="Only these model rows (comma-separated; default: all of them)."),
    ] = None,
    merge: Annotated[
        str | None,
        typer.Option(help="Merge these report folders (comma-separated; e.g. one per seed)."),
    ] = None,
    study: Annotated[
        str,
        typer.Option(
            help="switches (the model switches: sink, context, noise) or colour (fixes of the "
            "colour step at the first join: sink gap, shifted context, the anchor on every row)."
        ),
    ] = "switches",
) -> None:
    """Drift over a long talk (issue 20): chained segments, drift per segment -> DIR/README.md.

    Latent vs decoded-PNG hand-off, colour anchor, identity sink and noised context; 3 seeds,
    64 chains of 12 segments, paired verdicts. One process per seed on a shared machine
    (`--seeds N`), then `--merge` the folders.
    """
    from dataclasses import replace

    from generator.eval.drift import STUDIES, DriftConfig, merge_drift, run_drift

    with one_line_errors():
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError(f"--out must be a folder, got the file {str(out_dir)!r}", field="out")
        if merge:
            parts = [Path(p.strip()) for p in merge.split(",") if p.strip()]
            for p in parts:
                if not (p / "results.json").is_file():
                    raise InputError(f"{p}: no results.json", field="merge")
            try:
                merge_drift(parts, out_dir)
            except ValueError as exc:
                raise InputError(str(exc), field="merge") from None
            out.print(f"report: {out_dir / 'README.md'}", highlight=False)
            return
        if study not in STUDIES:
            raise InputError(
                f"--study: unknown study {study!r} (known: {', '.join(STUDIES)})", field="study"
            )
        cfg = DriftConfig.quick_config(study) if quick else DriftConfig.full(study)
        if seeds:
            try:
                cfg = replace(cfg, seeds=tuple(int(s) for s in seeds.split(",") if s.strip()))
            except ValueError:
                raise InputError(
                    f"--seeds takes whole numbers like 0,1,2, got {seeds!r}", field="seeds"
                ) from None
        if rows is not None:
            names = tuple(r.strip() for r in rows.split(",") if r.strip())
            known = [r.name for r in STUDIES[study]]
            bad = [n for n in names if n not in known]
            if bad or not names:
                raise InputError(
                    f"--rows: unknown row {bad[0] if bad else rows!r} (known: {', '.join(known)})",
                    field="rows",
                )
            cfg = replace(cfg, rows=names)
        run_drift(cfg, out_dir, log=lambda m: console.print(m, highlight=False))
    out.print(f"report: {out_dir / 'README.md'}", highlight=False)


@eval_app.command("judge")
def judge(
    video: Annotated[Path, typer.Argument(help="The video to judge (MP4).")],
    plan: Annotated[Path, typer.Option("--plan", help="plan.json with the phase windows.")],
    runs: Annotated[int, typer.Option(help="Judge runs per phase, averaged (paper: 5).")] = 5,
    frames: Annotated[int, typer.Option(help="Frames sampled inside each window.")] = 4,
    syncnet: Annotated[
        Path | None, typer.Option(help="SyncNet checkpoint (syncnet_v2.model).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Override AVATAR_FLOW_LLM_MODEL.")] = None,
    report: Annotated[
        Path | None, typer.Option("--out", help="Write the JSON report here.")
    ] = None,
) -> None:
    """Score every phase with a vision MLLM (AO, AA, TC, AQ, HC), 5 runs averaged."""
    from flows.evaluation.judge import check_inputs, judge_video
    from planners.mllm_settings import MLLMSettings

    with one_line_errors():
        check_inputs(video, plan, runs=runs, frames=frames, syncnet=syncnet)
        if report is not None and report.is_dir():
            raise InputError(
                f"--out is the report file, got the folder {str(report)!r}", field="out"
            )
        settings = MLLMSettings(**({"model": model} if model else {}))
        result = judge_video(
            video,
            plan,
            settings=settings,
            runs=runs,
            frames_per_phase=frames,
            syncnet=syncnet,
            log=lambda m: console.print(m, highlight=False),
        )
    data = result.model_dump()
    from flows.evaluation.judge import store_with_job
    from flows.runtime.settings import get_settings

    job_id = store_with_job(video, data, get_settings().db_url)
    if job_id:
        out.print(
            f"stored with job {job_id}: {video.resolve().with_name('judge.json')}", highlight=False
        )
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(data, indent=1))
    s = result.summary
    out.print(
        f"H@S {s['H@S']:.3f}  AA {s['AA']:.2f}  TC {s['TC']:.2f}  AQ {s['AQ']:.2f}  "
        f"HC {s['HC']:.2f}  ({len(result.phases)} phases x {runs} runs)"
    )
    if result.sync:
        out.print(f"Sync-C {result.sync['Sync-C']:.3f}  Sync-D {result.sync['Sync-D']:.3f}")
    else:
        out.print(result.sync_note, highlight=False)
