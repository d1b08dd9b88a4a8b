"""The review app: a FastAPI service for one job and a static page in plain JavaScript.

Routes (JSON unless said otherwise):

    GET  /                      the page            GET /static/{name}  its script and style
    GET  /media/{name}          the job's files (SERVED_FILES only; byte ranges for seeking)
    GET  /api/job               words, segments, latest plan version, options
    POST /api/validate          an edit -> per-row errors and the segments it touches
    POST /api/save              an edit -> a new plan version (409 when started from a stale one)
    GET  /api/versions[/{n}]    every version with who/when/diff; one version's plan
    POST /api/preview           re-render a version with the animatic (in this process)
    POST /api/finish            preview the finishing (brand, music, loudness, captions) on the
                                animatic: only finishing runs, every segment is reused
    POST /api/render            final render (Prefect deployment when a server is configured)
    POST /api/propose           ask the MLLM planner for a proposal (whole job or one phase)
    GET  /api/runs/{id}         progress and result of a preview, render or proposal
"""

import getpass
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field, field_validator
from starlette.middleware.trustedhost import TrustedHostMiddleware

from flows.runtime.errors import InputError
from flows.video.renderers import get_renderer_spec, preview_renderer, renderer_names
from orchestrator.review import proposals, runs
from orchestrator.review.editing import check_edit, edit_to_data, segment_specs
from orchestrator.review.job import FINISH_PREVIEW_DIR, ReviewJob
from planners.schema import DEFAULT_ACTION_VOCABULARY, Plan
from storage import atomic_write_text
from storage.plan_versions import (
    StaleVersion,
    add_plan_version,
    get_plan_version,
    list_plan_versions,
)

STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"review.js": "text/javascript", "review.css": "text/css"}
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


class PhaseRow(BaseModel):
    action: str = ""
    first_word: int | None = None
    last_word: int | None = None


class Edit(BaseModel):
    base: dict[str, str] = Field(default_factory=dict)
    phases: list[PhaseRow] = Field(default_factory=list)


class SaveRequest(Edit):
    parent: int | None
    author: str = ""
    note: str = ""


class PreviewRequest(BaseModel):
    version: int


class Finishing(BaseModel):
    """The finishing panel: the job options finishing reads (flows/video/finish)."""

    brand: str | None = None
    music: str | None = None
    music_volume: float = -8.0
    loudness: str = "web"
    burn_captions: str = "off"
    chapters: bool = True


class FinishRequest(Finishing):
    version: int


class RenderRequest(BaseModel):
    version: int
    renderer: str = "actavatar"
    checkpoint: str | None = None
    finishing: Finishing | None = None

    @field_validator("renderer")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in renderer_names():
            raise ValueError(f"unknown renderer '{v}' (one of: {', '.join(renderer_names())})")
        return v


class ProposeRequest(Edit):
    phase: int | None = None


def _version_json(v) -> dict[str, Any]:
    return {
        "number": v.number,
        "parent": v.parent,
        "source": v.source,
        "author": v.author,
        "note": v.note,
        "created_at": v.created_at.isoformat(),
        "sha256": v.sha256,
        "diff": v.diff,
        "phases": len(v.plan.get("phases", [])),
    }


