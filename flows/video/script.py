"""The script format: YAML front matter plus a Markdown body that is spoken.

    ---
    title: Quarterly update
    avatar: avatar.png          # relative to the script
    voice: piper                # or openai:<name>; or `audio: talk.wav`
    style: business attire, bright office
    resolution: 1280x704
    fps: 25
    seed: 7
    ---
    # Opening
    Hello and welcome! [[points to the chart]] This chart shows our growth.

Headings split scenes (they are not spoken); `[[action]]` pins an action to the word that
follows it. Errors name the file, the line and the field.
"""

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flows.runtime.errors import InputError
from flows.video.finish.template import is_template, render_template
from planners.schema import Cue, Scene

FRONT_MATTER_KEYS: dict[str, str] = {
    "title": "video title",
    "avatar": "path of the avatar image",
    "voice": "piper | piper:<voice> | openai:<voice>",
    "audio": "path of recorded speech (wav/mp3/m4a/flac)",
    "style": "base-block style/scene text",
    "resolution": "WIDTHxHEIGHT, multiples of 16",
    "fps": "frames per second",
    "seed": "random seed",
    "language": "spoken language code",
    "segment_seconds": "longest segment in seconds",
    "brand": "path of a brand kit YAML (logo, intro/outro, lower third, music)",
    "music": "path of background music, ducked under the speech",
}
DEFAULT_RESOLUTION = (1280, 704)
DEFAULT_FPS = 25

_CUE = re.compile(r"\[\[(.*?)\]\]")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_MARKUP = re.compile(r"[*_`~]+")
_LIST_MARK = re.compile(r"^\s*(?:[-+*]|\d+[.)])\s+")


@dataclass
class Script:
    """A parsed, validated script. Word indices refer to `words` (spoken order)."""

    path: Path
    title: str
    words: list[str]
    cues: list[Cue]
    scenes: list[Scene]
    avatar: Path | None
    voice: str
    audio: Path | None
    style: str
    width: int
    height: int
    fps: int
    seed: int
    language: str
    segment_seconds: float | None
    meta: dict[str, Any] = field(default_factory=dict)
    brand: Path | None = None
    music: Path | None = None
    # A template script: its own hash and the values it was filled with (the job records both).
    template_sha: str | None = None
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def sentences(self) -> list[str]:
        """Spoken text split at sentence ends; TTS reads it sentence by sentence."""
        return [s for s in re.split(r"(?<=[.!?])\s+", self.text) if s.strip()]

    def content_hash(self) -> str:
        """Hash of what the script says and how (not of its path)."""
        h = hashlib.sha256()
        h.update(self.text.encode())
        h.update(repr([(c.text, c.word_index) for c in self.cues]).encode())
        h.update(repr([(s.title, s.first_word, s.last_word) for s in self.scenes]).encode())
        for key in (
            "title",
            "voice",
            "style",
            "width",
            "height",
            "fps",
            "seed",
            "language",
            "segment_seconds",
        ):
            h.update(f"{key}={getattr(self, key)!r};".encode())
        return h.hexdigest()


def _did_you_mean(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(options)})"


def _split_front_matter(text: str, path: str) -> tuple[dict[str, Any], str, int]:
    """Return (front matter, body, line number where the body starts)."""
    if not text.startswith("---"):
        return {}, text, 1
    lines = text.splitlines(keepends=True)
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            raw = "".join(lines[1:i])
            try:
                data = yaml.safe_load(raw) or {}
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                line = mark.line + 2 if mark is not None else None
                problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                raise InputError(
                    f"bad YAML front matter: {problem}", file=path, line=line
                ) from None
            if not isinstance(data, dict):
                raise InputError("front matter must be a mapping of key: value", file=path, line=2)
            return data, "".join(lines[i + 1 :]), i + 2
    raise InputError("front matter starts with '---' but is never closed", file=path, line=1)


