"""Loudness: the final mix normalised to a target integrated loudness with a true-peak ceiling,
measured per ITU-R BS.1770 / EBU R128 by ffmpeg (the binary imageio-ffmpeg ships).

Normalising is ffmpeg's `loudnorm` in two passes: the first measures the file, the second
applies one linear gain from those measurements (a true-peak limiter only where the gain would
push a peak over the ceiling). `measure` reads the result back with the `ebur128` filter, so
the number in the run report is a measurement of the file, not the target we asked for.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from flows.video.finish.settings import LOUDNESS_PRESETS, parse_loudness
from flows.video.media import MediaError, ffmpeg_exe, run_ffmpeg
from storage import atomic_path

PRESETS = LOUDNESS_PRESETS
TRUE_PEAK_CEILING = -1.0  # dBTP
LOUDNESS_RANGE = 20.0  # LU: wide, so a linear gain is allowed for ordinary speech


@dataclass(frozen=True)
class Loudness:
    """A BS.1770 measurement: integrated loudness (LUFS), true peak (dBTP), loudness range (LU)."""

    integrated: float
    true_peak: float
    lra: float

    def as_dict(self) -> dict[str, float]:
        return {
            "integrated_lufs": round(self.integrated, 2),
            "true_peak_dbtp": round(self.true_peak, 2),
            "lra_lu": round(self.lra, 2),
        }


def parse_target(value: str | float | None) -> float | None:
    """A preset name, a number of LUFS, or off -> LUFS or None (see `settings.parse_loudness`)."""
    return parse_loudness(value)


def _ffmpeg_stderr(args: list[str]) -> str:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        raise MediaError(f"ffmpeg failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stderr


_SUMMARY = {
    "integrated": re.compile(r"Integrated loudness:\s*I:\s*(-?[\d.]+|-inf)\s*LUFS", re.S),
    "lra": re.compile(r"Loudness range:\s*LRA:\s*(-?[\d.]+)\s*LU", re.S),
    "true_peak": re.compile(r"True peak:\s*Peak:\s*(-?[\d.]+|-inf)\s*dBFS", re.S),
}


def measure(path: Path) -> Loudness:
    """Integrated loudness, true peak and loudness range of a file's first audio stream."""
    err = _ffmpeg_stderr(
        ["-i", str(path), "-map", "0:a:0", "-af", "ebur128=peak=true", "-f", "null", "-"]
    )
    summary = err[err.rfind("Summary:") :]
    values = {}
    for key, pattern in _SUMMARY.items():
        m = pattern.search(summary)
        if not m:
            raise MediaError(f"could not read {key} from ffmpeg's ebur128 summary of {path}")
        values[key] = float(m.group(1)) if m.group(1) != "-inf" else float("-inf")
    return Loudness(**values)


def _loudnorm_filter(target: float, ceiling: float) -> str:
    return f"loudnorm=I={target}:TP={ceiling}:LRA={LOUDNESS_RANGE}"


def normalise(
    src: Path, dest: Path, *, target: float, ceiling: float = TRUE_PEAK_CEILING, rate: int
) -> Loudness:
    """Write `src`'s audio to `dest` (PCM WAV at `rate`) at `target` LUFS with true peaks under
    `ceiling` dBTP; returns the measurement of the written file."""
    err = _ffmpeg_stderr(
        [
            "-i", str(src), "-map", "0:a:0",
            "-af", _loudnorm_filter(target, ceiling) + ":print_format=json",
            "-f", "null", "-",
        ]
    )  # fmt: skip
    block = err[err.rfind("{") : err.rfind("}") + 1]
    try:
        first = json.loads(block)
    except json.JSONDecodeError:
        raise MediaError(f"could not read ffmpeg's loudnorm measurement of {src}") from None
    if first["input_i"] in ("-inf", "inf"):  # digital silence: nothing to normalise
        with atomic_path(dest) as tmp:
            run_ffmpeg(["-i", str(src), "-map", "0:a:0", "-ar", str(rate), "-f", "wav", str(tmp)])
        return measure(dest)
    measured = (
        f":measured_I={first['input_i']}:measured_TP={first['input_tp']}"
        f":measured_LRA={first['input_lra']}:measured_thresh={first['input_thresh']}"
        f":offset={first['target_offset']}:linear=true"
    )
    with atomic_path(dest) as tmp:
        run_ffmpeg(
            [
                "-i", str(src), "-map", "0:a:0",
                "-af", _loudnorm_filter(target, ceiling) + measured,
                "-ar", str(rate), "-c:a", "pcm_s16le", "-f", "wav", str(tmp),
            ]
        )  # fmt: skip
    return measure(dest)
