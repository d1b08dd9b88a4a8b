"""Checks on action text: it must describe something a camera can see, and nothing else.

Action text ends up in the generator's text prompt. The renderer already lip-syncs from
audio, so actions about speaking are useless; and the text may originate in a script the
MLLM read, so anything that looks like an instruction, a link or code is refused rather
than passed on.
"""

import re

MAX_ACTION_CHARS = 120

# Speech is the audio branch's job; naming it in a phase only dilutes the action tokens.
_SPEECH = re.compile(
    r"\b(lips?|mouth|speak(s|ing)?|talk(s|ing)?|voice|say(s|ing)?|said|sing(s|ing)?|"
    r"lip-?sync\w*|pronounc\w*|utter\w*|whisper\w*)\b",
    re.I,
)

# Things that never belong in a gesture description (prompt injection, links, code).
_UNSAFE = re.compile(
    r"(ignore\s+(all\s+|the\s+|any\s+)?(previous|prior|above|earlier)|disregard|"
    r"system\s*prompt|developer\s+message|\binstructions?\b|you\s+are\s+now|"
    r"\bassistant\s*:|\buser\s*:|\bsystem\s*:|"
    r"https?://|www\.|\w+\.(com|org|net|io|ai)\b|"
    r"```|`|<\s*/?\s*\w+[^>]*>|[{}\[\]\\]|\bimport\s+\w|\bdef\s+\w+\s*\(|"
    r"\bexec\s*\(|\beval\s*\(|\$\(|&&|\|\|)",
    re.I,
)

# Words that say nothing about what the body does.
_VAGUE = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "of",
        "to",
        "with",
        "in",
        "on",
        "at",
        "some",
        "any",
        "something",
        "anything",
        "thing",
        "things",
        "gesture",
        "gestures",
        "gesturing",
        "gesticulates",
        "move",
        "moves",
        "moving",
        "movement",
        "movements",
        "motion",
        "action",
        "actions",
        "act",
        "acts",
        "natural",
        "naturally",
        "normal",
        "normally",
        "idle",
        "idly",
        "generic",
        "general",
        "appropriate",
        "appropriately",
        "suitable",
        "relevant",
        "various",
        "random",
        "randomly",
        "does",
        "do",
        "doing",
        "performs",
        "perform",
        "makes",
        "make",
        "making",
        "while",
        "slightly",
        "somehow",
    ]
)

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def normalise_action(text: str) -> str:
    """Casefolded, whitespace-collapsed text without a final period: for comparisons."""
    return " ".join(text.split()).strip().rstrip(".").strip().casefold()


def unsafe_reason(text: str, max_chars: int = MAX_ACTION_CHARS) -> str | None:
    """Why `text` may not be used in a prompt at all (injection, link, code, too long)."""
    if len(text) > max_chars:
        return f"is longer than {max_chars} characters"
    m = _UNSAFE.search(text)
    if m:
        return f"contains {m.group(0)!r}, which looks like an instruction, a link or code"
    return None


def visibility_reason(text: str) -> str | None:
    """Why `text` is not a concrete visible body action (empty, vague, about speaking)."""
    if not text.strip():
        return "is empty"
    m = _SPEECH.search(text)
    if m:
        return (
            f"mentions {m.group(0)!r}: lip movement comes from the audio; describe a visible "
            "body, hand or head action instead"
        )
    content = [w for w in _WORD.findall(text.casefold()) if w not in _VAGUE]
    if not content:
        return "is too vague: name a concrete visible action (e.g. 'waves with the right hand')"
    return None


def sanitise_action(text: str) -> str:
    """Author cue text made usable as an action: one line, no trailing period, bounded length."""
    return " ".join(text.split()).strip().rstrip(".").strip()[:MAX_ACTION_CHARS]
