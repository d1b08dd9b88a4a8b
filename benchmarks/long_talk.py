"""A ten-minute talk end to end: real Piper speech, the real words, the rule plan, the animatic.

Writes a long script (plain prose, scene headings and [[cues]], generated deterministically),
runs the `produce-video` flow on it in this process against a fresh AVATAR_FLOW_HOME (the way
`avatar-flow run` does: Prefect's ephemeral API), then runs it again unchanged. Prints:

- wall seconds per video-second of the render loop for every minute of the talk, the first and
  the last minute, and the noise (spread across the minutes): a per-segment cost that grows
  with the number of segments before it shows up as a last minute slower than the first;
- peak resident memory per minute (this process, sampled every 10 ms; the Prefect server
  subprocess at each segment): flat, not growing with segments;
- the database rows and the files the job left (home, Prefect's step records, the output);
- the time of the no-op re-run (nothing rendered), in this process and as `avatar-flow run`.

    nice -n 10 .venv/bin/python benchmarks/long_talk.py [--minutes 10] [--json OUT] [--keep DIR]

`--minutes 1` is a quick plumbing check. A ten-minute talk sits right at the default
`AVATAR_FLOW_MAX_AUDIO_SECONDS` (600), so the benchmark's home allows 2 minutes more.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from memory import PeakRSS  # this folder (before it leaves the path below)

# benchmarks/generator.py is named like the package: drop this folder from the path so that
# `import generator` finds the package, and put the repository first.
REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO)] + [
    p for p in sys.path if Path(p or os.curdir).resolve() != Path(__file__).resolve().parent
]
WORDS_PER_MINUTE = 210  # the default Piper voice (en_US-joe-medium) reads about this fast

# --------------------------------------------------------------------------------- the script
# Plain prose with {slots}; every section fills them differently, so no two paragraphs repeat.
PARAGRAPHS = (
    "When the {place} opened its doors for the first time, nobody expected very much. There "
    "were {count} tables, a {adjective} counter and a kitchen that was far too small. The "
    "people who came in that first {season} remember the smell of fresh bread and the sound of "
    "the old radio in the corner.",
    "The work itself was simple, but it was never easy. Every morning began before sunrise. "
    "Someone had to carry the flour, light the ovens and check the {tool} twice, because a "
    "mistake at dawn would follow you for the rest of the day.",
    "What changed everything was a small decision about the {thing}. Instead of guessing, the "
    "team started to write down what sold and what did not. After a few weeks the pattern was "
    "obvious, and the {adjective} shelves by the window were full of the right things at the "
    "right time.",
    "Customers noticed the difference before anyone told them. A teacher from the school "
    "across the street started ordering for the whole staff room. A {person} who had walked "
    "past for years finally came in, sat down and stayed for an hour.",
    "Of course, not every idea worked. The evening menu was a quiet disaster, and the {thing} "
    "that looked so good on paper turned out to be far too slow to make by hand. Those "
    "failures were cheap, though, because they were small and they were noticed early.",
    "The lesson is not really about bread. It is about paying attention to the {thing} in "
    "front of you, keeping a record of what happens and changing one thing at a time. That "
    "habit is worth more than any {adjective} plan made in a quiet office.",
    "So here is what I would like you to try this {season}. Pick one routine that you repeat "
    "every week. Write down what you expect, then write down what actually happens. After a "
    "month, read both lists side by side and ask the {person} next to you what they see.",
)
SLOTS = {
    "place": ["bakery", "corner shop", "little cafe", "market stall", "workshop", "bookshop"],
    "count": ["four", "five", "six", "seven", "eight", "nine"],
    "adjective": ["narrow", "crowded", "wooden", "bright", "quiet", "sturdy"],
    "season": ["spring", "summer", "autumn", "winter"],
    "tool": ["scales", "thermometer", "timer", "delivery list", "oven doors", "order book"],
    "thing": ["morning menu", "opening hours", "price list", "window display", "recipe book"],
    "person": ["neighbour", "student", "retired nurse", "bus driver", "young father", "painter"],
}
HEADINGS = (
    "How it started",
    "The daily work",
    "Counting what matters",
    "The first regulars",
    "What went wrong",
    "The real lesson",
    "Your turn",
)
CUES = (
    "opens both hands outward, palms up",
    "points toward the viewer with the index finger",
    "counts on the fingers of one hand",
    "beat gesture with an open palm",
    "nods slowly",
    "spreads the arms wide",
)
ORDINALS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def talk_body(words: int, seed: int = 0) -> str:
    """About `words` spoken words of Markdown: a heading every paragraph or two, a cue in most
    paragraphs (before a sentence), every slot filled from a seeded generator."""
    rng = random.Random(seed)
    out: list[str] = []
    spoken, section, i = 0, 0, 0
    while spoken < words:
        k = i % len(PARAGRAPHS)
        if k % 2 == 0:
            part = ORDINALS[section % len(ORDINALS)]
            out.append(f"# Part {part}: {HEADINGS[k].lower()}\n")
            section += 1
        text = PARAGRAPHS[k].format(**{s: rng.choice(v) for s, v in SLOTS.items()})
        sentences = text.split(". ")
        if i % 3 != 2:  # most paragraphs carry one cue, on a sentence start
            at = 1 + rng.randrange(len(sentences) - 1)
            sentences[at] = f"[[{CUES[i % len(CUES)]}]] {sentences[at]}"
        paragraph = ". ".join(sentences)
        out.append(paragraph + "\n")
        spoken += len(text.split())
        i += 1
    return "\n".join(out)


def talk_script(minutes: float, seed: int = 0) -> str:
    """A whole script file: front matter (the bundled presenter, the default Piper voice) and
    a body of about `minutes` of speech."""
    avatar = REPO / "examples" / "presenter.png"
    body = talk_body(round(minutes * WORDS_PER_MINUTE), seed)
    return (
        "---\n"
        f"title: A {minutes:g}-minute talk\n"
        f"avatar: {avatar}\n"
        "voice: piper\n"
        "style: presenter in a blue sweater, calm studio light\n"
        "resolution: 1280x704\n"
        "fps: 25\n"
        f"seed: {seed}\n"
        "---\n" + body
    )


# ------------------------------------------------------------------------------ measurement
@dataclass
class SegmentClock:
    """Wall time, this process's CPU time, memory and load at the end of every segment."""

    rss: PeakRSS
    stages: dict[str, float] = field(default_factory=dict)  # first event of each stage
    marks: list[dict] = field(default_factory=list)  # the loop's start, then one per segment

    def __call__(self, event) -> None:
        now = time.perf_counter()
        self.stages.setdefault(event.stage, now)
        if event.stage == "render":
            self.marks.append(
                {
                    "wall": now,
                    "cpu": time.process_time(),
                    "peak": self.rss.window(),
                    "load": os.getloadavg()[0],
                    "server": _server_rss(),
                }
            )


