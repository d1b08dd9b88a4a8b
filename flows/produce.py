"""The `produce-video` flow: script -> speech -> words -> plan -> segments -> render -> stitch.

Every step is a Prefect task whose cache key is a content hash of its inputs (never a run
id) and whose result is a small JSON record (paths, hashes, ids) — so re-running a finished
job renders nothing and re-running an interrupted one renders only the missing segments.
"""

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.context import get_run_context

from flows import gpu, progress, webhooks
from flows.avatar import load_avatar
from flows.errors import InputError
from flows.inputs import PIPELINE_VERSION, JobInputs, JobOptions, prepare_inputs
from flows.records import (
    open_job,
    record_assets,
    record_plan,
    record_segment_done,
    record_segments,
    set_status,
)
from flows.render import build_request, get_renderer, renderer_overlap, save_tail
from flows.segments import SegmentSpec, plan_segments
from flows.settings import Settings, get_settings
from flows.speech import prepare_speech, read_wav
from flows.words import transcribe
from planners.schema import Plan, PlanConstraints, PlanRequest, Transcript
from storage import AssetStore, JobStatus, atomic_copy, atomic_write_text, sha256_file

OUTPUT_NAMES = {
    "video": "video.mp4",
    "audio": "audio.wav",
    "words": "words.json",
    "plan": "plan.json",
    "captions_srt": "captions.srt",
    "captions_vtt": "captions.vtt",
    "timeline": "timeline.png",
}


def content_key(*parts: Any) -> str:
    """Stable hash of JSON-able parts: the cache key of a step."""
    blob = json.dumps([PIPELINE_VERSION, *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def _cache_key(ctx, params: dict[str, Any]) -> str:
    return f"{ctx.task.name}-{params['key']}"


def _retry_unless_input_error(task, task_run, state) -> bool:
    """Retry transient failures (OOM, I/O), never bad input."""
    try:
        state.result()
    except InputError:
        return False
    except Exception:
        return True
    return True


CACHED = {"cache_key_fn": _cache_key, "result_serializer": "json", "persist_result": True}


@task(name="speech", **CACHED, retries=1, retry_condition_fn=_retry_unless_input_error)
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


@task(name="words", **CACHED, retries=1)
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


def make_planner(name: str):
    """The rule planner, or the MLLM planner configured from the environment."""
    import planners

    return planners.get_planner(name)


@task(name="plan", **CACHED, retries=1)
def plan_step(key: str, request: dict, planner: str) -> dict:
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
    retry_condition_fn=_retry_unless_input_error,
)
def render_step(key: str, spec: dict, job: dict, context: list[str]) -> dict:
    """Render one segment, keep only its new frames, encode it into the asset store."""
    from flows.media import encode_frames

    settings = get_settings()
    spec_obj = _spec_from_dict(spec)
    # A CUDA render holds its GPU(s) (one render per GPU across processes and machines);
    # the CPU animatic takes no slot. AVATAR_FLOW_GPUS > 1: context-parallel under torchrun.
    devices = gpu.render_devices(job["renderer"], settings.device)
    with gpu.gpu_slots(devices) as clock:
        if len(devices) > 1:
            from flows.multigpu import render_parallel

            frames = render_parallel(spec, job, context, devices)
        else:
            renderer = get_renderer(
                job["renderer"], job.get("checkpoint"), settings.device, job["steps"]
            )
            audio, _ = read_wav(Path(job["analysis"]))
            request = build_request(
                spec_obj,
                words=Transcript.model_validate(job["transcript"]).words,
                plan=Plan.model_validate(job["plan"]),
                audio16k=audio,
                avatar=load_avatar(Path(job["avatar"]) if job["avatar"] else None),
                width=job["width"],
                height=job["height"],
                seed=job["seed"],
                total_duration=job["duration"],
                cuts=job["cuts"],
                title=job["title"],
                context=[load_avatar(Path(p)) for p in context],
            )
            frames = gpu.render_with_offload_fallback(
                renderer, request, devices[0] if devices else None
            )
    seconds = clock.wall
    gpu.charge(clock.gpu_seconds)
    expected = (spec_obj.render_frames, job["height"], job["width"], 3)
    if tuple(frames.shape) != expected or frames.dtype != np.uint8:
        raise RuntimeError(
            f"renderer {job['renderer']} returned {frames.shape} {frames.dtype}, "
            f"expected {expected} uint8"
        )
    new = frames[spec_obj.overlap : spec_obj.overlap + spec_obj.num_frames]
    work = Path(settings.cache_dir) / "segments" / key
    clip = encode_frames(new, spec_obj.fps, work / "segment.mp4")
    store = AssetStore(settings.assets_dir)
    sha, stored = store.put_file(clip)
    tail = save_tail(frames, job.get("continuity_frames", 0), work / "tail")
    clip.unlink(missing_ok=True)
    return {
        "index": spec_obj.index,
        "path": str(stored),
        "sha256": sha,
        "seconds": seconds,
        "tail": [str(p) for p in tail],
        "gpu_seconds": clock.gpu_seconds,
    }


def _spec_from_dict(d: dict) -> SegmentSpec:
    from flows.segments import SegmentPhase

    return SegmentSpec(**{**d, "phases": tuple(SegmentPhase(**p) for p in d["phases"])})


def write_outputs(
    out_dir: Path,
    *,
    segments: list[Path],
    speech: dict,
    transcript: Transcript,
    plan: Plan,
    cuts: list[float],
    title: str,
) -> dict[str, Path]:
    """Everything next to the video; each file appears complete or not at all."""
    from flows.captions import write_srt, write_vtt
    from flows.media import concat_and_mux
    from flows.timeline import draw_timeline

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / v for k, v in OUTPUT_NAMES.items()}
    concat_and_mux(segments, Path(speech["full"]), paths["video"])
    atomic_copy(Path(speech["full"]), paths["audio"])
    words = [
        {
            "word": w.word,
            "start": w.start,
            "end": w.end,
            "interpolated": w.interpolated,
            "timing": "interpolated" if w.interpolated else transcript.aligner,
        }
        for w in transcript.words
    ]
    atomic_write_text(paths["words"], json.dumps(words, indent=1) + "\n")
    atomic_write_text(paths["plan"], plan.model_dump_json(indent=2) + "\n")
    write_srt(transcript.words, paths["captions_srt"])
    write_vtt(transcript.words, paths["captions_vtt"])
    draw_timeline(
        transcript.words, plan.phases, cuts, transcript.duration, paths["timeline"], title=title
    )
    return paths


