"""The cached Prefect tasks of a video job: speech, words, plan, render-segment.

Every task's cache key is a content hash of its inputs (never a run id) and its result is a small
JSON record (paths, hashes), so re-running a finished job renders nothing and re-running an
interrupted one renders only the missing segments. An InputError raised inside a task is never
retried: bad input stays bad.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

import planners
from flows.runtime import gpu, progress
from flows.runtime.errors import DiskFull, InputError, disk_full_names
from flows.runtime.results import step_cache_storage
from flows.runtime.settings import get_settings
from flows.video.inputs import PIPELINE_VERSION
from flows.video.media import encode_frames
from flows.video.multigpu import render_parallel
from flows.video.render import (
    anchor_colors,
    get_renderer,
    request_from_job,
    save_tail,
    save_tail_latents,
)
from flows.video.render_job import RenderJob
from flows.video.renderers import RenderSetup, get_renderer_spec
from flows.video.segments import SegmentSpec
from flows.video.speech import prepare_speech, read_wav
from flows.video.words import transcribe
from planners.schema import PlanRequest
from storage import AssetStore, sha256_file


def content_key(*parts: Any) -> str:
    """Stable hash of JSON-able parts: the cache key of a step."""
    blob = json.dumps([PIPELINE_VERSION, *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def _cache_key(ctx, params: dict[str, Any]) -> str:
    return f"{ctx.task.name}-{params['key']}"


def retry_unless_input_error(task, task_run, state) -> bool:
    """Retry transient failures (OOM, I/O), never bad input nor a full disk."""
    try:
        state.result()
    except (InputError, DiskFull):
        return False
    except Exception:
        return True
    return True


CACHED = {
    "cache_key_fn": _cache_key,
    "result_serializer": "json",
    "persist_result": True,
    "result_storage": step_cache_storage(),
}


def run_cached_state(step, check, **kwargs) -> Any:
    """Run a cached step and return its final state; if the cached record points at files that
    are gone (`check(result)` is false), run it again with the cache refreshed."""
    state = step(**kwargs, return_state=True)
    if not check(state.result()):
        state = step.with_options(refresh_cache=True)(**kwargs, return_state=True)
    return state


def intact(path_key: str, sha_key: str = "sha256"):
    """A cached record's check: its file is there with the sha256 recorded when it was made.
    A file truncated or altered since (a full disk, a bad copy, an edit) is made again, never
    used: a segment is re-rendered instead of stitched."""

    def check(record: dict) -> bool:
        path = Path(record[path_key])
        return path.is_file() and sha256_file(path) == record[sha_key]

    return check


def run_cached(step, check, **kwargs) -> Any:
    """`run_cached_state`'s result."""
    return run_cached_state(step, check, **kwargs).result()


@task(name="speech", **CACHED, retries=1, retry_condition_fn=retry_unless_input_error)
def speech_step(
    key: str,
    text: str,
    voice: str,
    audio: str | None,
    work_dir: str,
    max_seconds: float,
    script_file: str,
) -> dict:
    progress.emit("speech", 0, 1, voice if audio is None else Path(audio).name)
    tracks = prepare_speech(
        text=text,
        voice=voice,
        audio=Path(audio) if audio else None,
        work_dir=Path(work_dir),
        max_seconds=max_seconds,
        script_file=script_file,
        openai_api_key=(k.get_secret_value() if (k := get_settings().openai_api_key) else None),
    )
    progress.emit("speech", 1, 1)
    return {
        "full": str(tracks.full),
        "analysis": str(tracks.analysis),
        "sample_rate": tracks.sample_rate,
        "duration": tracks.duration,
        "source": tracks.source,
        "full_sha": sha256_file(tracks.full),
        "analysis_sha": sha256_file(tracks.analysis),
    }


@task(name="words", **CACHED, retries=1, retry_condition_fn=retry_unless_input_error)
def words_step(
    key: str,
    analysis: str,
    known_words: list[str] | None,
    language: str,
    asr_model: str | None,
    align_model: str | None,
    nltk_dir: str,
) -> dict:
    progress.emit("words", 0, 1)
    audio, _ = read_wav(Path(analysis))
    transcript = transcribe(
        audio,
        known_words=known_words,
        language=language,
        asr_model=asr_model,
        align_model=align_model,
        nltk_dir=Path(nltk_dir),
    )
    progress.emit("words", 1, 1, transcript.aligner)
    return transcript.model_dump(mode="json")