def create_app(job: ReviewJob, *, allowed_hosts: list[str] | None = None) -> FastAPI:
    """The app for `job`. `allowed_hosts` guards against DNS rebinding (Host header check)."""
    app = FastAPI(title=f"avatar-flow review: {job.title}", docs_url=None, redoc_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or LOOPBACK_HOSTS)
    manager = runs.RunManager()
    app.state.job, app.state.runs = job, manager
    try:
        default_author = getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        default_author = ""
    job.current_plan()  # the job's own plan.json is version 1 from the start

    @app.middleware("http")
    async def same_origin_writes(request: Request, call_next):
        """Writes only from this page: a foreign site in the same browser cannot POST here."""
        origin = request.headers.get("origin")
        foreign = origin and urlsplit(origin).netloc != request.headers.get("host")
        if request.method not in ("GET", "HEAD") and foreign:
            return JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
        return await call_next(request)

    def parent_plan(number: int | None) -> dict[str, Any]:
        if number is None:
            return job.current_plan()[0]
        v = get_plan_version(job.db, job.job_id, number)
        if v is None:
            raise HTTPException(404, f"no plan version {number}")
        return v.plan

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}")
    def static(name: str) -> FileResponse:
        if name not in STATIC_FILES:
            raise HTTPException(404, "not found")
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name])

    @app.get("/media/{name:path}")
    def media(name: str) -> FileResponse:
        path = job.served_path(name)
        if path is None:
            raise HTTPException(404, "not a file of this job")
        return FileResponse(path, headers={"Cache-Control": "no-cache"})

    @app.get("/api/job")
    def job_info() -> dict[str, Any]:
        plan, number = job.current_plan()
        version = get_plan_version(job.db, job.job_id, number)
        specs = segment_specs(job, Plan.model_validate(plan))
        video = job.served_path("video.mp4")
        return {
            "job": job.job_row(),
            "title": job.title,
            "duration": job.transcript.duration,
            "fps": job.fps,
            "words": [w.model_dump(mode="json") for w in job.words],
            "cues": [c.model_dump() for c in job.request.cues],
            "constraints": job.request.constraints.model_dump(mode="json"),
            "vocabulary": list(DEFAULT_ACTION_VOCABULARY),
            "segments": [
                {"index": s["index"], "start": s["start"], "end": s["end"]} for s in specs
            ],
            "segment_rows": job.segment_rows(),
            "plan": plan,
            "version": _version_json(version),
            "video": f"/media/video.mp4?v={int(video.stat().st_mtime_ns) if video else 0}",
            "author": default_author,
            "llm_configured": proposals.llm_configured(),
            "prefect_server": runs.prefect_server_configured(),
            "renderer": job.renderer,
            "renderers": list(renderer_names()),  # the final render's choices, plugins included
            "checkpoint": job.options.get("checkpoint"),
            "final_video": "/media/final/video.mp4" if job.served_path("final/video.mp4") else None,
            "finishing": {
                k: job.options.get(k, v.default) for k, v in Finishing.model_fields.items()
            },
        }

    @app.post("/api/validate")
    def validate(edit: Edit, parent: int | None = None) -> dict[str, Any]:
        return check_edit(job, edit.model_dump(), parent_plan(parent))

    @app.post("/api/save")
    def save(req: SaveRequest):
        base = parent_plan(req.parent)
        checked = check_edit(job, req.model_dump(), base)
        if checked["errors"]:
            return JSONResponse(
                {"detail": "the plan has errors; fix them before saving", **checked},
                status_code=422,
            )
        plan = checked["plan"]
        try:
            v, created = add_plan_version(
                job.db,
                job.job_id,
                plan,
                parent=req.parent,
                author=(req.author or default_author)[:80],
                note=req.note[:500],
                source="review",
            )
        except StaleVersion as exc:
            return JSONResponse({"detail": str(exc), "latest": exc.latest}, 409)
        path = job.version_file(v.number)
        if not path.is_file():
            atomic_write_text(path, json.dumps(v.plan, indent=2) + "\n")
        return {"version": _version_json(v), "created": created, "affected": checked["affected"]}

    @app.get("/api/versions")
    def versions() -> list[dict[str, Any]]:
        job.current_plan()  # the job's own plan is version 1
        return [_version_json(v) for v in reversed(list_plan_versions(job.db, job.job_id))]

    @app.get("/api/versions/{number}")
    def version(number: int) -> dict[str, Any]:
        v = get_plan_version(job.db, job.job_id, number)
        if v is None:
            raise HTTPException(404, f"no plan version {number}")
        return {**_version_json(v), "plan": v.plan}

    def version_path(number: int) -> Path:
        v = get_plan_version(job.db, job.job_id, number)
        if v is None:
            raise HTTPException(404, f"no plan version {number}")
        path = job.version_file(number)
        if not path.is_file():
            atomic_write_text(path, json.dumps(v.plan, indent=2) + "\n")
        return path

    def start(run: runs.Run, work) -> dict[str, Any]:
        try:
            return manager.start(run, work).to_json()
        except runs.Busy as exc:
            raise HTTPException(409, str(exc)) from exc

    @app.post("/api/preview", status_code=202)
    def preview(req: PreviewRequest) -> dict[str, Any]:
        path = version_path(req.version)
        # A preview renderer's job is previewed in place; any other's in preview/ beside it.
        preview = preview_renderer()
        out = job.out_dir if get_renderer_spec(job.renderer).preview else job.out_dir / "preview"
        params = runs.flow_parameters(
            job, out=str(out), renderer=preview, plan=str(path), webhook=None
        )
        run = runs.Run(kind="preview", version=req.version, out_dir=str(out))
        return start(run, lambda r: runs.run_flow_locally(r, job, params))

    def parameters(**overrides: Any) -> dict[str, Any]:
        try:
            return runs.flow_parameters(job, **overrides)
        except InputError as exc:  # a bad finishing value from the panel
            raise HTTPException(422, str(exc)) from None

    @app.post("/api/finish", status_code=202)
    def finish(req: FinishRequest) -> dict[str, Any]:
        path = version_path(req.version)
        out = job.out_dir / FINISH_PREVIEW_DIR
        params = parameters(
            out=str(out),
            renderer="animatic",
            plan=str(path),
            webhook=None,
            **req.model_dump(exclude={"version"}),
        )
        run = runs.Run(kind="finish", version=req.version, out_dir=str(out))
        return start(run, lambda r: runs.run_flow_locally(r, job, params))

    @app.post("/api/render", status_code=202)
    def render(req: RenderRequest) -> dict[str, Any]:
        path = version_path(req.version)
        out = runs.final_dir(job)
        params = parameters(
            out=str(out),
            renderer=req.renderer,
            checkpoint=req.checkpoint or job.options.get("checkpoint"),
            plan=str(path),
            **(req.finishing.model_dump() if req.finishing else {}),
        )
        run = runs.Run(kind="render", version=req.version, out_dir=str(out))
        remote = runs.prefect_server_configured()
        work = runs.run_flow_deployment if remote else runs.run_flow_locally
        return start(run, lambda r: work(r, job, params))

    @app.post("/api/propose", status_code=202)
    def propose(req: ProposeRequest, parent: int | None = None) -> dict[str, Any]:
        if not proposals.llm_configured():
            raise HTTPException(
                409,
                "no MLLM planner is configured: set AVATAR_FLOW_LLM_BASE_URL (and "
                "AVATAR_FLOW_LLM_MODEL, OPENAI_API_KEY if the server needs them)",
            )
        current = edit_to_data(req.model_dump(), parent_plan(parent))
        run = runs.Run(kind="propose", version=parent)
        return start(run, lambda r: proposals.propose(job, current, req.phase))

    @app.get("/api/runs/{run_id}")
    def run_state(run_id: str) -> dict[str, Any]:
        run = manager.get(run_id)
        if run is None:
            raise HTTPException(404, "no such run")
        return run.to_json()

    return app