def _run_cached(step, check, **kwargs) -> Any:
    """Run a cached step; if its cached record points at files that are gone, recompute."""
    result = step(**kwargs)
    if not check(result):
        result = step.with_options(refresh_cache=True)(**kwargs)
    return result


def _plan_request(
    inputs: JobInputs, transcript: Transcript, speech_audio: str | None = None
) -> PlanRequest:
    s = inputs.script
    same_words = [w.word for w in transcript.words] == s.words
    return PlanRequest(
        transcript=transcript,
        scenes=s.scenes if same_words else [],
        cues=s.cues if same_words else [],
        style=s.style,
        title=s.title,
        avatar_image=str(s.avatar) if s.avatar else None,
        speech_audio=speech_audio,
        constraints=PlanConstraints(segment_seconds=inputs.segment_seconds),
    )


def prepare_plan(
    inputs: JobInputs, settings: Settings, *, force: bool = False, script_file: str = ""
) -> tuple[dict, Transcript, Plan, list[dict], str]:
    """Steps 1-3 (speech, words, plan), shared by `produce-video` and `plan-script`."""
    s = inputs.script
    planner = inputs.options.planner
    refresh = {"refresh_cache": True} if force else {}
    # 1. Speech.
    speech_key = content_key("speech", s.text, inputs.voice, inputs.audio_sha)
    speech = _run_cached(
        speech_step.with_options(**refresh),
        lambda r: Path(r["full"]).is_file() and Path(r["analysis"]).is_file(),
        key=speech_key,
        text=s.text,
        voice=inputs.voice,
        audio=str(s.audio) if s.audio else None,
        work_dir=str(settings.cache_dir / "speech" / speech_key),
        max_seconds=settings.max_audio_seconds,
        script_file=script_file,
    )
    # 2. Words.
    known = s.words or None
    words_key = content_key(
        "words", speech["analysis_sha"], known, s.language, settings.asr_model, settings.align_model
    )
    transcript = Transcript.model_validate(
        words_step.with_options(**refresh)(
            key=words_key,
            analysis=speech["analysis"],
            known_words=known,
            language=s.language,
            asr_model=settings.asr_model,
            align_model=settings.align_model,
            nltk_dir=str(settings.home / "nltk_data"),
        )
    )
    if not transcript.words:
        raise InputError("no speech was recognised in the audio", file=script_file, field="audio")
    # 3. Plan.
    request = _plan_request(inputs, transcript, speech_audio=speech["analysis"])
    plan_key = content_key("plan", planner, _planner_cache_key(planner, request))
    plan_data = plan_step.with_options(**refresh)(
        key=plan_key, request=request.model_dump(mode="json"), planner=planner
    )
    trace = plan_data.pop("_trace", [])
    return speech, transcript, Plan.model_validate(plan_data), trace, plan_key


