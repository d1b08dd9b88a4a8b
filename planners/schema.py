"""Transcript and plan schemas shared by every planner and by the flows.

A plan is the ActAvatar *structured prompt* for a whole video: one time-invariant base
block and phase blocks whose windows are anchored to word indices. Times are derived from
the words, so every phase boundary is a word boundary by construction.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PLAN_SCHEMA_VERSION = 1

# Actions the renderer was trained on; planners may also write free text when allowed.
DEFAULT_ACTION_VOCABULARY: tuple[str, ...] = (
    "waves hello with the right hand",
    "counts on the fingers of one hand",
    "points toward the viewer with the index finger",
    "points to the side at something nearby",
    "beat gesture with an open palm",
    "opens both hands outward, palms up",
    "nods gently",
    "places a hand on the chest",
    "raises the right hand",
    "shrugs with both shoulders",
)


class Word(BaseModel):
    """One spoken word with its time window in seconds."""

    model_config = ConfigDict(frozen=True)

    word: str
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    score: float | None = None
    # True when the aligner could not time the word and its window was interpolated.
    interpolated: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> "Word":
        if self.end < self.start:
            raise ValueError(
                f"word {self.word!r} ends ({self.end}) before it starts ({self.start})"
            )
        return self


class Transcript(BaseModel):
    """Words in order, non-overlapping, plus how they were obtained."""

    words: list[Word]
    language: str = "en"
    # Which timing source produced the words: "whisperx-align", "faster-whisper", ...
    aligner: str = "unknown"
    duration: float = Field(ge=0, description="length of the audio in seconds")

    @model_validator(mode="after")
    def _monotonic(self) -> "Transcript":
        for i in range(1, len(self.words)):
            if self.words[i].start < self.words[i - 1].end - 1e-6:
                raise ValueError(
                    f"word {i} ({self.words[i].word!r}) starts before word {i - 1} ends"
                )
        return self

    @property
    def text(self) -> str:
        return " ".join(w.word for w in self.words)


class Cue(BaseModel):
    """An author-pinned action: `[[text]]` before word `word_index` in the script."""

    text: str
    word_index: int = Field(ge=0)


class Scene(BaseModel):
    """A heading-delimited part of the script, as a word-index range (inclusive)."""

    title: str
    first_word: int = Field(ge=0)
    last_word: int = Field(ge=0)
    style: str = ""


class BaseBlock(BaseModel):
    """Time-invariant semantics of the clip (paper §3.2): identity, scene, mood, style, motion."""

    identity: str = "A person speaking to the camera"
    scene: str = "a neutral studio background"
    mood: str = "calm and friendly"
    style: str = "natural lighting, realistic"
    motion: str = "subtle natural head movement, steady upper body"

    def render(self) -> str:
        return f"{self.identity}, in {self.scene}. Mood: {self.mood}. Style: {self.style}. Motion: {self.motion}."


class Phase(BaseModel):
    """A temporally local action whose window spans words first_word..last_word inclusive."""

    action: str = Field(min_length=1)
    first_word: int = Field(ge=0)
    last_word: int = Field(ge=0)
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    source: Literal["cue", "lexicon", "mllm", "annotation", "edit"] = "lexicon"  # edit: a person

    @property
    def duration(self) -> float:
        return self.end - self.start


class PlanConstraints(BaseModel):
    """Rules every accepted plan satisfies (checked by `planners.validation`)."""

    segment_seconds: float = Field(5.0, gt=0)
    max_phases_per_segment: int = Field(2, ge=1)
    min_phase_seconds: float = Field(1.0, ge=0)
    max_phase_seconds: float = Field(3.0, gt=0)
    vocabulary: tuple[str, ...] = DEFAULT_ACTION_VOCABULARY
    allow_free_text: bool = True


class PlanRequest(BaseModel):
    """Everything a planner may look at."""

    transcript: Transcript
    scenes: list[Scene] = Field(default_factory=list)
    cues: list[Cue] = Field(default_factory=list)
    style: str = ""
    title: str = ""
    avatar_image: str | None = Field(None, description="path of the avatar image, if any")
    speech_audio: str | None = Field(
        None, description="path of the speech as a WAV file, for omni models that listen"
    )
    constraints: PlanConstraints = Field(default_factory=PlanConstraints)
    # Optional sentence spans from the script: (first_word, last_word inclusive, text with
    # punctuation). Aligners often drop punctuation from words; planners use these spans to
    # find questions and exclamations. When empty, punctuation attached to words is used.
    sentences: list[tuple[int, int, str]] = Field(default_factory=list)


class PlannerTurn(BaseModel):
    """One exchange with a planner model, kept for the job record (never in plan.json).

    Holds summaries only: no API key, no image bytes, no full prompt (its sha256 instead).
    """

    index: int = 0
    # "plan", "repair", "tool", "probe" (prompt delivery check, 1 token), "degrade" (server
    # refused a request option), "resend" (prompt arrived cut; sent again as plain text), "error".
    kind: str = "plan"
    messages: list[str] = Field(default_factory=list, description="role: first characters")
    prompt_sha256: str = ""
    response_format: str = ""
    answer: str = ""
    tool_calls: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    prompt_tokens: int | None = None
    # A lower bound on the prompt's tokens (one per word or punctuation run of the text sent):
    # prompt_tokens far below it means the server dropped or cut the prompt.
    expected_prompt_tokens: int | None = None
    completion_tokens: int | None = None
    max_tokens: int | None = None
    model: str = ""


class Plan(BaseModel):
    """The structured prompt for a whole video (written as plan.json)."""

    schema_version: int = PLAN_SCHEMA_VERSION
    planner: str
    base: BaseBlock
    phases: list[Phase] = Field(default_factory=list)
    # Set when a planner fell back to another one (e.g. the MLLM planner to the rule planner).
    fallback_reason: str | None = None
    # Why, for machines: unreachable | timeout | refused_format | server_error |
    # truncated_prompt (temporary: never served from a cache) or invalid_answer.
    fallback_kind: str | None = None
    # Notes about the request a planner could not fully honour (e.g. an unsafe cue dropped).
    warnings: list[str] = Field(default_factory=list)
    # Model turns that produced this plan; stored by the flows, excluded from plan.json.
    trace: list[PlannerTurn] = Field(default_factory=list, exclude=True)
