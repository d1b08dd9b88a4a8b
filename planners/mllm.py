"""MLLMPlanner: plans (and training annotations) from any OpenAI-compatible chat server.

The loop, bounded everywhere:

1. send the request with the strongest answer format the server accepts
   (json_schema strict -> json_object -> plain text; a 400 moves one step down, and the
   planner remembers it for later calls). Tools (`list_words`, `check_plan`) are offered
   when enabled; a 400 about tools switches them off;
2. tool calls are executed and answered, at most `max_tool_steps` rounds;
3. every answer is parsed (JSON extracted from prose if needed) and checked with
   `validate_plan`; errors go back to the model for at most `max_repair_turns` repairs;
4. when no valid plan comes out, or the server times out / cannot be reached / fails, the
   RulePlanner's plan is returned with `fallback_reason` set. Only programming errors raise.

Every request is one `PlannerTurn` in `plan.trace`. The API key is redacted from anything
recorded, and never part of a prompt.
"""

import json
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import openai
from pydantic import BaseModel, ValidationError

from planners.annotation import Annotation, make_annotation
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
    parse_answer,
    plan_user_text,
    prompt_hash,
    summarise_messages,
    user_message,
    validation_messages,
)
from planners.mllm_settings import MLLMSettings
from planners.rules import RulePlanner
from planners.schema import BaseBlock, Plan, PlannerTurn, PlanRequest, Transcript, Word
from planners.validation import usable_cues, validate_plan

try:  # the converter chat.completions.parse uses; private path, so keep a fallback
    from openai.lib._pydantic import to_strict_json_schema
except ImportError:  # pragma: no cover - depends on the installed openai version
    to_strict_json_schema = None  # type: ignore[assignment]

_NEXT_MODE = {"json_schema": "json_object", "json_object": "text"}

Build = Callable[[Any], tuple[Any, list[str]]]