def _planner_cache_key(planner: str, request: PlanRequest) -> str:
    """Content hash of transcript, image, constraints and model: never run ids or secrets."""
    from planners import MLLMSettings, plan_cache_key

    return plan_cache_key(request, MLLMSettings() if planner == "mllm" else None)


@flow(name="plan-script", log_prints=False)
def plan_script(
    script: str,
    planner: str = "rule",
    voice: str | None = None,
    segment_seconds: float | None = None,
    force: bool = False,
) -> dict:
    """Speech, words and plan only (no rendering): what `avatar-flow plan` shows.

    Args:
        script: Path of the script.
        planner: `rule` or `mllm`.
        voice: Override the script's voice.
        segment_seconds: Longest segment in seconds (default 5).
        force: Recompute instead of reusing cached results.
    """
    settings = get_settings()
    inputs = prepare_inputs(
        script, JobOptions(planner=planner, voice=voice, segment_seconds=segment_seconds), settings
    )
    _speech, transcript, plan, _trace, _key = prepare_plan(
        inputs, settings, force=force, script_file=str(script)
    )
    return {
        "plan": plan.model_dump(mode="json"),
        "transcript": transcript.model_dump(mode="json"),
        "fps": inputs.script.fps,
        "segment_seconds": inputs.segment_seconds,
        "title": inputs.script.title,
    }


