"""`ask_json`: one validated JSON answer from any OpenAI-compatible chat server, in bounded time.

The one exchange loop behind the MLLM planner and the MLLM judge. What it does, and why:

1. **Prompt delivery is checked, not assumed.** Some servers silently drop list-of-parts
   content (llama-cpp-python without a chat template) or image parts. Once per endpoint a
   1-token probe compares `usage.prompt_tokens` with a lower bound of the prompt's size (plain
   text, then with the image); an endpoint that drops them is remembered as text-only and the
   prompt goes as plain text (`send_image="auto"`). Streamed answers that report usage are
   checked the same way.
2. **The answer format is negotiated.** `json_schema` → `json_object` with the schema
   (llama.cpp compiles it into a grammar) → `json_object` → text, one step down on each refusal
   (HTTP 400, 422 or 500 whose body names the response format). The step is logged once and
   remembered per endpoint (`planners.endpoints`).
3. **Time is one budget** (`settings.timeout`) covering the probe, every answer, repair and
   re-send: the openai client's own retries are off, `max_tokens` is derived from the schema,
   the answer is streamed (a progress callback sees tokens arrive) and the stream is closed
   when the budget runs out, which stops a llama.cpp server generating.
4. **Answers are validated** (`parse_answer`, then the caller's `build`), errors go back to the
   model for at most `max_repair_turns` repairs.
5. A failure carries a machine-readable `kind`; only `invalid_answer` says anything lasting
   about the request, the other kinds are temporary (`TEMPORARY_FAILURES`) and callers must
   not cache what they fell back to.

Every request is one `PlannerTurn`; the API key is redacted from everything recorded.
"""

import hashlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import openai
from openai.lib.streaming.chat import ChatCompletionStreamState
from pydantic import BaseModel, ValidationError

from planners.endpoints import (
    FORMATS,
    CapabilityStore,
    EndpointCapabilities,
    default_store,
    endpoint_id,
)
from planners.mllm_settings import MLLMSettings
from planners.schema import PlannerTurn

try:  # the converter chat.completions.parse uses; private path, so keep a fallback
    from openai.lib._pydantic import to_strict_json_schema
except ImportError:  # pragma: no cover - depends on the installed openai version
    to_strict_json_schema = None  # type: ignore[assignment]

log = logging.getLogger("planners.llm")
T = TypeVar("T", bound=BaseModel)

FailureKind = Literal[
    "unreachable",  # connection refused / DNS / reset, after the retries
    "timeout",  # the time budget ran out
    "refused_format",  # no answer format left that the server accepts
    "refused_request",  # another 4xx (wrong model name, bad key, ...)
    "server_error",  # 5xx / 429 after the retries
    "truncated_prompt",  # the server received less than the prompt even as plain text
    "invalid_answer",  # answers came, none valid after the repairs
]
# Failures that say nothing about the request: what a caller fell back to must not be cached.
TEMPORARY_FAILURES = frozenset(
    {"unreachable", "timeout", "refused_format", "refused_request", "server_error"}
    | {"truncated_prompt"}
)
# A received prompt below this fraction of the lower bound counts as cut or dropped.
DELIVERY_RATIO = 0.75
# Fewer extra tokens than this with an image attached: the image did not arrive.
MIN_IMAGE_TOKENS = 16
_PARAMS = ("temperature", "seed", "stream_options", "max_tokens")

Build = Callable[[Any], tuple[Any, list[str]]]
# tool name -> (definition for `tools`, arguments model, handler(arguments) -> text)
Tools = dict[str, tuple[dict[str, Any], type[BaseModel], Callable[[Any], str]]]


class LLMFailure(BaseModel):
    """Why no valid answer came: `kind` for machines, `message` for people."""

    kind: FailureKind
    message: str

    @property
    def temporary(self) -> bool:
        return self.kind in TEMPORARY_FAILURES


@dataclass
class Progress:
    """Handed to `on_progress` for every streamed chunk (and once when a turn starts)."""

    kind: str  # the turn's kind: plan, repair, tool, probe...
    tokens: int  # chunks with content received in this turn (≈ tokens)
    seconds: float  # since the turn started
    budget_left: float  # seconds left of the whole budget


