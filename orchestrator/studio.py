"""The Python SDK: `Studio().produce("script.md")` returns the finished job."""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class JobResult:
    """A finished (or failed) job: its id, output folder and output paths."""

    script: str
    ok: bool
    job_id: str | None = None
    out_dir: Path | None = None
    outputs: dict[str, Path] = field(default_factory=dict)
    segments: int = 0
    segments_rendered: int = 0
    duration: float | None = None
    error: str | None = None
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def video(self) -> Path | None:
        return self.outputs.get("video")


class Studio:
    """Drive the pipeline from Python.

    Settings come from the environment (`AVATAR_FLOW_HOME`, `AVATAR_FLOW_DATABASE_URL`, ...);
    `home`/`database_url` override them for this process.
    """

    def __init__(self, home: str | Path | None = None, database_url: str | None = None) -> None:
        if home is not None:
            os.environ["AVATAR_FLOW_HOME"] = str(Path(home).resolve())
        if database_url is not None:
            os.environ["AVATAR_FLOW_DATABASE_URL"] = database_url
        from flows.runtime.settings import get_settings

        self.settings = get_settings(refresh=True)

    def produce(
        self,
        script: str | Path,
        out: str | Path | None = None,
        *,
        renderer: str = "animatic",
        planner: str = "rule",
        voice: str | None = None,
        checkpoint: str | Path | None = None,
        segment_seconds: float | None = None,
        steps: int | None = None,
        continuity: int = 1,
        continuity_mode: str | None = None,
        color_anchor: bool = False,
        fast: bool = False,
        solver: str | None = None,
        guidance_interval: str | None = None,
        step_cache: bool = False,
        force: bool = False,
        webhook: str | None = None,
        plan: str | Path | None = None,
        replan: bool = False,
        strict: bool = False,
        variables: dict[str, str] | None = None,
        brand: str | Path | None = None,
        music: str | Path | None = None,
        music_volume: float = -8.0,
        loudness: str = "web",
        burn_captions: str = "off",
        chapters: bool = True,
    ) -> JobResult:
        """Produce one video; raises on failure (`flows.runtime.errors.InputError` on bad input),
        and `flows.runtime.errors.failure(exc)` is the one line and exit code the CLI gives it.
        The keywords are the job options contract's fields (`flows.video.options.JobOptions`,
        where each is described)."""
        from flows.video.options import JobOptions
        from flows.video.produce import produce_video

        options = JobOptions.parse(
            out=str(Path(out).resolve()) if out else None,
            renderer=renderer,
            planner=planner,
            voice=voice,
            checkpoint=str(checkpoint) if checkpoint else None,
            segment_seconds=segment_seconds,
            steps=steps,
            continuity=continuity,
            continuity_mode=continuity_mode,
            color_anchor=color_anchor,
            fast=fast,
            solver=solver,
            guidance_interval=guidance_interval,
            step_cache=step_cache,
            force=force,
            webhook=webhook,
            plan=str(Path(plan).resolve()) if plan else None,
            replan=replan,
            strict=strict,
            variables=variables,
            brand=str(Path(brand).resolve()) if brand else None,
            music=str(Path(music).resolve()) if music else None,
            music_volume=music_volume,
            loudness=loudness,
            burn_captions=burn_captions,
            chapters=chapters,
        )
        report = produce_video(script=str(script), options=options)
        return JobResult(
            script=str(script),
            ok=True,
            job_id=report["job_id"],
            out_dir=Path(report["out_dir"]),
            outputs={k: Path(v) for k, v in report["outputs"].items()},
            segments=report["segments"],
            segments_rendered=report["segments_rendered"],
            duration=report["duration"],
            report=report,
        )

    def produce_batch(
        self,
        rows: list[str | Path | dict],
        *,
        out_root: str | Path | None = None,
        concurrency: int = 1,
        template: str | Path | None = None,
        webhook: str | None = None,
        **options: Any,
    ) -> list[JobResult]:
        """Produce several videos through the `produce-batch` flow; one failure does not stop
        the others, and rows that are already done are skipped.

        Rows are script paths, or dicts with `script` (and optional `out`, `id`, per-row
        options), or dicts of template variables for `template` (`{name}` placeholders).
        Up to `concurrency` rows run at once. `options` are job options for every row
        (`flows.video.options.JobOptions` fields but `out`). Returns one JobResult per row, in
        order (`report["status"]` is done, skipped or failed; a failed row's `error` is its
        `flows.runtime.errors.failure` line, as the CLI and the job record write it).
        """
        from flows.video.batch import produce_batch
        from flows.video.options import JobOptions
        from flows.video.produce import OUTPUT_NAMES

        items = [dict(r) if isinstance(r, dict) else {"script": str(r)} for r in rows]
        for item in items:
            if "script" in item:
                item["script"] = str(Path(item["script"]).resolve())
        report = produce_batch(
            rows=items,
            template=str(Path(template).resolve()) if template else None,
            out_root=str(out_root) if out_root else None,
            concurrency=concurrency,
            options=JobOptions.parse(**options),
            webhook=webhook,
        )
        results = []
        for r in report["rows"]:
            ok = r["status"] in ("done", "skipped")
            out_dir = Path(r["out_dir"]) if r.get("out_dir") else None
            outputs = {}
            if ok and out_dir is not None:
                outputs = {k: out_dir / v for k, v in OUTPUT_NAMES.items()}
            results.append(
                JobResult(
                    script=r.get("script") or r["id"],
                    ok=ok,
                    job_id=r.get("job_id"),
                    out_dir=out_dir,
                    outputs=outputs,
                    segments=r.get("segments") or 0,
                    segments_rendered=r.get("segments_rendered") or 0,
                    duration=r.get("duration"),
                    error=r.get("error"),
                    report=r,
                )
            )
        return results

    def jobs(self, limit: int = 20) -> list:
        from orchestrator.queries import list_jobs

        return list_jobs(limit=limit)

    def job(self, job_id: str) -> dict | None:
        from orchestrator.queries import job_details

        return job_details(job_id)
