"""Training annotations: the same base + phase blocks, plus what the two training stages need.

Stage 1 trains on brief captions ("A person speaking"); stage 2 on structured prompts whose
phase windows are normalised time anchors tau in [0, 1] of the clip (paper §3.2). Phases
stay word-snapped in seconds so the dataset builder can cut clips on word boundaries.
"""

from pydantic import BaseModel, Field

from planners.schema import BaseBlock, Phase, PlannerTurn


class Annotation(BaseModel):
    """One clip's annotation: caption (stage 1) and structured prompt with anchors (stage 2)."""

    caption: str
    base: BaseBlock
    phases: list[Phase] = Field(default_factory=list)
    # (tau_start, tau_end) per phase, normalised by `duration`, rounded to 1e-4.
    anchors: list[tuple[float, float]] = Field(default_factory=list)
    duration: float = Field(ge=0)
    planner: str
    fallback_reason: str | None = None
    fallback_kind: str | None = None  # as Plan.fallback_kind
    trace: list[PlannerTurn] = Field(default_factory=list, exclude=True)

    def render(self) -> str:
        """The structured prompt as text: base block, then one line per phase with its anchor."""
        lines = [f"Base: {self.base.render()}"]
        for k, (p, (a, b)) in enumerate(zip(self.phases, self.anchors, strict=True), 1):
            lines.append(f"Phase {k} [{a:.2f}-{b:.2f}]: {p.action}")
        return "\n".join(lines)


def normalised_anchors(phases: list[Phase], duration: float) -> list[tuple[float, float]]:
    """Phase windows as fractions of the clip, clamped to [0, 1]."""
    if duration <= 0:
        return [(0.0, 1.0) for _ in phases]

    def f(t: float) -> float:
        return round(min(1.0, max(0.0, t / duration)), 4)

    return [(f(p.start), f(p.end)) for p in phases]


def make_annotation(
    caption: str,
    base: BaseBlock,
    phases: list[Phase],
    duration: float,
    planner: str,
    fallback_reason: str | None = None,
    trace: list[PlannerTurn] | None = None,
) -> Annotation:
    """An Annotation with phases marked as annotations and anchors computed from them."""
    phases = [p.model_copy(update={"source": "annotation"}) for p in phases]
    return Annotation(
        caption=caption,
        base=base,
        phases=phases,
        anchors=normalised_anchors(phases, duration),
        duration=duration,
        planner=planner,
        fallback_reason=fallback_reason,
        trace=trace or [],
    )
