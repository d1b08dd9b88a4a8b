"""`validate_plan`: every rule an accepted plan satisfies, as human-readable errors.

The messages are written for two readers: a person looking at a failed job, and the MLLM
that gets them back in a repair turn, so each one names the phase and says what to change.

Rules (constraints come from `request.constraints`):

1. word indices in range, first_word <= last_word;
2. start/end equal the first word's start and the last word's end (word boundaries);
3. phases ordered by time and non-overlapping (disjoint word ranges);
4. duration within [min_phase_seconds, max_phase_seconds], with two exceptions that exist
   because the words leave no choice:
   - *too short* is allowed when no word range that contains the phase, stays inside the
     free words around it (between its neighbours, or the transcript ends) and lasts at most
     max_phase_seconds reaches min_phase_seconds: a very short transcript ("Hello!"), or an
     author cue squeezed by the next cue. A phase that covers an author cue may only grow
     forward, because a cue pins its phase to start at the cue word;
   - *too long* is allowed for a single word longer than the maximum (cannot be shortened);
5. density: at most `max_phases_per_segment` (k) phases overlap any window of
   `segment_seconds` (S), checked as phases[i+k].start - phases[i].end >= S. This is exact
   for ordered disjoint phases and guarantees that any later segment of length <= S carries
   at most k phases. Runs made only of cue-covering phases are exempt: the author asked for
   them, and cues are always honoured;
6. every usable cue covered: a phase containing the cue word whose action contains the cue
   text (see `usable_cues` for clamping, merging and dropping of unusable cues);
7. vocabulary respected unless allow_free_text (cue phases exempt: the author chose the text);
8. concrete visible action (not about lips/mouth/speaking/voice, not empty or vague; cue
   phases exempt);
9. nothing smuggled in: no instruction-like text, links, code, or more than 120 characters
   (applies to every phase, cues included); base-block fields non-empty, at most
   300 characters and equally clean.
"""

from collections.abc import Sequence

from planners.actions import (
    normalise_action,
    sanitise_action,
    unsafe_reason,
    visibility_reason,
)
from planners.schema import BaseBlock, Cue, Phase, Plan, PlanConstraints, PlanRequest, Word
from planners.snapping import (
    nearest_boundary,
    phase_from_words,
    snap_window,
    span_seconds,
    word_boundaries,
)

TIME_EPS = 1e-3  # seconds; words are timed to milliseconds at best
MAX_BASE_FIELD_CHARS = 300

__all__ = [
    "MAX_BASE_FIELD_CHARS",
    "TIME_EPS",
    "base_errors",
    "can_reach_min",
    "covers_cue",
    "nearest_boundary",
    "phase_from_words",
    "snap_window",
    "usable_cues",
    "validate_plan",
    "word_boundaries",
]


def usable_cues(request: PlanRequest) -> tuple[list[Cue], list[str]]:
    """The cues a plan must honour, and warnings about the ones it cannot.

    - no words: nothing can be pinned, every cue is dropped;
    - index past the last word (script and aligned words disagree): clamped to the last word;
    - text cleaned with `sanitise_action`; empty or unsafe text (instructions, links, code)
      is dropped, so an injected cue never reaches the renderer;
    - several cues on one word are merged into one "A then B" action (the first one alone
      if the merged text would be too long), because two phases cannot start on one word.
    """
    n = len(request.transcript.words)
    warnings: list[str] = []
    by_word: dict[int, list[str]] = {}
    for cue in request.cues:
        if n == 0:
            warnings.append(f"cue [[{cue.text}]] dropped: the transcript has no words")
            continue
        idx = cue.word_index
        if idx >= n:
            warnings.append(f"cue [[{cue.text}]] at word {idx} clamped to the last word {n - 1}")
            idx = n - 1
        text = sanitise_action(cue.text)
        reason = unsafe_reason(text) if text else "is empty"
        if reason:
            warnings.append(f"cue [[{cue.text[:60]}]] dropped: it {reason}")
            continue
        by_word.setdefault(idx, []).append(text)
    cues: list[Cue] = []
    for idx in sorted(by_word):
        texts = by_word[idx]
        merged = " then ".join(texts)
        if unsafe_reason(merged):
            warnings.append(f"cues on word {idx} too long to merge; kept [[{texts[0]}]] only")
            merged = texts[0]
        cues.append(Cue(text=merged, word_index=idx))
    return cues, warnings


def covers_cue(phase: Phase, cue: Cue) -> bool:
    """Whether `phase` honours `cue`: contains the cue word and carries the cue text."""
    return phase.first_word <= cue.word_index <= phase.last_word and normalise_action(
        cue.text
    ) in normalise_action(phase.action)


def can_reach_min(
    words: Sequence[Word], first: int, last: int, lo: int, hi: int, c: PlanConstraints
) -> bool:
    """Whether some range [a, b] with lo <= a <= first, last <= b <= hi lasts min..max s."""
    for a in range(first, lo - 1, -1):
        if span_seconds(words, a, last) > c.max_phase_seconds + TIME_EPS:
            break
        for b in range(last, hi + 1):
            d = span_seconds(words, a, b)
            if d > c.max_phase_seconds + TIME_EPS:
                break
            if d >= c.min_phase_seconds - TIME_EPS:
                return True
    return False


