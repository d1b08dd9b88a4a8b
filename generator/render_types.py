"""What a renderer receives and returns. Plain data: no scripts, no databases.

`flows/` builds a `RenderRequest` per segment; a renderer (the `animatic` preview or the
`actavatar` diffusion pipeline) turns it into frames.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class PromptPhase:
    """A phase block on the segment's own clock (seconds from the segment start)."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class StructuredPrompt:
    """ActAvatar's structured prompt: a base block plus time-anchored phase blocks."""

    base: str
    phases: tuple[PromptPhase, ...] = ()
    duration: float = 5.0  # seconds the prompt's clock spans (for normalised anchors)

    def normalised(self) -> list[tuple[str, float, float]]:
        """Phases with anchors in [0, 1] of the clip, as the paper writes T_k."""
        d = max(self.duration, 1e-6)
        return [(p.text, max(0.0, p.start / d), min(1.0, p.end / d)) for p in self.phases]


@dataclass(frozen=True)
class CaptionWord:
    word: str
    start: float  # seconds on the segment clock
    end: float


@dataclass
class RenderRequest:
    """One segment to render."""

    index: int
    num_frames: int  # 4k+1
    fps: int
    width: int
    height: int
    audio: np.ndarray  # float32 mono at `sample_rate`, exactly the segment's span
    prompt: StructuredPrompt
    image: Image.Image  # continuity input: the avatar for the first segment, else the previous tail
    sample_rate: int = 16000
    seed: int = 0
    # The avatar image itself (the animatic draws it; diffusion renderers colour-match to it).
    reference_image: Image.Image | None = None
    # How many leading frames repeat the end of the previous segment (dropped by the stitch).
    overlap_frames: int = 0
    # Extra continuity frames (previous segment's tail, oldest first); empty for the first segment.
    context_frames: list[Image.Image] = field(default_factory=list)
    # Latent continuity: the previous segment's last shown latent frames (z, c, h, w), float32,
    # normalised as the pipeline's latents; a renderer that takes them writes them as its
    # clean leading latent frames instead of encoding `context_frames` (None: pixels).
    context_latents: np.ndarray | None = None
    # Preview helpers (used by the animatic, ignored by diffusion renderers).
    captions: list[CaptionWord] = field(default_factory=list)
    segment_start: float = 0.0  # where this segment starts in the whole video, seconds
    total_duration: float = 0.0  # length of the whole video, seconds
    timeline_phases: list[PromptPhase] = field(default_factory=list)  # whole-video clock
    timeline_cuts: list[float] = field(default_factory=list)  # segment boundaries, seconds
    title: str = ""


class ProgressFn(Protocol):
    def __call__(self, done: int, total: int) -> None: ...


class Renderer(Protocol):
    """Turns a segment into frames: uint8 array of shape (num_frames, height, width, 3).

    `last_stats` and `model_note` are what the run report says about the last render: its
    counts (e.g. `evaluations`, model forwards per clip) and which model rendered (None when
    the renderer has only one). A renderer that hands latents on (latent continuity) also
    sets `last_latents`: the last render's clean latents (z, F, h, w) float32 numpy, the Wan
    VAE's 1 + 4k layout (latent 0 = frame 0, latent j = frames 4j-3..4j)."""

    name: str
    last_stats: Mapping[str, Any]
    model_note: str | None

    def render(self, request: RenderRequest, progress: ProgressFn | None = None) -> np.ndarray: ...