def _key_lines(text: str) -> dict[str, int]:
    lines = {}
    for n, line in enumerate(text.splitlines()[1:], start=2):
        if line.strip() in ("---", "..."):
            break
        m = re.match(r"^([A-Za-z_][\w-]*)\s*:", line)
        if m:
            lines.setdefault(m.group(1), n)
    return lines


def _parse_resolution(value: Any, path: str, line: int | None) -> tuple[int, int]:
    presets = {
        "720p": (1280, 704),
        "480p": (832, 480),
        "square": (704, 704),
        "portrait": (704, 1280),
    }
    if isinstance(value, str) and value.lower() in presets:
        return presets[value.lower()]
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(value))
    if not m:
        raise InputError(
            f"expected WIDTHxHEIGHT like 1280x704 or one of {', '.join(presets)}, got {value!r}",
            file=path,
            field="resolution",
            line=line,
        )
    w, h = int(m.group(1)), int(m.group(2))
    if w % 16 or h % 16 or not (128 <= w <= 3840 and 128 <= h <= 3840):
        raise InputError(
            f"{w}x{h}: width and height must be multiples of 16 between 128 and 3840",
            file=path,
            field="resolution",
            line=line,
        )
    return w, h


def _clean_line(line: str) -> str:
    line = _LINK.sub(r"\1", line)
    line = _LIST_MARK.sub("", line)
    line = _MARKUP.sub("", line)
    return line.replace(">", " ") if line.lstrip().startswith(">") else line


def parse_script(
    path: str | Path, variables: dict[str, str] | None = None, where: str = "variables"
) -> Script:
    """Read and validate a script; raises `InputError` naming the file/line/field.

    A script with `{{ name }}` placeholders is a template: `variables` fill it (sandboxed, see
    `flows.video.finish.template`) before it is parsed; `where` names their source in errors."""
    path = Path(path)
    spath = str(path)
    if not path.is_file():
        raise InputError("script not found", file=spath)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read script: {exc}", file=spath) from None
    template_sha = None
    if variables or is_template(text):
        template_sha = hashlib.sha256(text.encode()).hexdigest()
        text = render_template(text, variables, file=spath, where=where)
    meta, body, body_line = _split_front_matter(text, spath)
    key_line = _key_lines(text)
    options = list(FRONT_MATTER_KEYS)
    for key in meta:
        if key not in FRONT_MATTER_KEYS:
            raise InputError(
                f"unknown key '{key}'{_did_you_mean(str(key), options)}",
                file=spath,
                field=str(key),
                line=key_line.get(str(key)),
            )

    def line_of(k: str) -> int | None:
        return key_line.get(k)

    def rel(k: str) -> Path | None:
        v = meta.get(k)
        if v in (None, ""):
            return None
        if not isinstance(v, str):
            raise InputError(
                f"expected a file path, got {v!r}", file=spath, field=k, line=line_of(k)
            )
        p = Path(v).expanduser()
        return p if p.is_absolute() else (path.parent / p).resolve()

    words, cues, scenes = _parse_body(body, body_line, spath)

    audio = rel("audio")
    voice = meta.get("voice", "piper")
    if audio is not None and "voice" in meta:
        raise InputError(
            "give either 'voice' (synthesised speech) or 'audio' (recorded speech), not both",
            file=spath,
            field="voice",
            line=line_of("voice"),
        )
    if not isinstance(voice, str) or not voice.strip():
        raise InputError(
            f"expected a voice name, got {voice!r}",
            file=spath,
            field="voice",
            line=line_of("voice"),
        )
    if not words and audio is None:
        raise InputError(
            "the script has nothing to say: write some text or give 'audio'", file=spath
        )
    width, height = DEFAULT_RESOLUTION
    if "resolution" in meta:
        width, height = _parse_resolution(meta["resolution"], spath, line_of("resolution"))
    fps = meta.get("fps", DEFAULT_FPS)
    if not isinstance(fps, int) or isinstance(fps, bool) or not 8 <= fps <= 60:
        raise InputError(
            f"expected a whole number from 8 to 60, got {fps!r}",
            file=spath,
            field="fps",
            line=line_of("fps"),
        )
    seed = meta.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InputError(
            f"expected a non-negative integer, got {seed!r}",
            file=spath,
            field="seed",
            line=line_of("seed"),
        )
    seg = meta.get("segment_seconds")
    if seg is not None and (not isinstance(seg, int | float) or not 1.0 <= float(seg) <= 10.0):
        raise InputError(
            f"expected seconds between 1 and 10, got {seg!r}",
            file=spath,
            field="segment_seconds",
            line=line_of("segment_seconds"),
        )
    for key in ("title", "style", "language"):
        if key in meta and not isinstance(meta[key], str | int | float):
            raise InputError(
                f"expected text, got {meta[key]!r}", file=spath, field=key, line=line_of(key)
            )
    return Script(
        path=path.resolve(),
        title=str(meta.get("title", "") or path.stem),
        words=words,
        cues=cues,
        scenes=scenes,
        avatar=rel("avatar"),
        voice=voice.strip(),
        audio=audio,
        style=str(meta.get("style", "") or ""),
        width=width,
        height=height,
        fps=fps,
        seed=seed,
        language=str(meta.get("language", "en")),
        segment_seconds=float(seg) if seg is not None else None,
        meta=dict(meta),
        brand=rel("brand"),
        music=rel("music"),
        template_sha=template_sha,
        variables=dict(sorted((variables or {}).items())) if template_sha else {},
    )