@dataclass
class JSONAnswer:
    """The validated result (or None), every turn, and the failure when there is no result."""

    result: Any = None
    turns: list[PlannerTurn] = field(default_factory=list)
    failure: LLMFailure | None = None
    response_format: str | None = None


# ------------------------------------------------------------------------------- answers
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)


def extract_json(text: str) -> dict[str, Any] | None:
    """The first JSON object in a model answer (bare, fenced, or inside prose)."""
    text = _THINK.sub("", text or "").strip()
    decoder = json.JSONDecoder()
    for cand in [text, *_FENCE.findall(text)]:
        try:
            value = json.loads(cand.strip())
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    for i, ch in enumerate(text):
        if ch == "{":
            try:
                value, _ = decoder.raw_decode(text, i)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def validation_messages(err: ValidationError) -> list[str]:
    """Pydantic errors as 'field.path: message' lines the model can act on."""
    return [f"{'.'.join(str(x) for x in e['loc']) or 'answer'}: {e['msg']}" for e in err.errors()][
        :20
    ]


def parse_answer(text: str, model: type[T]) -> tuple[T | None, list[str]]:
    """The answer as `model`, or the reasons it is not one."""
    data = extract_json(text)
    if data is None:
        return None, ["no JSON object found in the answer; reply with only the JSON object"]
    try:
        return model.model_validate(data), []
    except ValidationError as err:
        return None, validation_messages(err)


def repair_text(errors: Sequence[str]) -> str:
    """The user message of a repair turn."""
    lines = "\n".join(f"- {e}" for e in errors[:20])
    return (
        f"Your answer breaks these rules:\n{lines}\nReturn the complete corrected JSON object only."
    )


# -------------------------------------------------------------------------------- schemas
def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Strict JSON schema (all properties required, no additional ones) for `model`."""
    if to_strict_json_schema is not None:
        return to_strict_json_schema(model)
    return model.model_json_schema()  # pragma: no cover


def bounded_schema(
    schema: dict[str, Any],
    max_string: int,
    max_items: int | None = None,
    hints: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`schema` with 1..max_string characters in every string, maxItems on every array and `hints` (property
    name -> extra keywords, e.g. an enum of valid word indices) merged in (a copy).

    For servers that turn the schema into a grammar (llama.cpp): the answer then cannot run
    on or name what does not exist, and its size, hence `max_tokens`, is known. Not sent with
    `json_schema` (OpenAI's strict mode refuses these keywords).
    """
    hints = hints or {}

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v) for k, v in node.items()}
        if isinstance(out.get("properties"), dict):
            out["properties"] = {
                k: {**v, **hints[k]} if k in hints else v for k, v in out["properties"].items()
            }
        if out.get("type") == "string" and "enum" not in out:
            out["maxLength"] = min(int(out.get("maxLength", max_string)), max_string)
            out.setdefault("minLength", 1)  # an empty field is never an answer
        if out.get("type") == "array" and max_items is not None:
            out["maxItems"] = min(int(out.get("maxItems", max_items)), max_items)
        return out

    return walk(schema)


def schema_max_tokens(schema: dict[str, Any], max_string: int, max_items: int = 8) -> int:
    """A generous upper bound on the tokens of a compact answer to `schema`.

    Strings count max_string/2 tokens (answers average 3-4 characters a token; the margin
    covers odd ones), numbers the digits a grammar allows, keys and punctuation a few each;
    then 25 % on top.
    """
    defs = schema.get("$defs", {})

    def size(node: dict[str, Any], depth: int = 0) -> float:
        if depth > 20:
            return 0
        if "$ref" in node:
            return size(defs.get(node["$ref"].rsplit("/", 1)[-1], {}), depth + 1)
        for key in ("anyOf", "oneOf"):
            if key in node:
                return max(size(n, depth + 1) for n in node[key])
        if "enum" in node:
            return max(len(json.dumps(v)) for v in node["enum"]) / 2 + 1
        kind = node.get("type")
        if kind == "object":
            props = node.get("properties", {})
            return 2 + sum(len(k) / 3 + 3 + size(v, depth + 1) for k, v in props.items())
        if kind == "array":
            items = min(node.get("maxItems", max_items), max_items)
            return 2 + items * (size(node.get("items", {}), depth + 1) + 1)
        if kind == "string":
            return min(node.get("maxLength", max_string), max_string) / 2 + 2
        # What llama.cpp's JSON grammar lets a sampled answer write (the schema's minimum and
        # maximum are not turned into grammar): a sign and up to 16 digits, one token each in
        # Gemma's and Llama's tokenizers; a number adds a fraction. Counting 6 cut answers with a
        # long number at temperature 1 (issue 18).
        if kind == "integer":
            return 18
        if kind == "number":
            return 36
        return 3

    return max(16, math.ceil(1.25 * size(schema)))


