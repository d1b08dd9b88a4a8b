"""The render-job record: what every segment of one job renders with, besides its own spec and
continuity frames. Frozen and JSON-able: the same record is the render task's parameter, part
of the segment cache key, and the payload of a context-parallel torchrun launch."""

from pydantic import BaseModel, ConfigDict

from generator.render_types import PromptPhase
from generator.sampling import SamplingRequest
from planners.schema import Plan, Transcript


class RenderJob(BaseModel):
    """One job's render settings and the inputs every segment reads."""

    model_config = ConfigDict(frozen=True)

    renderer: str  # a registered renderer's name (flows.video.renderers)
    checkpoint: str | None
    analysis: str  # the 16 kHz speech WAV
    transcript: Transcript
    plan: Plan
    avatar: str | None  # None: the built-in avatar
    width: int
    height: int
    seed: int
    duration: float
    cuts: tuple[float, ...]
    title: str
    continuity_frames: int
    # steps, solver, guidance interval, step cache, student: typed from JobOptions to the
    # pipeline call, unpacked once by generator.sampling.resolve_sampling
    sampling: SamplingRequest = SamplingRequest()


def segment_timeline(phases: list, start: float, end: float) -> list[PromptPhase]:
    """The phases the animatic's timeline bar shows for a render window: those overlapping it.

    Only the segment's own phases are drawn (on the whole-video bar, at their times), so a
    segment's pixels depend on nothing planned elsewhere: an edited phase re-renders only the
    segments it touches, and the stitched preview never shows a stale bar.
    """
    return [
        PromptPhase(p.action, p.start, p.end) for p in phases if p.end > start and p.start < end
    ]