def _server_rss() -> int:
    """Resident memory of this process's children (Prefect's ephemeral API server)."""
    import psutil

    total = 0
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):  # it may just have ended
            total += child.memory_info().rss
    return total


def per_segment(segments: list[dict], marks: list[dict]) -> list[dict]:
    """Each segment's video seconds, wall and CPU seconds, peak RSS and the load meanwhile."""
    return [
        {
            "minute": int((seg["start"] + seg["end"]) / 2 // 60) + 1,
            "video": seg["end"] - seg["start"],
            "wall": b["wall"] - a["wall"],
            "cpu": b["cpu"] - a["cpu"],
            "peak": b["peak"],
            "load": b["load"],
        }
        for seg, a, b in zip(segments, marks, marks[1:])
    ]


def per_minute(rows: list[dict]) -> list[dict]:
    """The segments grouped by the minute their middle falls in."""
    out = []
    for m in sorted({r["minute"] for r in rows}):
        group = [r for r in rows if r["minute"] == m]
        video = sum(r["video"] for r in group)
        out.append(
            {
                "minute": m,
                "segments": len(group),
                "video_seconds": round(video, 2),
                "wall_per_video_second": round(sum(r["wall"] for r in group) / video, 4),
                "cpu_per_video_second": round(sum(r["cpu"] for r in group) / video, 4),
                "peak_rss_mib": round(max(r["peak"] for r in group) / 2**20, 1),
                "load": round(statistics.fmean(r["load"] for r in group), 1),
            }
        )
    return out


def trend(rows: list[dict], key: str) -> float | None:
    """How much a segment's cost (seconds per video second) changes from the first segment to
    the last along a straight-line fit, relative to the mean: work that grows with the
    segments before it shows as a clearly positive figure. The first segment (the renderer
    warming up) and the last (often short: a fixed cost over little video) are left out."""
    if len(rows) < 5:
        return None
    ys = [r[key] / r["video"] for r in rows[1:-1]]
    fit = statistics.linear_regression(range(len(ys)), ys)
    return round(fit.slope * (len(ys) - 1) / statistics.fmean(ys), 3)


def database_rows(db_url: str) -> dict[str, int]:
    import sqlalchemy as sa

    from storage import get_engine

    engine = get_engine(db_url)
    with engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        return {
            n: conn.execute(sa.text(f'SELECT COUNT(*) FROM "{n}"')).scalar_one()
            for n in sorted(names)
            if n != "alembic_version"
        }


def files_under(root: Path) -> dict[str, float]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return {"files": len(files), "mib": round(sum(p.stat().st_size for p in files) / 2**20, 1)}


def _isolate(work: Path, minutes: float) -> dict[str, str]:
    """A fresh home and Prefect home, set before anything imports flows or prefect."""
    for key in list(os.environ):
        if key.startswith("AVATAR_FLOW_") or key in ("PREFECT_API_URL", "PREFECT_API_KEY"):
            os.environ.pop(key)
    env = {
        "AVATAR_FLOW_HOME": str(work / "home"),
        "PREFECT_HOME": str(work / "prefect"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "AVATAR_FLOW_MAX_AUDIO_SECONDS": str(round(minutes * 60 + 120)),
    }
    os.environ.update(env)
    return env


def run(minutes: float, work: Path, cli_rerun: bool = True) -> dict:
    env = _isolate(work, minutes)
    script = work / "talk.md"
    script.write_text(talk_script(minutes), encoding="utf-8")
    out = work / "out"

    from flows.runtime import progress
    from flows.runtime.settings import get_settings
    from flows.video.options import JobOptions
    from flows.video.produce import produce_video

    options = JobOptions(out=str(out))
    with PeakRSS(interval=0.01) as rss:
        clock = SegmentClock(rss)
        t0 = time.perf_counter()
        with progress.listening(clock):
            report = produce_video(script=str(script), options=options)
        first_run = time.perf_counter() - t0
    settings = get_settings()
    from sqlmodel import select

    from storage import Segment, session_scope

    with session_scope(settings.db_url) as s:
        segs = s.exec(
            select(Segment).where(Segment.job_id == report["job_id"]).order_by(Segment.index)
        ).all()
        segments = [{"start": x.start, "end": x.end} for x in segs]

    segment_rows = per_segment(segments, clock.marks)
    minutes_rows = per_minute(segment_rows)
    rows = database_rows(settings.db_url)
    files = {
        "home": files_under(settings.home),
        "prefect_step_records": files_under(work / "prefect" / "storage"),
        "output": files_under(out),
    }

    t = time.perf_counter()
    again = produce_video(script=str(script), options=options)
    noop = time.perf_counter() - t
    assert again["segments_rendered"] == 0, again
    cli = None
    if cli_rerun:
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "run", str(script), "--out", str(out)],
            cwd=REPO,
            env={**os.environ, **env, "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO))},
            capture_output=True,
            text=True,
        )
        cli = time.perf_counter() - t
        if proc.returncode != 0 or "0 rendered" not in proc.stdout:
            raise RuntimeError(f"avatar-flow run (no-op) failed: {proc.stdout}{proc.stderr}")
    stages = {
        name: round(clock.stages[nxt] - clock.stages[name], 2)
        for name, nxt in zip(
            ("speech", "words", "plan", "render", "stitch"),
            ("words", "plan", "segments", "stitch", "done"),
        )
        if name in clock.stages and nxt in clock.stages
    }
    first, last = minutes_rows[0], minutes_rows[-1]
    full = [r for r in minutes_rows if r["video_seconds"] >= 50]

    def spread(key: str) -> float | None:
        return round(statistics.stdev(r[key] for r in full), 4) if len(full) > 1 else None

    server = [m["server"] / 2**20 for m in clock.marks[1:]]
    return {
        "minutes_asked": minutes,
        "words": len(json.loads((out / "words.json").read_text())),
        "video_seconds": round(report["duration"], 1),
        "segments": report["segments"],
        "first_run_seconds": round(first_run, 1),
        "stages_seconds": stages,
        "per_minute": minutes_rows,
        "first_minute_wall_per_video_second": first["wall_per_video_second"],
        "last_minute_wall_per_video_second": last["wall_per_video_second"],
        "stdev_wall_across_minutes": spread("wall_per_video_second"),
        "trend_wall": trend(segment_rows, "wall"),
        "first_minute_cpu_per_video_second": first["cpu_per_video_second"],
        "last_minute_cpu_per_video_second": last["cpu_per_video_second"],
        "stdev_cpu_across_minutes": spread("cpu_per_video_second"),
        "trend_cpu": trend(segment_rows, "cpu"),
        "peak_rss_mib": round(rss.peak / 2**20, 1),
        "peak_rss_first_minute_mib": first["peak_rss_mib"],
        "peak_rss_last_minute_mib": last["peak_rss_mib"],
        "server_rss_mib_first_last": [round(server[0], 1), round(server[-1], 1)]
        if server
        else None,
        "database_rows": rows,
        "files": files,
        "noop_rerun_seconds": round(noop, 2),
        "noop_rerun_cli_seconds": round(cli, 1) if cli is not None else None,
    }


def print_report(r: dict) -> None:
    print(
        f"{r['words']} words, {r['video_seconds']} s of video, {r['segments']} segments; "
        f"first run {r['first_run_seconds']} s"
    )
    print("stages (s): " + ", ".join(f"{k} {v}" for k, v in r["stages_seconds"].items()))
    print(
        f"{'minute':>6}{'segments':>10}{'video s':>9}{'wall s/video s':>16}"
        f"{'CPU s/video s':>15}{'peak RSS MiB':>14}{'load':>6}"
    )
    for m in r["per_minute"]:
        print(
            f"{m['minute']:>6}{m['segments']:>10}{m['video_seconds']:>9.1f}"
            f"{m['wall_per_video_second']:>16.3f}{m['cpu_per_video_second']:>15.3f}"
            f"{m['peak_rss_mib']:>14.1f}{m['load']:>6.1f}"
        )
    for kind in ("wall", "cpu"):
        noise, change = r[f"stdev_{kind}_across_minutes"], r[f"trend_{kind}"]
        print(
            f"render {kind} s per video s: first minute "
            f"{r[f'first_minute_{kind}_per_video_second']:.3f}, last minute "
            f"{r[f'last_minute_{kind}_per_video_second']:.3f}"
            + (f", stdev across full minutes {noise:.3f}" if noise is not None else "")
            + (f", fitted change first to last segment {change:+.1%}" if change is not None else "")
        )
    print(
        f"peak RSS: {r['peak_rss_mib']} MiB in all; first minute {r['peak_rss_first_minute_mib']}"
        f" MiB, last minute {r['peak_rss_last_minute_mib']} MiB; Prefect server at the first / "
        f"last segment {r['server_rss_mib_first_last']} MiB"
    )
    print("database rows: " + ", ".join(f"{k} {v}" for k, v in r["database_rows"].items() if v))
    print(
        "files: " + "; ".join(f"{k} {v['files']} ({v['mib']} MiB)" for k, v in r["files"].items())
    )
    cli = r["noop_rerun_cli_seconds"]
    print(
        f"no-op re-run: {r['noop_rerun_seconds']} s in this process"
        + (f", {cli} s as `avatar-flow run` (a new process)" if cli is not None else "")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the talk")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    ap.add_argument("--no-cli-rerun", action="store_true", help="skip the `avatar-flow run` re-run")
    args = ap.parse_args()
    if args.minutes <= 0:
        ap.error(f"--minutes must be positive, got {args.minutes}")
    work = args.keep or Path(tempfile.mkdtemp(prefix="avatar-flow-long-talk-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args.minutes, work.resolve(), cli_rerun=not args.no_cli_rerun)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
