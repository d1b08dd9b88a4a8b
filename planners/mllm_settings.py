"""MLLMSettings: where the planner model lives and how hard to try, read from the environment.

The environment matters because a run started from the Prefect UI never passes through the
CLI. Explicit keyword arguments win over environment variables. The API key is a SecretStr:
it is never logged, stored, hashed into cache keys, or put in prompts or traces.
"""

import os
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

StructuredMode = Literal["auto", "json_schema", "json_object+schema", "json_object", "text"]

# field -> environment variables, first set one wins
ENV_VARS: dict[str, tuple[str, ...]] = {
    "base_url": ("AVATAR_FLOW_LLM_BASE_URL", "OPENAI_BASE_URL"),
    "model": ("AVATAR_FLOW_LLM_MODEL",),
    "api_key": ("OPENAI_API_KEY",),
    "timeout": ("AVATAR_FLOW_LLM_TIMEOUT",),
    "max_retries": ("AVATAR_FLOW_LLM_MAX_RETRIES",),
    "max_repair_turns": ("AVATAR_FLOW_LLM_MAX_REPAIR_TURNS",),
    "send_image": ("AVATAR_FLOW_LLM_SEND_IMAGE",),
    "send_audio": ("AVATAR_FLOW_LLM_SEND_AUDIO",),
    "use_tools": ("AVATAR_FLOW_LLM_USE_TOOLS",),
    "structured_outputs": ("AVATAR_FLOW_LLM_STRUCTURED_OUTPUTS",),
    "max_tokens": ("AVATAR_FLOW_LLM_MAX_TOKENS",),
    "max_string_chars": ("AVATAR_FLOW_LLM_MAX_STRING_CHARS",),
}

# A CPU llama.cpp server writes ~1-6 tokens/s; a plan answer is a few hundred tokens, so the
# whole plan (probe, answer, repairs, retries) gets ten minutes unless told otherwise.
DEFAULT_TIMEOUT = 600.0


class MLLMSettings(BaseModel):
    """Connection and loop settings of the MLLM planner (see ENV_VARS for the variables)."""

    base_url: str | None = Field(None, description="OpenAI-compatible /v1 URL; None = OpenAI")
    model: str = "gpt-4o-mini"
    api_key: SecretStr = Field(SecretStr("EMPTY"), repr=False)
    timeout: float = Field(
        DEFAULT_TIMEOUT,
        gt=0,
        description="seconds for one whole answer: every request, repair and retry together",
    )
    max_retries: int = Field(
        1, ge=0, description="re-sends on 429/5xx/connection errors, inside the time budget"
    )
    max_repair_turns: int = Field(3, ge=0, description="re-asks with validation errors")
    max_tool_steps: int = Field(4, ge=0, description="tool-call rounds before a final answer")
    # auto: send the image unless the endpoint is remembered as dropping image parts.
    send_image: Literal["auto"] | bool = "auto"
    # Omni models (Qwen-Omni on vLLM, gpt-4o-audio) can hear the speech as an `input_audio` part.
    send_audio: bool = False
    use_tools: bool = False
    # auto: json_schema, stepping down to json_object with the schema (llama.cpp's grammar),
    # json_object, then plain text when the server refuses one; the step is remembered.
    structured_outputs: StructuredMode = "auto"
    max_tokens: int | None = Field(
        None, ge=1, description="cap on answer tokens; None = derived from the schema and words"
    )
    max_string_chars: int = Field(
        80, ge=4, description="longest string a schema grammar lets the model write"
    )
    temperature: float = Field(0.2, ge=0, le=2)
    seed: int | None = 0
    max_frames: int = Field(8, ge=0, description="frames sent per clip in annotate mode")

    @model_validator(mode="before")
    @classmethod
    def _from_env(cls, data: Any) -> Any:
        """Fill fields not given explicitly from the environment."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for field, names in ENV_VARS.items():
            if field in data:
                continue
            for name in names:
                value = os.environ.get(name)
                if value:
                    data[field] = value
                    break
        return data

    def public(self) -> dict[str, Any]:
        """Settings safe to log or store: everything but the key."""
        return self.model_dump(exclude={"api_key"})
