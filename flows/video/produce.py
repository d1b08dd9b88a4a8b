"""The `produce-video` flow: script -> speech -> words -> plan -> segments -> render -> stitch,
and `plan-script` (the same first three steps, no rendering).

`produce_video` is three stages with one record of the job between them:

- `plan_job`: speech, words and plan (cached tasks, `flows.video.steps`), then the segments;
- `render_segments`: one cached render task per segment, in order (a segment may continue from
  the previous one's tail);
- `finish_job`: stitch, write the outputs next to the video, record them, mark the job done.

A failure anywhere is recorded on the job by the flow's state hooks (`record_failure`), not by
a try/except around the body, so a run from the Prefect UI is recorded the same way. The run's
Prefect logs (task tracebacks included) are kept in `<out>/job.log`.
"""

import contextlib
import json
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.context import get_run_context

from flows.runtime import gpu, progress, webhooks
from flows.runtime.errors import MAX_LINE, InputError, PlannerFallback, disk_full_names, failure
from flows.runtime.joblog import job_log
from flows.runtime.records import (
    fail_jobs_of_run,
    open_job,
    record_assets,
    record_plan,
    record_plan_version,
    record_segment_done,
    record_segments,
    set_status,
)
from flows.runtime.results import persisted_result
from flows.runtime.settings import Settings, get_settings
from flows.video.captions import write_srt, write_vtt
from flows.video.finish.step import finish_outputs, record_finishing
from flows.video.given_plan import check_given_plan, read_plan_file
from flows.video.inputs import JobInputs, prepare_inputs
from flows.video.media import concat_and_mux
from flows.video.options import JobOptions
from flows.video.render_job import RenderJob
from flows.video.renderers import job_continuity
from flows.video.segments import SegmentSpec, plan_segments
from flows.video.steps import (
    content_key,
    continuity_input,
    intact,
    plan_step,
    render_key,
    render_step,
    renderer_identity,
    run_cached,
    run_cached_state,
    segment_intact,
    speech_step,
    words_step,
)
from flows.video.timeline import draw_timeline
from planners import get_planner_spec
from planners.schema import Plan, PlanConstraints, PlanRequest, Transcript
from storage import JobStatus, atomic_copy, atomic_write_text, check_database

OUTPUT_NAMES = {
    "video": "video.mp4",
    "audio": "audio.wav",
    "words": "words.json",
    "plan": "plan.json",
    "captions_srt": "captions.srt",
    "captions_vtt": "captions.vtt",
    "timeline": "timeline.png",
}
LOG_NAME = "job.log"
REPORT_NAME = "report.json"  # the run report (what `produce_video` returns), next to the video


# ------------------------------------------------------------------------------------ planning
def plan_request(
    inputs: JobInputs, transcript: Transcript, speech_audio: str | None = None
) -> PlanRequest:
    """What the planner sees: the timed words, the script's scenes, cues and style, the avatar."""
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


def planner_cache_key(planner: str, request: PlanRequest) -> str:
    """Content hash of transcript, image, constraints and model (the planner spec's cache
    identity): never run ids or secrets."""
    return get_planner_spec(planner).cache_identity(request)