def make_planner(name: str) -> planners.Planner:
    """A planner by its registered name, given the pipeline's runtime: endpoint memory in the
    database and streamed tokens on the plan progress line (planners that do not talk to an
    endpoint ignore both)."""
    from flows.runtime.llm_endpoints import DatabaseCapabilityStore

    def on_tokens(p: planners.Progress) -> None:
        progress.emit(
            "plan",
            0,
            1,
            f"{name} {p.kind}: {p.tokens} tokens, {p.seconds:.0f} s ({p.budget_left:.0f} s left)",
        )

    runtime = planners.PlannerRuntime(
        capabilities=DatabaseCapabilityStore(get_settings().db_url), on_progress=on_tokens
    )
    return planners.get_planner(name, runtime)


@task(name="plan", **CACHED, retries=1, retry_condition_fn=retry_unless_input_error)
def plan_step(key: str, request: dict, planner: str) -> dict:
    """Plan (the MLLM planner falls back to the rules on its own, never raises for it). A
    fallback for a temporary reason is cached here like any result but never served:
    `prepare_plan` re-plans when the cache hands one back (the planner spec's `cacheable`)."""
    progress.emit("plan", 0, 1, planner)
    plan = make_planner(planner).plan(PlanRequest.model_validate(request))
    progress.emit("plan", 1, 1)
    data = plan.model_dump(mode="json")
    trace = getattr(plan, "trace", None) or []
    data["_trace"] = [t.model_dump(mode="json") for t in trace]
    return data


@task(
    name="render-segment",
    **CACHED,
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=retry_unless_input_error,
)
def render_step(key: str, spec: dict, job: dict, context: list[str]) -> dict:
    """Render one segment, keep only its new frames, encode it into the asset store."""
    settings = get_settings()
    seg = SegmentSpec.from_dict(spec)
    render_job = RenderJob.model_validate(job)
    renderer_spec = get_renderer_spec(render_job.renderer)
    # A CUDA render holds its GPU(s) (one render per GPU across processes and machines);
    # a CPU renderer takes no slot. AVATAR_FLOW_GPUS > 1: context-parallel under torchrun.
    devices = gpu.render_devices(
        renderer_spec.uses_gpu, settings.device, parallel=renderer_spec.parallel is not None
    )
    stats: dict[str, Any] = {}
    note: str | None = None
    latents = None
    with gpu.gpu_slots(devices) as clock:
        if len(devices) > 1:
            frames, latents = render_parallel(seg, render_job, context, devices)
        else:
            setup = RenderSetup(render_job.checkpoint, settings.device, render_job.sampling)
            renderer = get_renderer(render_job.renderer, setup)
            request = request_from_job(seg, render_job, context)
            frames = gpu.render_with_offload_fallback(
                renderer, request, devices[0] if devices else None
            )
            stats, note = dict(renderer.last_stats or {}), renderer.model_note
            latents = getattr(renderer, "last_latents", None)
    seconds = clock.wall
    gpu.charge(clock.gpu_seconds)
    expected = (seg.render_frames, render_job.height, render_job.width, 3)
    if tuple(frames.shape) != expected or frames.dtype != np.uint8:
        raise RuntimeError(
            f"renderer {render_job.renderer} returned {frames.shape} {frames.dtype}, "
            f"expected {expected} uint8"
        )
    latent = render_job.continuity_mode == "latent" and render_job.continuity_frames > 0
    if latent and latents is None:
        raise RuntimeError(
            f"renderer {render_job.renderer} returned no latents for latent continuity"
        )
    if render_job.color_anchor:  # what the viewer sees, and so the pixels-mode tail
        frames = anchor_colors(frames, request_avatar(render_job), seg.overlap)
    new = frames[seg.overlap : seg.overlap + seg.num_frames]
    work = Path(settings.cache_dir) / "segments" / key
    tail_latents: dict[str, Any] = {}
    with disk_full_names(settings.home):  # the cache and the asset store live there
        clip = encode_frames(new, seg.fps, work / "segment.mp4")
        store = AssetStore(settings.assets_dir)
        sha, stored = store.put_file(clip)
        if latent:  # the latents of the last shown frames, beside the video in the cache
            path = save_tail_latents(latents, seg, render_job.continuity_frames, work)
            tail_latents = {"latents": str(path), "latents_sha256": sha256_file(path)}
            tail = []
        else:
            tail = save_tail(frames, seg, render_job.continuity_frames, work / "tail")
        write_continuity_record(work, seg, render_job, context)
    clip.unlink(missing_ok=True)
    return {
        **tail_latents,
        "index": seg.index,
        "path": str(stored),
        "sha256": sha,
        "seconds": seconds,
        "tail": [str(p) for p in tail],
        "gpu_seconds": clock.gpu_seconds,
        # model evaluations of this clip (a guided step counts 3) and which model rendered
        "evaluations": stats.get("evaluations"),
        "sampler": note,
        # what the renderer says the job should know (e.g. phase windows dropped)
        "warnings": [str(w) for w in stats.get("warnings") or ()],
    }


