"""Speech cues the rule planner reacts to, and the text normalisation they need.

Words may come from the script (with punctuation: "Hello," "today?") or from an aligner
(often without: "hello", or "?" as its own token). Everything here works on normalised
tokens, and sentence ends come from `PlanRequest.sentences` when the caller gives them,
else from punctuation attached to the words.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from planners.schema import PlanRequest, Word

Grow = Literal["forward", "backward"]

WAVE = "waves hello with the right hand"
COUNT = "counts on the fingers of one hand"
POINT = "points to the side at something nearby"
BEAT = "beat gesture with an open palm"
OPEN_HANDS = "opens both hands outward, palms up"
NOD = "nods gently"

# Lower number wins when candidates compete for the same words or the same 5-s window.
# Cues (author-pinned) are placed before any of these and always win.
PRIORITY = {
    "greeting": 0,
    "closing": 1,
    "enumeration": 2,
    "question": 3,
    "pointing": 4,
    "emphasis": 5,
}
ACTION = {
    "greeting": WAVE,
    "closing": NOD,
    "enumeration": COUNT,
    "question": OPEN_HANDS,
    "pointing": POINT,
    "emphasis": BEAT,
}

GREETINGS = frozenset({"hello", "hi", "hey", "welcome", "greetings", "howdy", "hiya"})
GREETING_PAIRS = frozenset({("good", "morning"), ("good", "afternoon"), ("good", "evening")})
CLOSINGS = frozenset({"thanks", "goodbye", "bye", "farewell"})
CLOSING_PAIRS = frozenset({("thank", "you"), ("see", "you"), ("take", "care"), ("so", "long")})
ORDINALS = frozenset(
    [
        "first",
        "firstly",
        "second",
        "secondly",
        "third",
        "thirdly",
        "fourth",
        "fifth",
        "sixth",
        "seventh",
        "eighth",
        "ninth",
        "tenth",
    ]
)
COUNT_PAIRS = frozenset({("a", "few"), ("a", "couple")})
NUMBERS = frozenset(["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]) | {
    str(i) for i in range(2, 11)
}
POINTING = frozenset({"this", "these", "here", "look", "see"})
EMPHASIS = frozenset(
    [
        "really",
        "very",
        "most",
        "never",
        "always",
        "important",
        "key",
        "crucial",
        "essential",
        "absolutely",
        "critical",
        "must",
    ]
)
_NOT_PLURAL = frozenset(
    ["is", "was", "has", "does", "this", "thus", "yes", "us", "its", "his", "plus", "less"]
)

_TOKEN_STRIP = re.compile(r"^[^\w']+|[^\w']+$")


def norm_token(word: str) -> str:
    """'Hello,' -> 'hello'; '“Really?!”' -> 'really'; '?' -> ''."""
    return _TOKEN_STRIP.sub("", word.casefold()).strip("'")


def trailing_punct(word: str) -> str:
    """Punctuation after the last letter or digit of a word ('today?!' -> '?!')."""
    m = re.search(r"[^\w\s']+$", word.strip())
    return m.group(0) if m else ""


def sentence_spans(request: PlanRequest) -> list[tuple[int, int, str]]:
    """(first, last, end punctuation) per sentence, from `request.sentences` or the words."""
    words = request.transcript.words
    n = len(words)
    if not n:
        return []
    if request.sentences:
        spans = []
        for first, last, text in request.sentences:
            first, last = max(0, first), min(n - 1, last)
            if first <= last:
                spans.append((first, last, trailing_punct(text.rstrip("\"'”’)] "))))
        return sorted(spans)
    spans, start = [], 0
    for i, w in enumerate(words):
        if any(ch in trailing_punct(w.word) for ch in ".!?"):
            # A bare "?" token closes the sentence of the words before it.
            if any(norm_token(x.word) for x in words[start : i + 1]):
                spans.append((start, i, trailing_punct(w.word)))
            start = i + 1
    if start < n and any(norm_token(x.word) for x in words[start:]):
        spans.append((start, n - 1, ""))
    return spans


@dataclass(frozen=True)
class Candidate:
    """A lexicon phase before placement: initial word range and preferred growth direction."""

    category: str
    first: int
    last: int
    grow: Grow = "forward"

    @property
    def action(self) -> str:
        return ACTION[self.category]

    @property
    def priority(self) -> int:
        return PRIORITY[self.category]


def _is_list_number(tokens: list[str], words: Sequence[Word], i: int) -> bool:
    """A number that counts things: 'three reasons', 'one, two, three', '2 tips'."""
    t = tokens[i]
    if t not in NUMBERS and t != "one":
        return False
    if "," in trailing_punct(words[i].word):
        return True
    if any(
        tokens[j] in NUMBERS or tokens[j] == "one" for j in range(i + 1, min(i + 5, len(tokens)))
    ):
        return True
    nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
    return t != "one" and len(nxt) >= 4 and nxt.endswith("s") and nxt not in _NOT_PLURAL


def find_candidates(request: PlanRequest) -> list[Candidate]:
    """Every lexicon match in the transcript, in (priority, position) order."""
    words = request.transcript.words
    tokens = [norm_token(w.word) for w in words]
    out: list[Candidate] = []
    for i, t in enumerate(tokens):
        if not t:
            continue
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        pair = (t, nxt)
        if t in GREETINGS or pair in GREETING_PAIRS:
            out.append(Candidate("greeting", i, i + 1 if pair in GREETING_PAIRS else i))
        if t in CLOSINGS or pair in CLOSING_PAIRS:
            out.append(Candidate("closing", i, i + 1 if pair in CLOSING_PAIRS else i))
        if t in ORDINALS or pair in COUNT_PAIRS or _is_list_number(tokens, words, i):
            out.append(Candidate("enumeration", i, i + 1 if pair in COUNT_PAIRS else i))
        if t in POINTING:
            out.append(Candidate("pointing", i, i))
        if t in EMPHASIS:
            out.append(Candidate("emphasis", i, i))
    for first, last, punct in sentence_spans(request):
        # Anchor on the last spoken word (a bare "?" token is not one).
        end = last
        while end > first and not tokens[end]:
            end -= 1
        if "?" in punct:
            out.append(Candidate("question", end, end, "backward"))
        elif "!" in punct:
            out.append(Candidate("emphasis", end, end, "backward"))
    return sorted(out, key=lambda c: (c.priority, c.first, c.last, c.grow))
