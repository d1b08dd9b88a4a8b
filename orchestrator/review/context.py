"""What an edited plan of one job is checked and segmented against, rebuilt from its record.

The plan request comes from the same function the flow uses (`flows.video.produce.plan_request`,
with the script's cues, scenes and constraints), so the page holds an edit to exactly the rules
the planner's plan was held to.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planners.schema import PlanRequest, Transcript


@dataclass(frozen=True)
class PlanContext:
    """What a plan of one job is validated and segmented against."""

    request: PlanRequest
    fps: int
    segment_seconds: float
    overlap: int
    latent: bool = False  # segments hand latents on (their overlaps follow latent_handoff)


def job_options(stored: dict[str, Any], **overrides: Any) -> Any:
    """The job's options contract from what its record stored (older records: known keys)."""
    from flows.video.options import JobOptions

    values = {("continuity" if k == "continuity_frames" else k): v for k, v in stored.items()}
    values.update(overrides)
    return JobOptions.parse(
        **{k: v for k, v in values.items() if k in JobOptions.model_fields and v is not None}
    )


def job_plan_context(
    script_path: str | Path, options: dict[str, Any], transcript: Transcript
) -> PlanContext:
    """The plan request the flow built for this job (script cues, scenes, constraints)."""
    from flows.video.inputs import JobInputs
    from flows.video.produce import plan_request
    from flows.video.renderers import job_continuity
    from flows.video.script import parse_script

    opts = job_options(options)
    script = parse_script(script_path, opts.variables)  # a template job: its own values
    inputs = JobInputs(script=script, options=opts, avatar_sha="", audio_sha=None, input_key="")
    # the job's own continuity (renderer, frames, mode): the segments its final render has
    continuity = job_continuity(opts.renderer, opts.continuity, opts.continuity_mode)
    return PlanContext(
        request=plan_request(inputs, transcript),
        fps=script.fps,
        segment_seconds=inputs.segment_seconds,
        overlap=continuity.frames,
        latent=continuity.latent,
    )
