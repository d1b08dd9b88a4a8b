"""RulePlanner: the offline, deterministic default planner and the MLLM planner's fallback.

Placement order (what wins when phases compete for words or for a segment window):

1. author cues, always, in word order: a cue at word i starts a phase at word i that grows
   over the following words toward `target_seconds` (within min..max), never past the next
   cue's word and stopping at a sentence end once it reached the minimum;
2. lexicon matches by priority greeting > closing > enumeration > question > pointing >
   emphasis, earlier words first within a category. A match is kept only if it does not
   touch words already taken, reaches min_phase_seconds (unless the whole transcript is
   shorter), and keeps every run of k+1 phases at least segment_seconds apart (k =
   max_phases_per_segment); otherwise it is dropped.

Everything is a pure function of the request, so the same request gives the same plan.
"""

import re
from collections.abc import Sequence

from planners.actions import unsafe_reason
from planners.annotation import Annotation, make_annotation
from planners.lexicon import Candidate, find_candidates, sentence_spans
from planners.schema import (
    BaseBlock,
    Phase,
    Plan,
    PlanConstraints,
    PlanRequest,
    Transcript,
    Word,
)
from planners.snapping import phase_from_words, span_seconds
from planners.validation import MAX_BASE_FIELD_CHARS, TIME_EPS, can_reach_min, usable_cues

_BASE_KEYS = {
    "identity": "identity",
    "person": "identity",
    "speaker": "identity",
    "scene": "scene",
    "setting": "scene",
    "background": "scene",
    "environment": "scene",
    "mood": "mood",
    "tone": "mood",
    "emotion": "mood",
    "style": "style",
    "look": "style",
    "motion": "motion",
    "movement": "motion",
}
_MOODS = (
    (
        r"energetic|excited|enthusiastic|upbeat|lively|dynamic",
        "energetic and enthusiastic",
        "lively upper-body movement, expressive hands",
    ),
    (r"serious|formal|corporate|business|professional", "confident and professional", None),
    (r"warm|friendly|cheerful|happy", "warm and cheerful", None),
    (r"calm|relaxed|gentle|soothing", "calm and relaxed", "slow, gentle movement"),
    (r"sad|somber|sombre|sincere|empathetic", "calm and sincere", "slow, restrained movement"),
)


def base_block(request: PlanRequest) -> tuple[BaseBlock, list[str]]:
    """Base block from the style text ('key: value' parts or free text), title and scenes."""
    default = BaseBlock()
    fields: dict[str, str] = {}
    free: list[str] = []
    for part in re.split(r"[;\n]+", request.style):
        part = part.strip()
        key, sep, value = part.partition(":")
        if sep and key.strip().casefold() in _BASE_KEYS and value.strip():
            fields.setdefault(_BASE_KEYS[key.strip().casefold()], value.strip())
        elif part:
            free.append(part)
    style_text = ", ".join(free)
    if style_text and "style" not in fields:
        fields["style"] = style_text
    if "scene" not in fields:
        scene_styles = [s.style.strip() for s in request.scenes if s.style.strip()]
        if scene_styles:
            fields["scene"] = scene_styles[0]
    if "identity" not in fields and request.title.strip():
        fields["identity"] = f"{default.identity} about {request.title.strip()}"
    for pattern, mood, motion in _MOODS:
        if re.search(pattern, request.style, re.I):
            fields.setdefault("mood", mood)
            if motion:
                fields.setdefault("motion", motion)
            break
    warnings = []
    for name, value in list(fields.items()):
        reason = unsafe_reason(value, MAX_BASE_FIELD_CHARS)
        if reason:
            warnings.append(f"base.{name} from the script ignored: it {reason}")
            del fields[name]
    return default.model_copy(update=fields), warnings