@flow(
    name="produce-video",
    log_prints=False,
    on_completion=[webhooks.on_job_completed],
    on_failure=[webhooks.on_job_failed],
)
def produce_video(
    script: str,
    out: str | None = None,
    renderer: str = "animatic",
    planner: str = "rule",
    voice: str | None = None,
    checkpoint: str | None = None,
    segment_seconds: float | None = None,
    steps: int | None = None,
    continuity: int = 1,
    force: bool = False,
    webhook: str | None = None,
) -> dict:
    """Turn a script into a finished talking-avatar video.

    Args:
        script: Path of the script (Markdown with YAML front matter).
        out: Output folder; defaults to <AVATAR_FLOW_HOME>/outputs/<script>-<hash>.
        renderer: `animatic` (CPU preview) or `actavatar` (diffusion model, needs a checkpoint).
        planner: `rule` (offline) or `mllm` (OpenAI-compatible endpoint from the environment).
        voice: Override the script's voice (`piper`, `openai:<name>`).
        checkpoint: ActAvatar pipeline directory for `--renderer actavatar`.
        segment_seconds: Longest segment in seconds (default 5).
        steps: Denoising steps per segment for `actavatar` (default AVATAR_FLOW_RENDER_STEPS, 40).
        continuity: Frames of the previous segment held clean at the start of the next
            (`actavatar`): 0 = every segment starts from the avatar image, 1 = the TI2V rule,
            5 or 9 = more latent frames (InfiniteTalk keeps 9).
        force: Recompute every step instead of reusing cached results.
        webhook: URL called with an HMAC-signed JSON body when the job finishes or fails.
    """
    settings = get_settings()
    options = JobOptions(
        renderer=renderer,
        planner=planner,
        voice=voice,
        checkpoint=checkpoint or (str(settings.checkpoint) if settings.checkpoint else None),
        segment_seconds=segment_seconds,
        steps=steps,
        continuity_frames=continuity,
    )
    inputs = prepare_inputs(script, options, settings)
    s = inputs.script
    out_dir = (
        Path(out).resolve()
        if out
        else (settings.home / "outputs" / f"{Path(script).stem}-{inputs.input_key[:8]}")
    )
    db = settings.db_url
    ctx = get_run_context()
    job_id = open_job(
        db,
        input_key=inputs.input_key,
        out_dir=str(out_dir),
        title=s.title,
        script_path=str(s.path),
        renderer=renderer,
        planner=planner,
        settings={
            "options": options.__dict__,
            "resolution": [s.width, s.height],
            "fps": s.fps,
            "seed": s.seed,
        },
        flow_run_id=str(ctx.flow_run.id) if getattr(ctx, "flow_run", None) else None,
    )
    refresh = {"refresh_cache": True} if force else {}
    try:
        set_status(db, job_id, JobStatus.speech)
        speech, transcript, plan, trace, plan_key = prepare_plan(
            inputs, settings, force=force, script_file=str(script)
        )
        record_plan(db, job_id, plan, plan_key, trace)
        set_status(db, job_id, JobStatus.planned, duration=transcript.duration)
        # 4. Segments.
        overlap = renderer_overlap(renderer, options.continuity_frames)
        specs = plan_segments(
            transcript.words,
            transcript.duration,
            plan,
            fps=s.fps,
            max_seconds=inputs.segment_seconds,
            overlap=overlap,
        )
        record_segments(db, job_id, [sp.to_dict() for sp in specs])
        cuts = [sp.end for sp in specs[:-1]]
        progress.emit("segments", len(specs), len(specs))
        # 5. Render, in order (a segment may continue from the previous one's tail).
        set_status(db, job_id, JobStatus.rendering)
        job = {
            "renderer": renderer,
            "checkpoint": options.checkpoint,
            "analysis": speech["analysis"],
            "transcript": transcript.model_dump(mode="json"),
            "plan": plan.model_dump(mode="json"),
            "avatar": str(s.avatar) if s.avatar else None,
            "width": s.width,
            "height": s.height,
            "seed": s.seed,
            "duration": transcript.duration,
            "cuts": cuts,
            "title": s.title,
            "continuity_frames": overlap,
            "steps": options.steps or settings.render_steps,
        }
        renderer_id = _renderer_identity(renderer, options.checkpoint, job["steps"])
        rendered, clips, context, prev_sha = 0, [], [], None
        progress.emit("render", 0, len(specs))
        for sp in specs:
            key = _render_key(
                renderer_id,
                sp,
                job,
                transcript,
                plan,
                speech["analysis_sha"],
                inputs.avatar_sha,
                prev_sha,
            )
            state = render_step.with_options(**refresh)(
                key=key, spec=sp.to_dict(), job=job, context=context, return_state=True
            )
            result = state.result()
            if not Path(result["path"]).is_file():
                state = render_step.with_options(refresh_cache=True)(
                    key=key, spec=sp.to_dict(), job=job, context=context, return_state=True
                )
                result = state.result()
            was_cached = state.name == "Cached"
            rendered += not was_cached
            record_segment_done(
                db,
                job_id,
                sp.index,
                status="cached" if was_cached else "rendered",
                cache_key=key,
                path=result["path"],
                sha256=result["sha256"],
                seconds=None if was_cached else result["seconds"],
            )
            clips.append(Path(result["path"]))
            context, prev_sha = result["tail"], result["sha256"]
            progress.emit(
                "render", sp.index + 1, len(specs), "cached" if was_cached else "rendered"
            )
        # 6. Stitch and record, then mark done.
        progress.emit("stitch", 0, 1)
        paths = write_outputs(
            out_dir,
            segments=clips,
            speech=speech,
            transcript=transcript,
            plan=plan,
            cuts=cuts,
            title=s.title,
        )
        hashes = record_assets(db, job_id, paths)
        set_status(db, job_id, JobStatus.done, duration=transcript.duration)
        progress.emit("stitch", 1, 1)
    except BaseException as exc:
        set_status(db, job_id, JobStatus.failed, error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    gpu_seconds = gpu.record_gpu_seconds(db, job_id, gpu.settle())
    report = {
        "job_id": job_id,
        "out_dir": str(out_dir),
        "outputs": {k: str(v) for k, v in paths.items()},
        "sha256": hashes,
        "segments": len(specs),
        "segments_rendered": rendered,
        "segments_cached": len(specs) - rendered,
        "duration": transcript.duration,
        "aligner": transcript.aligner,
        "planner": plan.planner,
        "fallback_reason": plan.fallback_reason,
        "phases": len(plan.phases),
        "gpu_seconds": gpu_seconds,
        "gpu_seconds_per_output_second": gpu.per_output_second(gpu_seconds, transcript.duration),
    }
    _publish_artifact(report, plan)
    progress.emit("done", 1, 1)
    return report


def _render_key(
    renderer_id: str,
    sp: SegmentSpec,
    job: dict,
    transcript: Transcript,
    plan: Plan,
    audio_sha: str,
    avatar_sha: str,
    prev_sha: str | None,
) -> str:
    """Everything that changes this segment's pixels, and nothing else.

    A diffusion render depends on its own audio window, prompt and continuity input; the
    animatic also draws captions and the whole-video timeline, so those count for it only.
    """
    parts: dict[str, Any] = {
        "spec": sp.to_dict(),
        "size": [job["width"], job["height"]],
        "seed": job["seed"],
        "audio": audio_sha,
        "avatar": avatar_sha,
        "previous": prev_sha if sp.overlap else None,
    }
    if job["renderer"] == "animatic":
        t0, t1 = sp.render_start, sp.render_start + sp.render_frames / sp.fps
        parts["captions"] = [
            (w.word, w.start, w.end) for w in transcript.words if w.end > t0 and w.start < t1
        ]
        parts["timeline"] = [(p.action, p.start, p.end) for p in plan.phases]
        parts["cuts"], parts["duration"], parts["title"] = (
            job["cuts"],
            job["duration"],
            job["title"],
        )
    return content_key("render", renderer_id, parts)


def _renderer_identity(renderer: str, checkpoint: str | None, steps: int) -> str:
    if renderer == "actavatar" and checkpoint:
        index = Path(checkpoint) / "model_index.json"
        return f"actavatar:{sha256_file(index)}:{Path(checkpoint).resolve()}:steps={steps}"
    return f"{renderer}:v1"


def _publish_artifact(report: dict, plan: Plan) -> None:
    rows = "\n".join(
        f"| {i + 1} | {p.start:.2f}–{p.end:.2f} s | words {p.first_word}–{p.last_word} "
        f"| {p.action} | {p.source} |"
        for i, p in enumerate(plan.phases)
    )
    outputs = "\n".join(f"- **{k}**: `{v}`" for k, v in report["outputs"].items())
    md = (
        f"# Job {report['job_id']}\n\n**Base block:** {plan.base.render()}\n\n"
        f"| # | window | words | action | source |\n|---|---|---|---|---|\n{rows}\n\n"
        f"Segments: {report['segments']} ({report['segments_rendered']} rendered, "
        f"{report['segments_cached']} cached)\n\n## Outputs\n{outputs}\n"
    )
    # Artifacts are a convenience: never fail a finished job over one.
    with contextlib.suppress(Exception):
        create_markdown_artifact(
            markdown=md,
            key="produce-video-report",
            description=f"avatar-flow job {report['job_id']}",
        )
