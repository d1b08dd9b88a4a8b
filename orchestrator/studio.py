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
        from flows.settings import get_settings

        self.settings = get_settings(refresh=True)

    def produce(self, script: str | Path, out: str | Path | None = None, *, renderer: str = "animatic",
                planner: str = "rule", voice: str | None = None, checkpoint: str | None = None,
                force: bool = False) -> JobResult:
        """Produce one video; raises `flows.errors.InputError` on bad input."""
        from flows.produce import produce_video

        report = produce_video(script=str(script), out=str(out) if out else None, renderer=renderer,
                               planner=planner, voice=voice, checkpoint=checkpoint, force=force)
        return JobResult(script=str(script), ok=True, job_id=report["job_id"],
                         out_dir=Path(report["out_dir"]),
                         outputs={k: Path(v) for k, v in report["outputs"].items()},
                         segments=report["segments"], segments_rendered=report["segments_rendered"],
                         duration=report["duration"], report=report)

    def produce_batch(self, scripts: list[str | Path | dict], *, out_root: str | Path | None = None,
                      **options: Any) -> list[JobResult]:
        """Produce several videos; one failing script does not stop the others.

        Items are script paths or dicts with `script` and optional `out` and per-item options.
        """
        results = []
        for item in scripts:
            spec = dict(item) if isinstance(item, dict) else {"script": item}
            script = spec.pop("script")
            out = spec.pop("out", None) or (Path(out_root) / Path(script).stem if out_root else None)
            try:
                results.append(self.produce(script, out, **{**options, **spec}))
            except Exception as exc:
                results.append(JobResult(script=str(script), ok=False, error=f"{type(exc).__name__}: {exc}"))
        return results

    def jobs(self, limit: int = 20) -> list:
        from orchestrator.queries import list_jobs

        return list_jobs(limit=limit)

    def job(self, job_id: str) -> dict | None:
        from orchestrator.queries import job_details

        return job_details(job_id)