def _is_word(token: str) -> bool:
    return bool(re.search(r"\w", token)) or token == "&"


def _parse_body(body: str, body_line: int, spath: str) -> tuple[list[str], list[Cue], list[Scene]]:
    """Spoken words, cues bound to the next word, and heading scenes as word ranges."""
    body = _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), body)
    tokens: list[str] = []
    events: list[tuple[str, str, int, int]] = []  # (kind, text, token position, line)
    in_code = False
    for n, raw in enumerate(body.splitlines(), start=body_line):
        if raw.strip().startswith("```"):
            in_code = not in_code
            continue
        if in_code or not raw.strip():
            continue
        if h := _HEADING.match(raw):
            events.append(("scene", h.group(2).strip(), len(tokens), n))
            continue
        line = _clean_line(raw)
        pos = 0
        for m in _CUE.finditer(line):
            tokens.extend(line[pos : m.start()].split())
            if not m.group(1).strip():
                raise InputError("empty cue [[ ]]", file=spath, line=n, field="cue")
            events.append(("cue", m.group(1).strip(), len(tokens), n))
            pos = m.end()
        rest = line[pos:]
        if "[[" in rest or "]]" in rest:
            raise InputError(
                "unbalanced cue brackets: write cues as [[action text]]",
                file=spath,
                line=n,
                field="cue",
            )
        tokens.extend(rest.split())
    # Punctuation-only tokens ("-", "...") are not spoken: map token positions to word indices.
    kept_before = [0]
    for tok in tokens:
        kept_before.append(kept_before[-1] + _is_word(tok))
    words = [t for t in tokens if _is_word(t)]
    cues: list[Cue] = []
    heads: list[tuple[str, int]] = []
    for kind, text, pos, n in events:
        idx = kept_before[pos]
        if kind == "cue":
            if idx >= len(words):
                raise InputError(
                    f"cue [[{text}]] has no word after it to pin to",
                    file=spath,
                    field="cue",
                    line=n,
                )
            cues.append(Cue(text=text, word_index=idx))
        else:
            heads.append((text, idx))
    scenes: list[Scene] = []
    if heads and heads[0][1] > 0:
        heads.insert(0, ("", 0))
    for i, (title, first) in enumerate(heads):
        last = (heads[i + 1][1] if i + 1 < len(heads) else len(words)) - 1
        if last >= first:
            scenes.append(Scene(title=title, first_word=first, last_word=last))
    return words, cues, scenes