def response_format(
    mode: str,
    answer_model: type[BaseModel],
    max_string: int,
    max_items: int | None,
    hints: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """The `response_format` request field for one of FORMATS (None for text)."""
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {
                "name": answer_model.__name__,
                "schema": strict_schema(answer_model),
                "strict": True,
            },
        }
    if mode == "json_object+schema":
        schema = bounded_schema(strict_schema(answer_model), max_string, max_items, hints)
        return {"type": "json_object", "schema": schema}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


# ---------------------------------------------------------------------------- the prompt
def summarise_messages(messages: Sequence[dict[str, Any]], chars: int = 160) -> list[str]:
    """'role: first characters' per message; images as their size and hash, never the bytes."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            bits = []
            for part in content:
                if part.get("type") == "image_url":
                    url = part["image_url"]["url"]
                    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
                    bits.append(f"[image {len(url)} chars sha256:{digest}]")
                elif part.get("type") == "input_audio":
                    data = part["input_audio"]["data"]
                    digest = hashlib.sha256(data.encode()).hexdigest()[:12]
                    bits.append(f"[audio {len(data)} chars sha256:{digest}]")
                else:
                    bits.append(str(part.get("text", ""))[:chars])
            text = " ".join(bits)
        else:
            text = str(content or "")[:chars]
        if m.get("tool_calls"):
            text += (
                " [tool calls: " + ", ".join(c["function"]["name"] for c in m["tool_calls"]) + "]"
            )
        out.append(f"{m.get('role')}: {text}")
    return out


def prompt_hash(messages: Sequence[dict[str, Any]]) -> str:
    """sha256 of the exact messages sent (images included), for the record."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


_PIECE = re.compile(r"\w+|[^\w\s]+")


def prompt_lower_bound(messages: Sequence[dict[str, Any]]) -> int:
    """Tokens the text of `messages` must at least take: one per word or punctuation run.

    Tokenizers split numbers and rare words further and chat templates add tokens, so a
    server reporting clearly fewer did not get the whole text.
    """
    return sum(len(_PIECE.findall(_text_of(m.get("content")))) for m in messages)


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    return str(content or "")


def has_media(messages: Sequence[dict[str, Any]]) -> bool:
    """True when a message carries image or audio parts."""
    return any(
        isinstance(m.get("content"), list) and any(p.get("type") != "text" for p in m["content"])
        for m in messages
    )