CONTINUITY_RECORD = "continuity.json"


def write_continuity_record(work: Path, seg: SegmentSpec, job: RenderJob, context: list[str]):
    """What this segment started from, beside its outputs in the segment cache: the mode, its
    overlap and the continuity input it was given (the previous segment's tail latents file or
    tail PNGs, with their sha256), so a hand-off can be checked after the fact."""
    from storage import atomic_write_text

    record = {
        "segment": seg.index,
        "mode": job.continuity_mode,
        "overlap": seg.overlap,
        "input": [{"path": str(p), "sha256": sha256_file(Path(p))} for p in context],
    }
    atomic_write_text(work / CONTINUITY_RECORD, json.dumps(record, indent=1) + "\n")


def request_avatar(job: RenderJob):
    """The job's avatar image (the colour anchor's reference)."""
    from flows.video.avatar import load_avatar

    return load_avatar(Path(job.avatar) if job.avatar else None)


def segment_intact(record: dict) -> bool:
    """A cached render record's check: its video (`intact("path")`) and, in latent mode, its
    tail latents file with the sha256 recorded when it was written (a missing or altered
    file re-renders the segment: the next one must start from exactly those latents)."""
    if not intact("path")(record):
        return False
    return "latents" not in record or intact("latents", "latents_sha256")(record)


def continuity_input(record: dict) -> list[str]:
    """What the next segment continues from: the tail latents file, else the tail PNGs."""
    return [record["latents"]] if record.get("latents") else list(record["tail"])


def render_key(
    renderer_id: str,
    sp: SegmentSpec,
    job: RenderJob,
    audio_sha: str,
    avatar_sha: str,
    prev_sha: str | None,
) -> str:
    """Everything that changes this segment's pixels, and nothing else.

    A diffusion render depends on its own audio window, prompt and continuity input; a renderer
    that draws more (the animatic's captions and timeline bar) adds it through its spec's
    `key_parts`.
    """
    parts: dict[str, Any] = {
        "spec": sp.to_dict(),
        "size": [job.width, job.height],
        "seed": job.seed,
        "audio": audio_sha,
        "avatar": avatar_sha,
        "previous": prev_sha if sp.overlap else None,
    }
    if get_renderer_spec(job.renderer).continues:
        # latent or pixels changes every segment (which frames follow, what the cache holds)
        parts["continuity"] = job.continuity_mode
    if job.color_anchor:  # only when on: the keys of renders without it stay as they were
        parts["color_anchor"] = True
    parts.update(get_renderer_spec(job.renderer).key_parts(job, sp))
    return content_key("render", renderer_id, parts)


def renderer_identity(job: RenderJob) -> str:
    """What identifies a job's renderer output (its spec's identity: checkpoint, sampling)."""
    return get_renderer_spec(job.renderer).render_identity(job.checkpoint, job.sampling)