def prepare_plan(
    inputs: JobInputs, settings: Settings, *, force: bool = False, script_file: str = ""
) -> tuple[dict, Transcript, Plan, list[dict], str]:
    """Steps 1-3 (speech, words, plan), shared by `produce-video` and `plan-script`."""
    s = inputs.script
    planner = inputs.options.planner
    refresh = {"refresh_cache": True} if force else {}
    # 1. Speech.
    speech_key = content_key("speech", s.text, inputs.voice, inputs.audio_sha)
    speech = run_cached(
        speech_step.with_options(**refresh),
        lambda r: intact("full", "full_sha")(r) and intact("analysis", "analysis_sha")(r),
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
    # 3. Plan: a given plan (`plan` option) is checked against these words by the planner's
    # own rules, before anything renders; otherwise the planner plans (cached).
    request = plan_request(inputs, transcript, speech_audio=speech["analysis"])
    if inputs.options.plan:
        progress.emit("plan", 0, 1, "given")
        given = inputs.options.plan
        plan = check_given_plan(read_plan_file(given), request, file=given)
        progress.emit("plan", 1, 1)
        return speech, transcript, plan, [], content_key("plan", "given", plan.model_dump())
    plan_key = content_key("plan", planner, planner_cache_key(planner, request))
    args = {"key": plan_key, "request": request.model_dump(mode="json"), "planner": planner}
    replan = {"refresh_cache": True} if inputs.options.replan else refresh
    state = plan_step.with_options(**replan)(**args, return_state=True)
    plan_data = state.result()
    if state.name == "Cached" and not get_planner_spec(planner).cacheable(
        Plan.model_validate(plan_data)
    ):
        # Only real answers are served from the cache: a fallback because the server was down,
        # slow or refused the format is recorded with its job, and asked again next time.
        plan_data = plan_step.with_options(refresh_cache=True)(**args)
    trace = plan_data.pop("_trace", [])
    plan = Plan.model_validate(plan_data)
    if inputs.options.strict and plan.fallback_reason:
        raise PlannerFallback(plan.fallback_reason, plan.fallback_kind)
    return speech, transcript, plan, trace, plan_key


@flow(name="plan-script", log_prints=False)
def plan_script(script: str, options: JobOptions = JobOptions()) -> dict:  # noqa: B008
    """Speech, words and plan only (no rendering): what `avatar-flow plan` shows.

    Args:
        script: Path of the script.
        options: The job options (only planner, voice, segment_seconds and force matter here).
    """
    settings = get_settings()
    inputs = prepare_inputs(script, options, settings)
    _speech, transcript, plan, _trace, _key = prepare_plan(
        inputs, settings, force=options.force, script_file=str(script)
    )
    return {
        "plan": plan.model_dump(mode="json"),
        "transcript": transcript.model_dump(mode="json"),
        "fps": inputs.script.fps,
        "segment_seconds": inputs.segment_seconds,
        "title": inputs.script.title,
        "out_dir": str(inputs.out_dir(settings)),
    }


# ------------------------------------------------------------------------------------ one job
@dataclass(frozen=True)
class JobRun:
    """The job row this flow run writes to."""

    id: str
    db: str
    out_dir: Path


@dataclass(frozen=True)
class Planned:
    """What `plan_job` hands to rendering and finishing."""

    speech: dict
    transcript: Transcript
    plan: Plan
    specs: list[SegmentSpec]
    render_job: RenderJob
    plan_version: int | None = None  # the job's PlanVersion number of `plan`


@dataclass(frozen=True)
class Rendered:
    clips: list[Path]
    rendered: int  # segments rendered now (the others came from the cache)
    evaluations: list[int] = field(default_factory=list)  # model evaluations per clip
    samplers: list[str] = field(default_factory=list)  # which model rendered (teacher/student)
    shas: list[str] = field(default_factory=list)  # the clips' content hashes (finishing's key)
    warnings: list[str] = field(default_factory=list)  # renderer warnings, each once per job


def open_job_run(inputs: JobInputs, settings: Settings) -> JobRun:
    """Create (or resume) the job row for these inputs and output folder."""
    s, o = inputs.script, inputs.options
    out_dir = inputs.out_dir(settings)
    ctx = get_run_context()
    job_id = open_job(
        settings.db_url,
        input_key=inputs.input_key,
        out_dir=str(out_dir),
        title=s.title,
        script_path=str(s.path),
        renderer=o.renderer,
        planner=o.planner,
        settings={
            "options": o.model_dump(mode="json"),
            "resolution": [s.width, s.height],
            "fps": s.fps,
            "seed": s.seed,
        },
        flow_run_id=str(ctx.flow_run.id) if getattr(ctx, "flow_run", None) else None,
    )
    return JobRun(id=job_id, db=settings.db_url, out_dir=out_dir)


def plan_job(inputs: JobInputs, run: JobRun, settings: Settings) -> Planned:
    """Speech, words and plan (recorded), then the segments and the render-job record."""
    s, o = inputs.script, inputs.options
    set_status(run.db, run.id, JobStatus.speech)
    speech, transcript, plan, trace, plan_key = prepare_plan(
        inputs, settings, force=o.force, script_file=str(s.path)
    )
    record_plan(run.db, run.id, plan, plan_key, trace)
    version = record_plan_version(run.db, run.id, plan, source="cli" if o.plan else "planner")
    set_status(run.db, run.id, JobStatus.planned, duration=transcript.duration)
    continuity = job_continuity(o.renderer, o.continuity, o.continuity_mode)
    overlap = continuity.frames
    specs = plan_segments(
        transcript.words,
        transcript.duration,
        plan,
        fps=s.fps,
        max_seconds=inputs.segment_seconds,
        overlap=overlap,
        latent=continuity.latent,
    )
    record_segments(run.db, run.id, [sp.to_dict() for sp in specs])
    progress.emit("segments", len(specs), len(specs))
    render_job = RenderJob(
        renderer=o.renderer,
        checkpoint=o.checkpoint,
        analysis=speech["analysis"],
        transcript=transcript,
        plan=plan,
        avatar=str(s.avatar) if s.avatar else None,
        width=s.width,
        height=s.height,
        seed=s.seed,
        duration=transcript.duration,
        cuts=tuple(sp.end for sp in specs[:-1]),
        title=s.title,
        continuity_frames=overlap,
        continuity_mode=continuity.mode,
        color_anchor=o.color_anchor,
        sampling=o.sampling(settings.render_steps),
    )
    return Planned(speech, transcript, plan, specs, render_job, version)


def render_segments(inputs: JobInputs, run: JobRun, planned: Planned) -> Rendered:
    """Render every segment in order; cached segments are reused, missing files re-rendered."""
    job = planned.render_job
    set_status(run.db, run.id, JobStatus.rendering)
    renderer_id = renderer_identity(job)
    refresh = {"refresh_cache": True} if inputs.options.force else {}
    total = len(planned.specs)
    rendered, clips, context, prev_sha = 0, [], [], None
    evaluations: list[int] = []
    samplers: list[str] = []
    shas: list[str] = []
    warnings: list[str] = []
    progress.emit("render", 0, total)
    for sp in planned.specs:
        own = job.for_segment(sp)  # its words and phases only: constant work per segment
        key = render_key(
            renderer_id,
            sp,
            own,
            planned.speech["analysis_sha"],
            inputs.avatar_sha,
            prev_sha,
        )
        args = {
            "key": key,
            "spec": sp.to_dict(),
            "job": own.model_dump(mode="json"),
            "context": context,
        }
        state = run_cached_state(render_step.with_options(**refresh), segment_intact, **args)
        result = state.result()
        was_cached = state.name == "Cached"
        rendered += not was_cached
        record_segment_done(
            run.db,
            run.id,
            sp.index,
            status="cached" if was_cached else "rendered",
            cache_key=key,
            path=result["path"],
            sha256=result["sha256"],
            seconds=None if was_cached else result["seconds"],
        )
        clips.append(Path(result["path"]))
        shas.append(result["sha256"])
        if result.get("evaluations") is not None:
            evaluations.append(int(result["evaluations"]))
        if result.get("sampler"):
            samplers.append(str(result["sampler"]))
        warnings += [w for w in result.get("warnings") or () if w not in warnings]
        context, prev_sha = continuity_input(result), result["sha256"]
        if result.get("latents_sha256"):  # the latents the next segment starts from
            prev_sha = f"{prev_sha}:{result['latents_sha256']}"
        progress.emit("render", sp.index + 1, total, "cached" if was_cached else "rendered")
    return Rendered(clips, rendered, evaluations, samplers, shas, warnings)


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
    with disk_full_names(out_dir):
        return _write_outputs(out_dir, segments, speech, transcript, plan, cuts, title)


def _write_outputs(out_dir, segments, speech, transcript, plan, cuts, title) -> dict[str, Path]:
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


def finish_job(inputs: JobInputs, run: JobRun, planned: Planned, rendered: Rendered) -> dict:
    """Stitch and write the outputs, record them, mark the job done; the job report."""
    progress.emit("stitch", 0, 1)
    transcript, plan = planned.transcript, planned.plan
    paths = write_outputs(
        run.out_dir,
        segments=rendered.clips,
        speech=planned.speech,
        transcript=transcript,
        plan=plan,
        cuts=list(planned.render_job.cuts),
        title=inputs.script.title,
    )
    finishing = finish_outputs(
        inputs,
        paths=paths,
        clip_shas=rendered.shas,
        speech=planned.speech,
        transcript=transcript,
        force=inputs.options.force,
    )
    record_finishing(run.db, run.id, finishing)
    hashes = record_assets(run.db, run.id, paths)
    set_status(run.db, run.id, JobStatus.done, duration=transcript.duration)
    progress.emit("stitch", 1, 1)
    gpu_seconds = gpu.record_gpu_seconds(run.db, run.id, gpu.settle())
    total = len(planned.specs)
    report = {
        "job_id": run.id,
        "out_dir": str(run.out_dir),
        "outputs": {k: str(v) for k, v in paths.items()},
        "sha256": hashes,
        "segments": total,
        "segments_rendered": rendered.rendered,
        "segments_cached": total - rendered.rendered,
        "duration": transcript.duration,
        "aligner": transcript.aligner,
        "planner": plan.planner,
        "fallback_reason": plan.fallback_reason,
        "fallback_kind": plan.fallback_kind,
        "phases": len(plan.phases),
        "plan_given": bool(inputs.options.plan),
        "plan_version": planned.plan_version,
        "gpu_seconds": gpu_seconds,
        "gpu_seconds_per_output_second": gpu.per_output_second(gpu_seconds, transcript.duration),
        # model evaluations per rendered clip (a guided step counts 3; None: not a diffusion
        # render), and which model rendered (the teacher, or the distilled student and why)
        "evaluations_per_clip": (
            sum(rendered.evaluations) / len(rendered.evaluations) if rendered.evaluations else None
        ),
        "sampling": planned.render_job.sampling.active(),
        # how segments continued from each other: latent (latents handed on through the
        # segment cache) or pixels (decoded tail PNGs), the context frames, the colour anchor
        "continuity": {
            "mode": planned.render_job.continuity_mode,
            "frames": planned.render_job.continuity_frames,
            "color_anchor": planned.render_job.color_anchor,
        },
        "sampler": sorted(set(rendered.samplers)),
        # brand, music, measured loudness, chapters, the template and its values
        "finishing": finishing,
        # what the renderer said the job should know, each line once (e.g. a checkpoint that
        # drops the phase windows); also in report.json and `avatar-flow jobs show`
        "warnings": list(rendered.warnings),
    }
    atomic_write_text(run.out_dir / REPORT_NAME, json.dumps(report, indent=1) + "\n")
    _publish_artifact(report, plan)
    progress.emit("done", 1, 1)
    return report


def interruption(state: Any, exc: Any) -> str | None:
    """How a run was stopped from outside, or None: a Prefect cancel, SIGTERM (Prefect's
    TerminationSignal) or Ctrl-C (KeyboardInterrupt)."""
    if any(getattr(state, name, lambda: False)() for name in ("is_cancelled", "is_cancelling")):
        return "cancelled"
    sig = getattr(exc, "signal", None)
    if isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "TerminationSignal":
        name = signal.Signals(sig).name if isinstance(sig, int) else "SIGINT"
        return f"cancelled by {name}"
    return None


def record_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow state hook (failed, crashed, cancelled): the job of this run is marked failed, or
    cancelled when a signal or a Prefect cancel stopped it (its finished work is kept either
    way: a re-run resumes)."""
    try:
        exc = state.result(raise_on_failure=False)
    except BaseException as e:  # a crashed run's result may itself raise
        exc = e
    error = failure(exc).line if isinstance(exc, BaseException) else (state.message or state.name)
    stopped = interruption(state, exc)
    status = JobStatus.cancelled if stopped else JobStatus.failed
    with contextlib.suppress(Exception):  # the hook must not mask the run's own failure
        fail_jobs_of_run(
            get_settings().db_url, str(flow_run.id), (stopped or error)[:MAX_LINE], status
        )


@flow(
    name="produce-video",
    log_prints=False,
    on_completion=[webhooks.on_job_completed],
    on_failure=[record_failure, webhooks.on_job_failed],
    on_crashed=[record_failure, webhooks.on_job_failed],
    on_cancellation=[record_failure],
    **persisted_result(),  # the job summary, for callers of run_deployment(...)
)
def produce_video(script: str, options: JobOptions = JobOptions()) -> dict:  # noqa: B008
    """Turn a script into a finished talking-avatar video.

    Args:
        script: Path of the script (Markdown with YAML front matter).
        options: The job options (renderer, planner, voice, output folder, ...); every field
            is described in the form.

    Returns:
        The job summary (job id, output paths and hashes, segments, plan version, ...), kept as
        JSON (`flows.runtime.results`), so `run_deployment(...).state.result()` returns it.
    """
    settings = get_settings()
    inputs = prepare_inputs(script, options, settings)
    check_database(settings.db_url)  # an unreachable database: one line, before any work
    run = open_job_run(inputs, settings)
    with job_log(run.out_dir / LOG_NAME):
        planned = plan_job(inputs, run, settings)
        rendered = render_segments(inputs, run, planned)
        return finish_job(inputs, run, planned, rendered)


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
