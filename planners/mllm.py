"""MLLMPlanner: plans (and training annotations) from any OpenAI-compatible chat server.

The exchange itself is `planners.llm.ask_json` (format negotiation remembered per endpoint,
prompt delivery check, one time budget, streaming, validate-and-repair); this module builds
the prompt, offers the tools (`list_words`, `check_plan`) when enabled, turns the answer
into a Plan checked by `validate_plan`, and falls back to the RulePlanner's plan with
`fallback_reason` (for people) and `fallback_kind` (for machines: the temporary kinds must
not be cached) when no valid answer comes. Only programming errors raise.

Every request is one `PlannerTurn` in `plan.trace`. The API key is redacted from anything
recorded, and never part of a prompt.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import openai

from planners.annotation import Annotation, make_annotation
from planners.endpoints import CapabilityStore
from planners.llm import (
    ChatEndpoint,
    JSONAnswer,
    Progress,
    Tools,
    ask_json,
    repair_text,
    strict_schema,
)
from planners.mllm_prompt import (
    SYSTEM_ANNOTATE,
    SYSTEM_PLAN,
    AnnotationAnswer,
    CheckPlan,
    ListWords,
    PlanAnswer,
    answer_phases,
    answer_to_plan,
    audio_part,
    bytes_data_url,
    image_data_url,
    numbered_words,
    plan_user_text,
    user_message,
)
from planners.mllm_settings import MLLMSettings
from planners.rules import RulePlanner
from planners.schema import BaseBlock, Plan, PlanRequest, Transcript, Word
from planners.validation import usable_cues, validate_plan

__all__ = [
    "MLLMPlanner",
    "allowed_actions",
    "max_phases",
    "repair_text",
    "strict_schema",
    "word_hints",
]

Build = Callable[[Any], tuple[Any, list[str]]]


def max_phases(request: PlanRequest) -> int:
    """Most phases a valid plan can hold: the density rule (k per window) and one word each."""
    c = request.constraints
    windows = math.ceil(request.transcript.duration / c.segment_seconds) + 1
    return max(1, min(len(request.transcript.words), c.max_phases_per_segment * windows))


def word_hints(n_words: int, actions: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Grammar hints: word indices can only be indices of existing words and, when free text
    is not allowed, actions only the allowed ones (a grammar-driven server then cannot
    produce an out-of-range phase or a foreign action; other servers ignore the hints)."""
    hints: dict[str, dict[str, Any]] = {}
    if 0 < n_words <= 2000:
        indices = {"enum": list(range(n_words))}
        hints = {"first_word": indices, "last_word": indices}
    if actions:
        hints["action"] = {"enum": list(dict.fromkeys(actions))}
    return hints


def allowed_actions(request: PlanRequest) -> list[str]:
    """The only actions a plan may use when free text is off (vocabulary and cue texts)."""
    c = request.constraints
    if c.allow_free_text:
        return []
    return [*c.vocabulary, *(q.text for q in usable_cues(request)[0])]


