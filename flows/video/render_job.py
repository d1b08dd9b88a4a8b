"""The render-job record: what every segment of one job renders with, besides its own spec and
continuity frames. Frozen and JSON-able: the same record is the render task's parameter, part
of the segment cache key, and the payload of a context-parallel torchrun launch."""

from pydantic import BaseModel, ConfigDict

from flows.video.segments import SegmentSpec
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
    # latent: the previous segment's latents (segment cache) are the next one's clean leading
    # latent frames; pixels: its decoded tail PNGs, encoded again
    continuity_mode: str = "pixels"
    color_anchor: bool = False  # match each segment's colour statistics to the avatar
    # steps, solver, guidance interval, step cache, student: typed from JobOptions to the
    # pipeline call, unpacked once by generator.sampling.resolve_sampling
    sampling: SamplingRequest = SamplingRequest()

    def for_segment(self, spec: SegmentSpec) -> "RenderJob":
        """This job cut down to what one segment's render reads: the words and the plan's
        phases that overlap its render window (captions, timeline bar); everything else is
        kept. The render task gets this as its parameter, which Prefect walks and the task
        validates on every call: with the whole transcript there, each segment would cost
        time in proportion to the talk's length, and a long talk the square of it."""
        t0 = spec.render_start
        t1 = t0 + spec.render_seconds
        words = [w for w in self.transcript.words if w.end > t0 and w.start < t1]
        phases = [p for p in self.plan.phases if p.end > t0 and p.start < t1]
        return self.model_copy(
            update={
                "transcript": self.transcript.model_copy(update={"words": words}),
                "plan": self.plan.model_copy(update={"phases": phases}),
            }
        )


def segment_timeline(phases: list, start: float, end: float) -> list[PromptPhase]:
    """The phases the animatic's timeline bar shows for a render window: those overlapping it.

    Only the segment's own phases are drawn (on the whole-video bar, at their times), so a
    segment's pixels depend on nothing planned elsewhere: an edited phase re-renders only the
    segments it touches, and the stitched preview never shows a stale bar.
    """
    return [
        PromptPhase(p.action, p.start, p.end) for p in phases if p.end > start and p.start < end
    ]
