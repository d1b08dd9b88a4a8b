"""The finishing options' values, checked without importing any media library (the job
options contract imports this at CLI start-up)."""

from __future__ import annotations

import json
from typing import Any

CAPTION_MODES = ("off", "lines", "words")
LOUDNESS_PRESETS: dict[str, float] = {
    "web": -16.0,  # YouTube/Vimeo/social players
    "podcast": -16.0,  # Apple's podcast spec
    "streaming": -14.0,  # Spotify, YouTube's reference level
    "broadcast": -23.0,  # EBU R128
}
DEFAULT_LOUDNESS = "web"
MIN_LUFS, MAX_LUFS = -36.0, -8.0


def parse_loudness(value: str | float | None) -> float | None:
    """A preset name, a number of LUFS, or off -> target LUFS or None (leave the level alone);
    ValueError with one line otherwise."""
    if value is None:
        return LOUDNESS_PRESETS[DEFAULT_LOUDNESS]
    text = str(value).strip().lower()
    if text in ("off", "none", "no"):
        return None
    if text in LOUDNESS_PRESETS:
        return LOUDNESS_PRESETS[text]
    try:
        lufs = float(text.removesuffix("lufs").strip())
    except ValueError:
        raise ValueError(
            f"loudness must be one of {', '.join(LOUDNESS_PRESETS)}, off, or a number of LUFS "
            f"(e.g. -18), got {value!r}"
        ) from None
    if not MIN_LUFS <= lufs <= MAX_LUFS:
        raise ValueError(f"loudness must be between {MIN_LUFS} and {MAX_LUFS} LUFS, got {lufs}")
    return lufs


def parse_variables(value: Any) -> dict[str, str] | None:
    """Template values from a mapping, `name=value` strings (the repeatable `--var`), or a JSON
    object (a form or manifest cell); None when there are none."""
    if value is None or value == [] or value == {}:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"variables: not a JSON object ({exc.msg})") from None
        else:
            value = [text]
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        out: dict[str, str] = {}
        for item in value:
            name, sep, val = str(item).partition("=")
            name = name.strip()
            if not sep or not name:
                raise ValueError(f"--var takes NAME=VALUE, got {item!r}")
            if name in out:
                raise ValueError(f"--var {name} is given twice")
            out[name] = val.strip()
        return out
    raise ValueError(f"variables must be NAME=VALUE pairs, got {value!r}")