class MLLMPlanner:
    """Planner backed by a multimodal chat model; falls back to `fallback` (RulePlanner)."""

    name = "mllm"

    def __init__(
        self,
        settings: MLLMSettings | None = None,
        *,
        fallback: RulePlanner | None = None,
        client: openai.OpenAI | None = None,
        capabilities: CapabilityStore | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.settings = settings or MLLMSettings()
        self.fallback = fallback or RulePlanner()
        self.endpoint = ChatEndpoint(self.settings, client=client, store=capabilities)
        self.on_progress = on_progress

    @property
    def client(self) -> openai.OpenAI:
        """The openai client, created on first use (no network until a plan is requested)."""
        return self.endpoint.client

    # ------------------------------------------------------------------ plan
    def plan(self, request: PlanRequest) -> Plan:
        """A validated plan from the model, or the rule planner's with `fallback_reason`."""
        warnings = list(usable_cues(request)[1])
        images: list[str] = []
        if self.settings.send_image is not False and request.avatar_image:
            url = image_data_url(request.avatar_image)
            if url:
                images.append(url)
            else:
                warnings.append("avatar image not sent: missing, unreadable or too large")
        audio: list[dict] = []
        if self.settings.send_audio and request.speech_audio:
            part = audio_part(request.speech_audio)
            if part:
                audio.append(part)
            else:
                warnings.append("speech audio not sent: missing, not a WAV or too large")
        messages = [
            {"role": "system", "content": SYSTEM_PLAN},
            user_message(plan_user_text(request), images, audio),
        ]

        def build(answer: PlanAnswer) -> tuple[Plan, list[str]]:
            plan, errors = answer_to_plan(answer, request, self.name)
            return plan, errors + validate_plan(plan, request)

        out = self._ask(
            messages,
            PlanAnswer,
            build,
            self._plan_tools(request, build),
            max_phases(request),
            word_hints(len(request.transcript.words), allowed_actions(request)),
        )
        if out.result is not None:
            return out.result.model_copy(update={"trace": out.turns, "warnings": warnings})
        plan = self.fallback.plan(request)
        return plan.model_copy(
            update={
                **self._fallback_fields(out),
                "warnings": plan.warnings + [w for w in warnings if w not in plan.warnings],
            }
        )

    def _plan_tools(self, request: PlanRequest, build: Build) -> Tools:
        """Tool name -> (definition, arguments model, handler(arguments) -> text)."""
        words = request.transcript.words

        def list_words(args: ListWords) -> str:
            return numbered_words(words, args.first, args.last) or "no words in that range"

        def check_plan(args: CheckPlan) -> str:
            _, errors = build(args.plan)
            return "OK: the plan is valid" if not errors else repair_text(errors)

        return {
            "list_words": (
                openai.pydantic_function_tool(ListWords, name="list_words"),
                ListWords,
                list_words,
            ),
            "check_plan": (
                openai.pydantic_function_tool(CheckPlan, name="check_plan"),
                CheckPlan,
                check_plan,
            ),
        }

    # -------------------------------------------------------------- annotate
    def annotate(
        self,
        words: list[Word],
        frames: Sequence[bytes | str] | None = None,
        duration: float | None = None,
    ) -> Annotation:
        """Caption + base + phases (normalised anchors) for a training clip; rule fallback."""
        end = words[-1].end if words else 0.0
        duration = max(duration if duration is not None else end, end)
        request = PlanRequest(
            transcript=Transcript(words=words, duration=duration, aligner="annotation")
        )
        images = self._frame_urls(frames or [])
        text = f"Clip of {duration:.2f} s, {len(images)} frames evenly spaced.\n\n"
        messages = [
            {"role": "system", "content": SYSTEM_ANNOTATE},
            user_message(text + plan_user_text(request), images),
        ]

        def build(answer: AnnotationAnswer) -> tuple[tuple[str, Plan], list[str]]:
            phases, errors = answer_phases(answer.phases, words, request)
            plan = Plan(
                planner=self.name, base=BaseBlock(**answer.base.model_dump()), phases=phases
            )
            errors += validate_plan(plan, request)
            if not answer.caption.strip() or len(answer.caption) > 200:
                errors.append("caption must be a short non-empty sentence")
            return (answer.caption.strip(), plan), errors

        out = self._ask(
            messages, AnnotationAnswer, build, {}, max_phases(request), word_hints(len(words))
        )
        if out.result is not None:
            caption, plan = out.result
            return make_annotation(
                caption, plan.base, plan.phases, duration, self.name, trace=out.turns
            )
        ann = self.fallback.annotate(words, frames, duration)
        return ann.model_copy(update=self._fallback_fields(out))

    def _frame_urls(self, frames: Sequence[bytes | str]) -> list[str]:
        """Up to max_frames frames, evenly spaced, as data URLs (unreadable ones skipped)."""
        if self.settings.send_image is False or not frames or self.settings.max_frames == 0:
            return []
        k = min(len(frames), self.settings.max_frames)
        picked = [frames[round(i * (len(frames) - 1) / max(k - 1, 1))] for i in range(k)]
        urls = [bytes_data_url(f) if isinstance(f, bytes) else image_data_url(f) for f in picked]
        return [u for u in urls if u]

    # ------------------------------------------------------------------ ask
    def _ask(
        self,
        messages: list[dict[str, Any]],
        answer_model: type,
        build: Build,
        tools: Tools,
        max_items: int,
        hints: dict[str, dict[str, Any]],
    ) -> JSONAnswer:
        return ask_json(
            self.endpoint,
            messages,
            answer_model,
            build,
            tools=tools,
            max_items=max_items,
            grammar_hints=hints,
            on_progress=self.on_progress,
        )

    def _fallback_fields(self, out: JSONAnswer) -> dict[str, Any]:
        failure = out.failure
        reason = failure.message if failure else "no answer"
        return {
            "fallback_reason": (
                f"mllm planner ({self.settings.model}) failed, rule planner used: {reason}"
            ),
            "fallback_kind": failure.kind if failure else "invalid_answer",
            "trace": out.turns,
        }