class _Outcome(NamedTuple):
    result: Any
    trace: list[PlannerTurn]
    reason: str | None


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Strict JSON schema (all properties required, no additional ones) for `model`."""
    if to_strict_json_schema is not None:
        return to_strict_json_schema(model)
    return model.model_json_schema()  # pragma: no cover


def repair_text(errors: Sequence[str]) -> str:
    """The user message of a repair turn."""
    lines = "\n".join(f"- {e}" for e in errors[:20])
    return (
        f"Your answer breaks these rules:\n{lines}\nReturn the complete corrected JSON object only."
    )


class MLLMPlanner:
    """Planner backed by a multimodal chat model; falls back to `fallback` (RulePlanner)."""

    name = "mllm"

    def __init__(
        self,
        settings: MLLMSettings | None = None,
        *,
        fallback: RulePlanner | None = None,
        client: openai.OpenAI | None = None,
    ) -> None:
        self.settings = settings or MLLMSettings()
        self.fallback = fallback or RulePlanner()
        self._client = client
        mode = self.settings.structured_outputs
        self._mode = "json_schema" if mode == "auto" else mode
        self._tools_ok = self.settings.use_tools
        self._omit: set[str] = set()  # sampling parameters the server refused

    @property
    def client(self) -> openai.OpenAI:
        """The openai client, created on first use (no network until a plan is requested)."""
        if self._client is None:
            s = self.settings
            self._client = openai.OpenAI(
                api_key=s.api_key.get_secret_value() or "EMPTY",
                base_url=s.base_url,
                timeout=s.timeout,
                max_retries=s.max_retries,
            )
        return self._client

    # ------------------------------------------------------------------ plan
    def plan(self, request: PlanRequest) -> Plan:
        """A validated plan from the model, or the rule planner's with `fallback_reason`."""
        warnings = list(usable_cues(request)[1])
        images: list[str] = []
        if self.settings.send_image and request.avatar_image:
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

        tools = self._plan_tools(request, build)
        out = self._loop(messages, PlanAnswer, build, tools)
        if out.result is not None:
            return out.result.model_copy(update={"trace": out.trace, "warnings": warnings})
        plan = self.fallback.plan(request)
        return plan.model_copy(
            update={
                "fallback_reason": self._reason(out.reason),
                "trace": out.trace,
                "warnings": plan.warnings + [w for w in warnings if w not in plan.warnings],
            }
        )

    def _plan_tools(self, request: PlanRequest, build: Build) -> dict[str, Any]:
        """Tool name -> (definition, handler(arguments json) -> text)."""
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

        out = self._loop(messages, AnnotationAnswer, build, {})
        if out.result is not None:
            caption, plan = out.result
            return make_annotation(
                caption, plan.base, plan.phases, duration, self.name, trace=out.trace
            )
        ann = self.fallback.annotate(words, frames, duration)
        return ann.model_copy(
            update={"fallback_reason": self._reason(out.reason), "trace": out.trace}
        )

    def _frame_urls(self, frames: Sequence[bytes | str]) -> list[str]:
        """Up to max_frames frames, evenly spaced, as data URLs (unreadable ones skipped)."""
        if not self.settings.send_image or not frames or self.settings.max_frames == 0:
            return []
        k = min(len(frames), self.settings.max_frames)
        picked = [frames[round(i * (len(frames) - 1) / max(k - 1, 1))] for i in range(k)]
        urls = [bytes_data_url(f) if isinstance(f, bytes) else image_data_url(f) for f in picked]
        return [u for u in urls if u]

    # ------------------------------------------------------------------ loop
    def _loop(
        self,
        messages: list[dict[str, Any]],
        answer_model: type[BaseModel],
        build: Build,
        tools: dict[str, Any],
    ) -> _Outcome:
        """Ask, run tools, validate, repair; see the module docstring."""
        s = self.settings
        trace: list[PlannerTurn] = []
        messages = list(messages)
        repairs = tool_steps = 0
        next_kind = "plan"
        while True:
            offer = tools if self._tools_ok and tool_steps < s.max_tool_steps else {}
            turn = PlannerTurn(
                index=len(trace),
                kind=next_kind,
                messages=summarise_messages(messages),
                prompt_sha256=prompt_hash(messages),
                response_format=self._mode + ("+tools" if offer else ""),
                model=s.model,
            )
            t0 = time.monotonic()
            try:
                completion = self.client.chat.completions.create(
                    **self._request(messages, answer_model, offer)
                )
            except openai.BadRequestError as err:
                turn.kind, turn.seconds = "degrade", time.monotonic() - t0
                turn.errors = [f"HTTP 400: {_message(err)}"]
                trace.append(turn)
                if self._degrade(err, bool(offer)):
                    continue
                return self._done(None, trace, f"server rejected the request: {_message(err)}")
            except openai.APITimeoutError:
                return self._failed(turn, t0, trace, f"timeout after {s.timeout:g} s")
            except openai.APIConnectionError as err:
                return self._failed(turn, t0, trace, f"cannot reach the server: {err}")
            except openai.APIStatusError as err:
                return self._failed(
                    turn, t0, trace, f"server answered HTTP {err.status_code}: {_message(err)}"
                )
            except openai.OpenAIError as err:
                return self._failed(turn, t0, trace, f"{type(err).__name__}: {err}")
            turn.seconds = time.monotonic() - t0
            if completion.usage is not None:
                turn.prompt_tokens = completion.usage.prompt_tokens
                turn.completion_tokens = completion.usage.completion_tokens
            if not completion.choices:
                turn.kind, turn.errors = "error", ["the server returned no choices"]
                trace.append(turn)
                return self._done(None, trace, "the server returned no choices")
            choice = completion.choices[0]
            msg = choice.message
            text = msg.content or ""
            turn.answer = text
            if msg.tool_calls and offer:
                tool_steps += 1
                turn.kind = "tool"
                messages.append(_assistant_with_tools(msg))
                for call in msg.tool_calls:
                    name, args = call.function.name, call.function.arguments or "{}"
                    turn.tool_calls.append(f"{name}({args[:300]})")
                    messages.append(
                        {
                            "role": "tool",
                            "tool_call_id": call.id,
                            "content": _run_tool(offer, name, args),
                        }
                    )
                trace.append(turn)
                continue
            result, errors = None, []
            if choice.finish_reason == "length":
                errors = ["the answer was cut off (length); return a shorter JSON object"]
            else:
                answer, errors = parse_answer(text, answer_model)
                if answer is not None:
                    result, errors = build(answer)
            turn.errors = errors
            trace.append(turn)
            if not errors:
                return self._done(result, trace, None)
            if repairs >= s.max_repair_turns:
                answers = sum(t.kind in ("plan", "repair") for t in trace)
                head = "; ".join(errors[:3])
                return self._done(None, trace, f"no valid answer after {answers} answers: {head}")
            repairs += 1
            next_kind = "repair"
            messages.append({"role": "assistant", "content": text})
            messages.append({"role": "user", "content": repair_text(errors)})

    def _request(
        self, messages: list[dict[str, Any]], answer_model: type[BaseModel], tools: dict[str, Any]
    ) -> dict[str, Any]:
        """Keyword arguments of chat.completions.create for the current answer format."""
        s = self.settings
        kw: dict[str, Any] = {"model": s.model, "messages": messages}
        if "temperature" not in self._omit:
            kw["temperature"] = s.temperature
        if s.seed is not None and "seed" not in self._omit:
            kw["seed"] = s.seed
        if self._mode == "json_schema":
            kw["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": answer_model.__name__,
                    "schema": strict_schema(answer_model),
                    "strict": True,
                },
            }
        elif self._mode == "json_object":
            kw["response_format"] = {"type": "json_object"}
        if tools:
            kw["tools"] = [definition for definition, _, _ in tools.values()]
        return kw

    def _degrade(self, err: openai.BadRequestError, tools_sent: bool) -> bool:
        """After a 400: drop a refused sampling parameter (reasoning models refuse
        temperature), drop tools, or step down the answer format; False if nothing is left."""
        text = _message(err).lower()
        for param in ("temperature", "seed"):
            if param in text and param not in self._omit:
                self._omit.add(param)
                return True
        can_step = self.settings.structured_outputs != "json_schema" and self._mode in _NEXT_MODE
        if tools_sent and ("tool" in text or "function" in text or not can_step):
            self._tools_ok = False
            return True
        if can_step:
            self._mode = _NEXT_MODE[self._mode]
            return True
        return False

    def _failed(
        self, turn: PlannerTurn, t0: float, trace: list[PlannerTurn], reason: str
    ) -> _Outcome:
        turn.kind, turn.seconds, turn.errors = "error", time.monotonic() - t0, [reason]
        trace.append(turn)
        return self._done(None, trace, reason)

    def _done(self, result: Any, trace: list[PlannerTurn], reason: str | None) -> _Outcome:
        """Redact the key from everything recorded before it leaves the planner."""
        return _Outcome(result, [self._redact_turn(t) for t in trace], self._redact(reason))

    def _reason(self, reason: str | None) -> str:
        return f"mllm planner ({self.settings.model}) failed, rule planner used: {reason}"

    def _redact(self, text: str | None) -> str | None:
        key = self.settings.api_key.get_secret_value()
        if text is None or len(key) < 8:
            return text
        return text.replace(key, "***")

    def _redact_turn(self, turn: PlannerTurn) -> PlannerTurn:
        r = self._redact
        return turn.model_copy(
            update={
                "answer": r(turn.answer),
                "messages": [r(m) for m in turn.messages],
                "errors": [r(e) for e in turn.errors],
                "tool_calls": [r(c) for c in turn.tool_calls],
            }
        )


def _message(err: openai.APIStatusError) -> str:
    """The server's error text (OpenAI-style body or raw), short."""
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        msg = inner.get("message") if isinstance(inner, dict) else inner
        return str(msg)[:500]
    return str(err.message)[:500]


def _assistant_with_tools(msg: Any) -> dict[str, Any]:
    """The assistant message echoed back so tool results can refer to its calls."""
    return {
        "role": "assistant",
        "content": msg.content,
        "tool_calls": [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.function.name, "arguments": c.function.arguments},
            }
            for c in msg.tool_calls
        ],
    }


def _run_tool(tools: dict[str, Any], name: str, arguments: str) -> str:
    """Execute one tool call; bad names or arguments become text the model can read."""
    if name not in tools:
        return f"unknown tool {name!r}; available: {sorted(tools)}"
    _, model, handler = tools[name]
    try:
        args = model.model_validate(json.loads(arguments))
    except ValueError as err:
        lines = validation_messages(err) if isinstance(err, ValidationError) else [str(err)]
        return "invalid arguments: " + "; ".join(lines)
    return handler(args)
