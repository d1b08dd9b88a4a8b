"""Chapters from the script's scene headings: in the MP4's metadata (ffmpeg's ffmetadata
format, which players and `ffprobe -show_chapters` read) and as a YouTube-style list
(`00:00 Title`, one a line, for a video description)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from planners.schema import Scene, Word


@dataclass(frozen=True)
class Chapter:
    start: float  # seconds in the finished video
    end: float
    title: str


def scene_chapters(
    scenes: Sequence[Scene],
    words: Sequence[Word],
    *,
    duration: float,
    offset: float = 0.0,
    total: float | None = None,
    untitled: str = "Introduction",
) -> list[Chapter]:
    """One chapter per scene heading, starting where its first word is spoken (shifted by
    `offset`, e.g. an intro clip). The first chapter starts at 0 (players and YouTube want that);
    the last ends at `total` (the whole video). No headings: no chapters."""
    if not scenes or not any(s.title for s in scenes):
        return []
    starts = []
    for i, s in enumerate(scenes):
        if s.first_word >= len(words):
            break
        t = 0.0 if i == 0 else words[s.first_word].start + offset
        starts.append((t, s.title or untitled))
    end_all = total if total is not None else duration + offset
    chapters = []
    for i, (t, title) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else end_all
        if end > t:
            chapters.append(Chapter(round(t, 3), round(end, 3), title))
    return chapters


def shift_chapters(chapters: Sequence[Chapter], offset: float, total: float) -> list[Chapter]:
    """Chapters on the body's clock moved into a video with `offset` seconds before the body
    (an intro): the first still starts at 0, the last ends with the video at `total`."""
    out = []
    for i, c in enumerate(chapters):
        start = 0.0 if i == 0 else round(c.start + offset, 3)
        end = round(chapters[i + 1].start + offset, 3) if i + 1 < len(chapters) else total
        out.append(Chapter(start, round(end, 3), c.title))
    return out


def _escape(text: str) -> str:
    return re.sub(r"([=;#\\\n])", r"\\\1", text)


def ffmetadata(chapters: Sequence[Chapter], title: str | None = None) -> str:
    """The ffmetadata text ffmpeg muxes with `-i meta.txt -map_metadata 1 -map_chapters 1`."""
    lines = [";FFMETADATA1"]
    if title:
        lines.append(f"title={_escape(title)}")
    for c in chapters:
        lines += [
            "[CHAPTER]",
            "TIMEBASE=1/1000",
            f"START={round(c.start * 1000)}",
            f"END={round(c.end * 1000)}",
            f"title={_escape(c.title)}",
        ]
    return "\n".join(lines) + "\n"


def _stamp(seconds: float) -> str:
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def youtube_list(chapters: Sequence[Chapter]) -> str:
    """`00:00 Title` lines for a video description."""
    return "".join(f"{_stamp(c.start)} {c.title}\n" for c in chapters)


def read_chapters(path) -> list[Chapter]:
    """The chapters muxed into a file, read back with ffmpeg (`-f ffmetadata`)."""
    import subprocess

    from flows.video.media import ffmpeg_exe

    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
         "-f", "ffmetadata", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    chapters, current = [], None
    base = 1 / 1000
    for line in proc.stdout.splitlines():
        if line == "[CHAPTER]":
            current = {}
            chapters.append(current)
        elif current is not None and "=" in line:
            k, v = line.split("=", 1)
            current[k] = v
    out = []
    for c in chapters:
        num, den = (int(x) for x in c.get("TIMEBASE", "1/1000").split("/"))
        base = num / den
        out.append(
            Chapter(
                int(c["START"]) * base, int(c["END"]) * base, c.get("title", "").replace("\\", "")
            )
        )
    return out