class RulePlanner:
    """Cues plus a small lexicon of speech cues; see the module docstring for priorities."""

    name = "rules"

    def __init__(self, target_seconds: float = 1.6) -> None:
        self.target_seconds = target_seconds

    def plan(self, request: PlanRequest) -> Plan:
        """A valid plan for `request` (valid in the sense of `validate_plan`)."""
        words = request.transcript.words
        c = request.constraints
        target = min(max(self.target_seconds, c.min_phase_seconds), c.max_phase_seconds)
        ends = {last for _, last, _ in sentence_spans(request)}
        base, warnings = base_block(request)
        cues, cue_warnings = usable_cues(request)
        phases: list[Phase] = []
        for j, cue in enumerate(cues):
            hi = cues[j + 1].word_index - 1 if j + 1 < len(cues) else len(words) - 1
            first, last = _grow(
                words,
                cue.word_index,
                cue.word_index,
                cue.word_index,
                hi,
                c,
                target,
                "forward",
                ends,
                backward=False,
            )
            phases.append(phase_from_words(words, first, last, cue.text, "cue"))
        for cand in find_candidates(request):
            phase = self._place(cand, phases, words, c, target, ends)
            if phase is not None:
                phases.append(phase)
                phases.sort(key=lambda p: p.first_word)
        return Plan(planner=self.name, base=base, phases=phases, warnings=warnings + cue_warnings)

    def _place(
        self,
        cand: Candidate,
        phases: list[Phase],
        words: Sequence[Word],
        c: PlanConstraints,
        target: float,
        ends: set[int],
    ) -> Phase | None:
        """The candidate as a phase if it fits between the phases already placed, else None."""
        if any(p.first_word <= cand.last and cand.first <= p.last_word for p in phases):
            return None
        before = [p for p in phases if p.last_word < cand.first]
        after = [p for p in phases if p.first_word > cand.last]
        lo = before[-1].last_word + 1 if before else 0
        hi = after[0].first_word - 1 if after else len(words) - 1
        first, last = cand.first, cand.last
        if span_seconds(words, first, last) > c.max_phase_seconds + TIME_EPS:
            last = first  # a two-word trigger ("a few") longer than the maximum
        first, last = _grow(words, first, last, lo, hi, c, target, cand.grow, ends)
        d = span_seconds(words, first, last)
        alone = not phases and lo == 0 and hi == len(words) - 1
        if d < c.min_phase_seconds - TIME_EPS and not (
            alone and not can_reach_min(words, first, last, lo, hi, c)
        ):
            return None
        phase = phase_from_words(words, first, last, cand.action, "lexicon")
        trial = sorted([*phases, phase], key=lambda p: p.first_word)
        idx = trial.index(phase)
        k, s = c.max_phases_per_segment, c.segment_seconds
        for j in range(max(0, idx - k), idx + 1):
            if j + k < len(trial) and trial[j + k].start - trial[j].end < s - TIME_EPS:
                return None
        return phase

    def annotate(
        self,
        words: list[Word],
        frames: Sequence[bytes | str] | None = None,
        duration: float | None = None,
    ) -> Annotation:
        """Offline annotation of a clip from its words (frames are ignored: no vision here)."""
        duration = duration if duration is not None else (words[-1].end if words else 0.0)
        duration = max(duration, words[-1].end if words else 0.0)
        request = PlanRequest(
            transcript=Transcript(words=words, duration=duration, aligner="annotation")
        )
        plan = self.plan(request)
        return make_annotation(
            "A person speaking to the camera", plan.base, plan.phases, duration, self.name
        )


def _grow(
    words: Sequence[Word],
    first: int,
    last: int,
    lo: int,
    hi: int,
    c: PlanConstraints,
    target: float,
    prefer: str,
    ends: set[int],
    backward: bool = True,
) -> tuple[int, int]:
    """Extend [first, last] one word at a time inside [lo, hi] toward `target` seconds.

    Grows in the preferred direction first, never beyond max_phase_seconds. Once the
    minimum is reached it does not cross a sentence boundary (forward past a sentence end,
    backward before a sentence start), so a gesture stays with its sentence when it can.
    """
    while span_seconds(words, first, last) < target - TIME_EPS:
        settled = span_seconds(words, first, last) >= c.min_phase_seconds - TIME_EPS
        fwd_ok = (
            last + 1 <= hi
            and span_seconds(words, first, last + 1) <= c.max_phase_seconds + TIME_EPS
            and not (settled and last in ends)
        )
        back_ok = (
            backward
            and first - 1 >= lo
            and span_seconds(words, first - 1, last) <= c.max_phase_seconds + TIME_EPS
            and not (settled and first - 1 in ends)
        )
        if prefer == "backward" and back_ok:
            first -= 1
        elif fwd_ok:
            last += 1
        elif back_ok and (prefer == "backward" or not (settled and last in ends)):
            first -= 1
        else:
            break
    return first, last
