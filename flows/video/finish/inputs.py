"""What finishing needs from a job, resolved and checked before any speech or rendering."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.runtime.errors import InputError
from flows.video.finish.settings import parse_loudness
from storage import sha256_file

MUSIC_SUFFIXES = (".wav", ".mp3", ".m4a", ".flac", ".ogg", ".oga", ".opus", ".aac")
MIN_MUSIC_SECONDS = 1.0


@dataclass(frozen=True)
class FinishInputs:
    """The resolved finishing choices of one job (files absolute, option wins over script)."""

    brand: Path | None
    music: Path | None
    music_volume: float
    loudness: float | None
    burn_captions: str
    chapters: bool

    def key_parts(self) -> dict[str, Any]:
        """Everything that changes the finished file, file contents included."""
        from flows.video.finish.brand import load_brand

        return {
            "brand": load_brand(self.brand).content_key() if self.brand else None,
            "music": sha256_file(self.music) if self.music else None,
            "music_volume": self.music_volume,
            "loudness": self.loudness,
            "burn_captions": self.burn_captions,
            "chapters": self.chapters,
        }


def _path(value: str | Path | None, base: Path | None = None) -> Path | None:
    if value in (None, ""):
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() or base is None else (base / p).resolve()


def resolve_finishing(script: Any, options: Any) -> FinishInputs:
    """The option wins over the script's front matter; the brand kit's music is the last
    default (read when the kit is loaded)."""
    return FinishInputs(
        brand=_path(options.brand) or script.brand,
        music=_path(options.music) or script.music,
        music_volume=options.music_volume,
        loudness=parse_loudness(options.loudness),
        burn_captions=options.burn_captions,
        chapters=options.chapters,
    )


def check_music(path: Path, *, file: str | None, field: str = "music") -> None:
    """A readable audio file of at least a second (it is looped to the video's length)."""
    import av

    if not path.is_file():
        raise InputError(f"music file not found: {path}", file=file, field=field)
    if path.suffix.lower() not in MUSIC_SUFFIXES:
        raise InputError(
            f"{path.name}: unsupported audio type (use {', '.join(MUSIC_SUFFIXES)})",
            file=file,
            field=field,
        )
    try:
        with av.open(str(path)) as c:
            if not c.streams.audio:
                raise InputError(f"{path.name} has no audio stream", file=file, field=field)
            seconds = c.duration / av.time_base if c.duration else 0.0
    except InputError:
        raise
    except Exception as exc:  # PyAV raises many error types for broken files
        raise InputError(
            f"{path.name} is not readable audio ({exc.__class__.__name__})", file=file, field=field
        ) from None
    if seconds < MIN_MUSIC_SECONDS:
        raise InputError(f"{path.name} is too short ({seconds:.2f} s)", file=file, field=field)


def check_finishing(script: Any, options: Any) -> str | None:
    """Load the brand kit and check the music (InputError before speech); a hash of the
    finishing inputs for the job's input key, None when the job has no brand or music (so the
    key of a plain job stays what it was)."""
    from flows.video.finish.brand import load_brand

    fin = resolve_finishing(script, options)
    spath = str(script.path)
    kit = load_brand(fin.brand) if fin.brand else None
    if fin.music:
        check_music(fin.music, file=spath if not options.music else None)
    elif kit and kit.music:
        check_music(kit.music, file=str(kit.path))
    if fin.brand is None and fin.music is None:
        return None
    blob = json.dumps(fin.key_parts(), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]