def base_errors(base: BaseBlock) -> list[str]:
    """Base-block fields must be present and clean: they go into every segment's prompt."""
    errors = []
    for name, value in base.model_dump().items():
        if not str(value).strip():
            errors.append(f"base.{name} is empty")
            continue
        reason = unsafe_reason(str(value), MAX_BASE_FIELD_CHARS)
        if reason:
            errors.append(f"base.{name} {reason}")
    return errors


def _label(i: int, p: Phase) -> str:
    return f"phases[{i}] (words {p.first_word}..{p.last_word}, {p.action[:40]!r})"


def _check_phase(
    i: int, p: Phase, words: Sequence[Word], c: PlanConstraints, is_cue: bool
) -> list[str]:
    """Rules that look at one phase alone (text and word boundaries)."""
    errors: list[str] = []
    lab = _label(i, p)
    reason = unsafe_reason(p.action)
    if reason:
        errors.append(f"{lab}: action {reason}; write a short plain gesture description")
    if not is_cue:
        reason = visibility_reason(p.action)
        if reason:
            errors.append(f"{lab}: action {reason}")
        if not c.allow_free_text and normalise_action(p.action) not in {
            normalise_action(v) for v in c.vocabulary
        }:
            errors.append(
                f"{lab}: action is not in the vocabulary; use one of {list(c.vocabulary)}"
            )
    fw, lw = words[p.first_word], words[p.last_word]
    if abs(p.start - fw.start) > TIME_EPS or abs(p.end - lw.end) > TIME_EPS:
        errors.append(
            f"{lab}: start/end {p.start:.3f}-{p.end:.3f} s are not on word boundaries; "
            f"words {p.first_word}..{p.last_word} span {fw.start:.3f}-{lw.end:.3f} s"
        )
    return errors


def _check_duration(
    i: int, phases: list[Phase], words: Sequence[Word], c: PlanConstraints, cue_flags: list[bool]
) -> list[str]:
    """Duration limits, with the 'words leave no choice' exceptions (module docstring, rule 4)."""
    p = phases[i]
    d = span_seconds(words, p.first_word, p.last_word)
    if d > c.max_phase_seconds + TIME_EPS and p.first_word != p.last_word:
        return [
            f"{_label(i, p)}: lasts {d:.2f} s, longer than max_phase_seconds "
            f"{c.max_phase_seconds:g}; end it on an earlier word"
        ]
    if d >= c.min_phase_seconds - TIME_EPS:
        return []
    lo = phases[i - 1].last_word + 1 if i > 0 else 0
    hi = phases[i + 1].first_word - 1 if i + 1 < len(phases) else len(words) - 1
    if cue_flags[i]:
        lo = p.first_word
    lo, hi = min(lo, p.first_word), max(hi, p.last_word)
    if not can_reach_min(words, p.first_word, p.last_word, lo, hi, c):
        return []
    return [
        f"{_label(i, p)}: lasts {d:.2f} s, shorter than min_phase_seconds "
        f"{c.min_phase_seconds:g}; extend it over neighbouring words"
    ]


def validate_plan(plan: Plan, request: PlanRequest) -> list[str]:
    """Human-readable reasons why `plan` breaks the rules of `request`; empty when valid."""
    words = request.transcript.words
    c = request.constraints
    n = len(words)
    errors: list[str] = base_errors(plan.base)
    phases = list(plan.phases)
    in_range = True
    for i, p in enumerate(phases):
        if not (0 <= p.first_word <= p.last_word < n):
            in_range = False
            errors.append(
                f"{_label(i, p)}: word indices must satisfy 0 <= first_word <= last_word <= {n - 1}"
            )
    cues, _ = usable_cues(request)
    if not in_range:
        # Nothing else can be checked against words that do not exist.
        return errors
    cue_flags = [any(covers_cue(p, q) for q in cues) for p in phases]
    for i, p in enumerate(phases):
        errors += _check_phase(i, p, words, c, cue_flags[i])
    ordered = True
    for i in range(1, len(phases)):
        a, b = phases[i - 1], phases[i]
        if b.first_word <= a.last_word or b.start < a.end - TIME_EPS:
            ordered = False
            errors.append(
                f"{_label(i, b)} overlaps or precedes {_label(i - 1, a)}: phases must be in "
                "time order with disjoint word ranges"
            )
    if ordered:
        for i in range(len(phases)):
            errors += _check_duration(i, phases, words, c, cue_flags)
        k, s = c.max_phases_per_segment, c.segment_seconds
        for i in range(len(phases) - k):
            a, b = phases[i], phases[i + k]
            gap = b.start - a.end
            if gap < s - TIME_EPS and not all(cue_flags[i : i + k + 1]):
                errors.append(
                    f"phases[{i}]..phases[{i + k}] fall within one {s:g}-s window: at most {k} "
                    f"phases may overlap any {s:g}-s window, so phases[{i + k}] must start at "
                    f"least {s:g} s after phases[{i}] ends (at or after {a.end + s:.2f} s); "
                    "move or drop one"
                )
    for cue in cues:
        if not any(covers_cue(p, cue) for p in phases):
            errors.append(
                f"cue [[{cue.text}]] at word {cue.word_index} ({words[cue.word_index].word!r}) "
                "is not honoured: add a phase containing that word whose action is the cue text"
            )
    return errors