def as_plain_text(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every list-of-parts message as one string (its text parts joined; media dropped)."""
    return [
        {**m, "content": _text_of(m["content"])} if isinstance(m.get("content"), list) else m
        for m in messages
    ]


# ---------------------------------------------------------------------------- endpoints
class ChatEndpoint:
    """One endpoint (base URL + model): its client and what it was found to accept.

    Create one per planner or judge; it loads the remembered capabilities on first use and
    saves them whenever something new is learnt.
    """

    def __init__(
        self,
        settings: MLLMSettings | None = None,
        *,
        client: openai.OpenAI | None = None,
        store: CapabilityStore | None = None,
    ) -> None:
        self.settings = settings or MLLMSettings()
        self._client = client
        self.store: CapabilityStore = store if store is not None else default_store()
        self.endpoint = endpoint_id(self.settings.base_url)
        self._caps: EndpointCapabilities | None = None

    @property
    def client(self) -> openai.OpenAI:
        """The openai client, created on first use, with its own retries off (the budget
        covers retries)."""
        if self._client is None:
            s = self.settings
            self._client = openai.OpenAI(
                api_key=s.api_key.get_secret_value() or "EMPTY",
                base_url=s.base_url,
                timeout=s.timeout,
                max_retries=0,
            )
        return self._client

    @property
    def caps(self) -> EndpointCapabilities:
        if self._caps is None:
            try:
                self._caps = self.store.load(self.endpoint, self.settings.model)
            except Exception as err:  # a broken store must not stop planning
                log.warning("cannot read remembered LLM endpoint capabilities: %s", err)
            self._caps = self._caps or EndpointCapabilities()
        return self._caps

    def remember(self) -> None:
        try:
            self.store.save(self.endpoint, self.settings.model, self.caps)
        except Exception as err:
            log.warning("cannot remember LLM endpoint capabilities: %s", err)

    def reset(self) -> int:
        """Forget what was learnt about this endpoint and model."""
        self._caps = EndpointCapabilities()
        return self.store.reset(self.endpoint, self.settings.model)

    def redact(self, text: str | None) -> str | None:
        key = self.settings.api_key.get_secret_value()
        if text is None or len(key) < 8:
            return text
        return text.replace(key, "***")


# ------------------------------------------------------------------------------ ask_json
class _Failed(Exception):
    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.failure = LLMFailure(kind=kind, message=message)


class _Again(Exception):
    """The request was refused in a way that a changed request may fix: send again."""


@dataclass
class _Reply:
    text: str
    tool_calls: list[Any]
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None


def ask_json(
    endpoint: ChatEndpoint,
    messages: list[dict[str, Any]],
    answer_model: type[BaseModel],
    build: Build | None = None,
    *,
    kind: str = "plan",
    tools: Tools | None = None,
    max_items: int | None = None,
    grammar_hints: dict[str, dict[str, Any]] | None = None,
    timeout: float | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    temperature: float | None = None,
    seed: int | None = None,
    require_images: bool = False,
) -> JSONAnswer:
    """Ask until `build(answer)` returns no errors, or the budget / repairs run out.

    Args:
        endpoint: Where to ask (settings, client, remembered capabilities).
        messages: The conversation; user content may be a list of text/image/audio parts.
        answer_model: The pydantic model of the JSON answer (its schema is sent).
        build: answer -> (result, errors); default: the answer itself, no errors.
        kind: Kind of the first turn in the trace ("plan", "judge", ...).
        tools: Tools offered while `settings.use_tools` and the server accepts them.
        max_items: Longest array the answer may need (grammar bound and max_tokens).
        grammar_hints: Property name -> schema keywords added where the server turns the
            schema into a grammar (json_object+schema), e.g. {"first_word": {"enum": [...]}}.
        timeout: Seconds for everything; default `settings.timeout`.
        on_progress: Called as tokens arrive.
        temperature, seed: Override the settings' sampling values.
        require_images: Fail (refused_format) instead of sending a text-only prompt when the
            endpoint drops images (the judge cannot judge frames it never sees).
    """
    s = endpoint.settings
    ex = _Exchange(
        endpoint,
        answer_model,
        build,
        tools=tools or {},
        max_items=max_items,
        hints=grammar_hints,
        on_progress=on_progress,
        budget=s.timeout if timeout is None else timeout,
        temperature=s.temperature if temperature is None else temperature,
        seed=s.seed if seed is None else seed,
    )
    try:
        result = ex.run(list(messages), kind, require_images)
        failure = None
    except _Failed as err:
        result, failure = None, err.failure
    r = endpoint.redact
    turns = [
        t.model_copy(
            update={
                "answer": r(t.answer),
                "messages": [r(m) for m in t.messages],
                "errors": [r(e) for e in t.errors],
                "tool_calls": [r(c) for c in t.tool_calls],
            }
        )
        for t in ex.turns
    ]
    if failure is not None:
        failure = failure.model_copy(update={"message": r(failure.message)})
    return JSONAnswer(result, turns, failure, ex.mode)


class _Exchange:
    """State of one ask_json call (see its docstring)."""

    def __init__(
        self,
        endpoint: ChatEndpoint,
        answer_model: type[BaseModel],
        build: Build | None,
        *,
        tools: Tools,
        max_items: int | None,
        hints: dict[str, dict[str, Any]] | None,
        on_progress: Callable[[Progress], None] | None,
        budget: float,
        temperature: float,
        seed: int | None,
    ) -> None:
        self.budget = budget
        self.deadline = time.monotonic() + budget
        self.temperature, self.seed, self.hints = temperature, seed, hints
        self._turn_started = time.monotonic()
        self.ep = endpoint
        self.s = endpoint.settings
        self.caps = endpoint.caps
        self.answer_model = answer_model
        self.build = build or (lambda answer: (answer, []))
        self.tools = tools
        self.max_items = max_items
        self.on_progress = on_progress
        self.turns: list[PlannerTurn] = []
        forced = self.s.structured_outputs
        self.mode = forced if forced != "auto" else (self.caps.response_format or FORMATS[0])
        self.tools_ok = bool(tools) and self.s.use_tools and self.caps.tools is not False
        schema = bounded_schema(strict_schema(answer_model), self.s.max_string_chars, max_items)
        self.max_tokens = self.s.max_tokens or schema_max_tokens(
            schema, self.s.max_string_chars, max_items or 8
        )

    # ---------------------------------------------------------------- the loop
    def run(self, messages: list[dict[str, Any]], kind: str, require_images: bool) -> Any:
        media = has_media(messages)
        messages = self._deliverable(messages)
        if require_images and media and not has_media(messages):
            raise _Failed(
                "refused_format",
                f"{self.ep.endpoint} ({self.s.model}) drops image parts (text-only endpoint)",
            )
        repairs = tool_steps = 0
        while True:
            offer = self.tools if self.tools_ok and tool_steps < self.s.max_tool_steps else {}
            turn = self._turn(kind, messages, offer)
            try:
                reply = self._send(turn, messages, offer)
            except _Again:
                continue
            if self._cut(turn, reply, messages):
                if not has_media(messages):
                    raise _Failed("truncated_prompt", turn.errors[0])
                self._text_only(f"the answer's usage showed: {turn.errors[0]}")
                messages, kind = as_plain_text(messages), "resend"
                continue
            if reply.tool_calls and offer:
                tool_steps += 1
                turn.kind = "tool"
                messages = [*messages, _assistant_with_tools(reply)]
                for call in reply.tool_calls:
                    name, args = call.function.name, call.function.arguments or "{}"
                    turn.tool_calls.append(f"{name}({args[:300]})")
                    content = _run_tool(offer, name, args)
                    messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
                continue
            result, errors = None, []
            if reply.finish_reason == "length":
                errors = [
                    f"the answer was cut off at {self.max_tokens} tokens; return a shorter "
                    "JSON object"
                ]
            else:
                answer, errors = parse_answer(reply.text, self.answer_model)
                if answer is not None:
                    result, errors = self.build(answer)
            turn.errors = errors
            if not errors:
                self._remember_format()
                return result
            if repairs >= self.s.max_repair_turns:
                answers = sum(
                    t.kind not in ("probe", "degrade", "error", "tool") for t in self.turns
                )
                head = "; ".join(errors[:3])
                raise _Failed("invalid_answer", f"no valid answer after {answers} answers: {head}")
            repairs += 1
            kind = "repair"
            messages = [
                *messages,
                {"role": "assistant", "content": reply.text},
                {"role": "user", "content": repair_text(errors)},
            ]

    def _turn(self, kind: str, messages: list[dict[str, Any]], offer: Tools) -> PlannerTurn:
        turn = PlannerTurn(
            index=len(self.turns),
            kind=kind,
            messages=summarise_messages(messages),
            prompt_sha256=prompt_hash(messages),
            response_format=self.mode + ("+tools" if offer else ""),
            model=self.s.model,
            expected_prompt_tokens=prompt_lower_bound(messages),
            max_tokens=self.max_tokens,
        )
        self.turns.append(turn)
        self._turn_started = time.monotonic()
        return turn

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def _timeout(self) -> _Failed:
        """The budget ran out: the request in flight (the last turn) is marked as the error."""
        failure = _Failed(
            "timeout",
            f"timeout after {self.budget:g} s (AVATAR_FLOW_LLM_TIMEOUT: the whole answer, "
            f"{len(self.turns)} requests)",
        )
        if self.turns:
            turn = self.turns[-1]
            turn.kind, turn.errors = "error", [failure.failure.message]
            turn.seconds = turn.seconds or time.monotonic() - self._turn_started
        return failure

    # ------------------------------------------------------ prompt delivery
    def _deliverable(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages as this endpoint will receive them whole (probing once if unknown)."""
        s, caps = self.s, self.caps
        if has_media(messages) and (
            s.send_image is False or (s.send_image == "auto" and caps.images is False)
        ):
            messages = as_plain_text(messages)
        need_media = has_media(messages) and s.send_image == "auto" and caps.images is None
        if caps.prompt_checked and not need_media:
            return messages
        text = as_plain_text(messages)
        # With the image first, then plain text: a server that caches the prompt prefix
        # (llama.cpp) then holds the text-only prompt that a text-only endpoint will get.
        with_media = self._probe(messages) if need_media else None
        got = self._probe(text)
        if got is None:  # no usage reported: nothing can be checked, so nothing to redo
            caps.prompt_checked = True
            if need_media:
                caps.images = True
            self.ep.remember()
            return messages
        bound = prompt_lower_bound(text)
        if got < DELIVERY_RATIO * bound:
            raise _Failed(
                "truncated_prompt",
                f"the server received {got} prompt tokens of at least {bound} even as plain "
                "text: its context window is too small or it cuts prompts",
            )
        caps.prompt_checked = True
        if need_media:
            if with_media is not None and with_media < DELIVERY_RATIO * got:
                self._text_only(f"list content arrived as {with_media} of {got} tokens")
                return text
            if with_media is not None and with_media < got + MIN_IMAGE_TOKENS:
                self._text_only(f"image parts added {with_media - got} tokens")
                return text
            caps.images = True
        self.ep.remember()
        return messages

    def _text_only(self, why: str) -> None:
        if self.caps.images is not False:
            log.warning(
                "LLM endpoint %s (%s) drops image parts (%s): sending plain text from now on",
                self.ep.endpoint,
                self.s.model,
                why,
            )
        self.caps.images = False
        self.ep.remember()

    def _probe(self, messages: list[dict[str, Any]]) -> int | None:
        """usage.prompt_tokens of a 1-token, non-streamed request (None if not reported)."""
        turn = self._turn("probe", messages, {})
        turn.response_format, turn.max_tokens = "text", 1
        kw = self._kwargs(messages, {}, probe=True)
        t0 = time.monotonic()
        for attempt in range(self.s.max_retries + 1):
            try:
                completion = self.ep.client.with_options(max_retries=0).chat.completions.create(
                    **kw, timeout=self._http_timeout()
                )
                break
            except openai.APIStatusError as err:
                if self._drop_param(err, kw):
                    continue
                turn.seconds = time.monotonic() - t0
                self._raise_for(turn, err, attempt)
            except openai.APIError as err:
                turn.seconds = time.monotonic() - t0
                self._raise_for(turn, err, attempt)
        turn.seconds = time.monotonic() - t0
        usage = getattr(completion, "usage", None)
        if usage is None:
            return None
        turn.prompt_tokens, turn.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        return usage.prompt_tokens

    def _cut(self, turn: PlannerTurn, reply: _Reply, messages: list[dict[str, Any]]) -> bool:
        """True (and the turn marked) when the reply's usage shows the prompt arrived cut."""
        bound = prompt_lower_bound(messages)
        if reply.prompt_tokens is None:
            return False
        if has_media(messages):  # the text and at least a few tokens per image must arrive
            if reply.prompt_tokens >= bound + MIN_IMAGE_TOKENS:
                return False
        elif reply.prompt_tokens >= DELIVERY_RATIO * bound:
            return False
        turn.errors = [f"the server received {reply.prompt_tokens} of at least {bound} tokens"]
        return True

    # ------------------------------------------------------------ requests
    def _kwargs(
        self, messages: list[dict[str, Any]], offer: Tools, probe: bool = False
    ) -> dict[str, Any]:
        omit = self.caps.omit
        kw: dict[str, Any] = {"model": self.s.model, "messages": messages}
        if "temperature" not in omit:
            kw["temperature"] = self.temperature
        if self.seed is not None and "seed" not in omit:
            kw["seed"] = self.seed
        limit = 1 if probe else self.max_tokens
        kw["max_completion_tokens" if "max_tokens" in omit else "max_tokens"] = limit
        if probe:
            return kw
        fmt = response_format(
            self.mode, self.answer_model, self.s.max_string_chars, self.max_items, self.hints
        )
        if fmt is not None:
            kw["response_format"] = fmt
        if offer:
            kw["tools"] = [definition for definition, _, _ in offer.values()]
        kw["stream"] = True
        if "stream_options" not in omit:
            kw["stream_options"] = {"include_usage": True}
        return kw

    def _http_timeout(self) -> float:
        left = self._left()
        if left <= 0:
            raise self._timeout()
        return left

    def _send(self, turn: PlannerTurn, messages: list[dict[str, Any]], offer: Tools) -> _Reply:
        """One streamed request, with retries on connection errors and 5xx inside the
        budget; raises _Again after a refusal that a changed request may fix."""
        kw = self._kwargs(messages, offer)
        t0 = time.monotonic()
        for attempt in range(self.s.max_retries + 1):
            try:
                reply = self._stream(turn, kw, t0)
                turn.seconds = time.monotonic() - t0
                turn.answer = reply.text
                turn.prompt_tokens = reply.prompt_tokens
                turn.completion_tokens = reply.completion_tokens
                return reply
            except openai.APIStatusError as err:
                turn.seconds = time.monotonic() - t0
                if self._degrade(turn, err, bool(offer)):
                    raise _Again from None
                self._raise_for(turn, err, attempt)
            except openai.APIError as err:
                turn.seconds = time.monotonic() - t0
                self._raise_for(turn, err, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _stream(self, turn: PlannerTurn, kw: dict[str, Any], t0: float) -> _Reply:
        """Stream one answer; a timer closes the stream when the budget runs out."""
        client = self.ep.client.with_options(max_retries=0)
        stream = client.chat.completions.create(**kw, timeout=self._http_timeout())
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            stream.close()  # the server sees the hang-up and stops generating

        timer = threading.Timer(max(0.0, self._left()), expire)
        timer.daemon = True
        timer.start()
        state = ChatCompletionStreamState()
        usage = None
        tokens = chunks = 0
        self._progress(turn.kind, 0, t0)
        try:
            for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                if chunk.choices:
                    state.handle_chunk(chunk)
                    chunks += 1
                if any(c.delta.content or c.delta.tool_calls for c in chunk.choices):
                    tokens += 1
                    self._progress(turn.kind, tokens, t0)
                if self._left() <= 0:
                    expire()
                    raise self._timeout()
        except _Failed:
            raise
        except Exception as err:
            if expired.is_set() or self._left() <= 0:
                raise self._timeout() from None
            if isinstance(err, openai.APIError):
                raise
            raise openai.APIConnectionError(
                message=str(err), request=stream.response.request
            ) from err
        finally:
            timer.cancel()
            stream.close()
            if chunks:  # what arrived, also when cut short: the record shows how far it got
                snapshot = state.current_completion_snapshot.choices
                turn.answer = (snapshot[0].message.content or "") if snapshot else ""
                turn.completion_tokens = tokens
        if expired.is_set():
            raise self._timeout()
        # the snapshot, not get_final_completion(): that one raises on finish_reason "length"
        choices = state.current_completion_snapshot.choices if chunks else []
        if not choices:
            turn.kind, turn.errors = "error", ["the server returned no choices"]
            raise _Failed("server_error", "the server returned no choices")
        choice = choices[0]
        return _Reply(
            text=choice.message.content or "",
            tool_calls=list(choice.message.tool_calls or []),
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else tokens or None,
        )

    def _progress(self, kind: str, tokens: int, t0: float) -> None:
        if self.on_progress is not None:
            now = time.monotonic()
            self.on_progress(Progress(kind, tokens, now - t0, max(0.0, self.deadline - now)))

    # ------------------------------------------------------------ refusals
    def _drop_param(self, err: openai.APIStatusError, kw: dict[str, Any]) -> bool:
        """A 400/422 naming a parameter we can do without: drop it (remembered)."""
        if err.status_code not in (400, 422):
            return False
        text = _message(err).lower()
        for param in _PARAMS:
            if param in text and param not in self.caps.omit and param in kw:
                self.caps.omit = [*self.caps.omit, param]
                if param == "max_tokens":  # reasoning models want max_completion_tokens
                    kw["max_completion_tokens"] = kw.pop("max_tokens")
                else:
                    kw.pop(param)
                self.ep.remember()
                return True
        return False

    def _degrade(self, turn: PlannerTurn, err: openai.APIStatusError, tools_sent: bool) -> bool:
        """After a refusal: drop a parameter, drop tools, or step the answer format down.
        True when the request should be sent again."""
        text = _message(err).lower()
        status = err.status_code
        turn.errors = [f"HTTP {status}: {_message(err)}"]
        if self._drop_param(err, {p: 1 for p in _PARAMS}):
            turn.kind = "degrade"
            return True
        names_format = any(w in text for w in ("response_format", "response format", "json_schema"))
        if (
            status in (400, 422)
            and tools_sent
            and ("tool" in text or "function" in text or not names_format)
        ):
            turn.kind = "degrade"
            self.tools_ok = False
            self.caps.tools = False
            self.ep.remember()
            return True
        generic_400 = status in (400, 422) and not names_format and "json" in text
        if status in (400, 422, 500) and (names_format or generic_400):
            if self.s.structured_outputs != "auto" or self.mode == FORMATS[-1]:
                turn.kind = "error"
                raise _Failed(
                    "refused_format",
                    f"server rejected the request (response format {self.mode}): "
                    f"HTTP {status}: {_message(err)}",
                )
            old = self.mode
            self.mode = FORMATS[FORMATS.index(old) + 1]
            turn.kind = "degrade"
            log.warning(
                "LLM endpoint %s (%s) refused response format %s (HTTP %s); using %s from now on",
                self.ep.endpoint,
                self.s.model,
                old,
                status,
                self.mode,
            )
            self.caps.response_format = self.mode  # type: ignore[assignment]
            self.ep.remember()
            return True
        return False

    def _raise_for(self, turn: PlannerTurn, err: openai.APIError, attempt: int) -> None:
        """Retry (return) while retries and budget remain, else raise the failure."""
        if isinstance(err, openai.APITimeoutError) or self._left() <= 0:
            raise self._timeout()
        if isinstance(err, openai.APIStatusError):
            status = err.status_code
            message = f"server answered HTTP {status}: {_message(err)}"
            retry = status == 429 or status >= 500
            kind: FailureKind = "server_error" if retry else "refused_request"
            if not retry:
                message = f"server rejected the request: HTTP {status}: {_message(err)}"
        elif isinstance(err, openai.APIConnectionError):
            message, kind, retry = f"cannot reach the server: {err}", "unreachable", True
        else:
            message, kind, retry = f"{type(err).__name__}: {err}", "server_error", False
        turn.kind, turn.errors = "error", [message]
        if retry and attempt < self.s.max_retries:
            pause = min(2.0**attempt, max(0.0, self._left() - 1))
            time.sleep(pause)
            return
        raise _Failed(kind, message)

    def _remember_format(self) -> None:
        if self.s.structured_outputs == "auto" and self.caps.response_format != self.mode:
            self.caps.response_format = self.mode  # type: ignore[assignment]
            self.ep.remember()


def _message(err: openai.APIStatusError) -> str:
    """The server's error text (OpenAI-style body or raw), short."""
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        msg = inner.get("message") if isinstance(inner, dict) else inner
        if msg is None and isinstance(inner, dict):
            msg = inner.get("detail") or json.dumps(inner)
        return str(msg)[:500]
    return str(err.message)[:500]


def _assistant_with_tools(reply: _Reply) -> dict[str, Any]:
    """The assistant message echoed back so tool results can refer to its calls."""
    return {
        "role": "assistant",
        "content": reply.text or None,
        "tool_calls": [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.function.name, "arguments": c.function.arguments},
            }
            for c in reply.tool_calls
        ],
    }


def _run_tool(tools: Tools, name: str, arguments: str) -> str:
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
