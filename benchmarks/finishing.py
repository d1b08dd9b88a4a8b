"""How long finishing takes per second of video, on the CPU: the audio-only path (loudness,
chapters, poster; the picture is copied) and the full path (brand kit with intro/outro, logo and
lower third, ducked music, burned-in captions: every frame redrawn and re-encoded).

Run: `.venv/bin/python benchmarks/finishing.py [--seconds 30] [--size 1280x704]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from flows.video.finish.assemble import FinishSpec, finish_video
from flows.video.finish.brand import load_brand
from flows.video.media import encode_frames
from planners.schema import Word

EXAMPLE_KIT = Path(__file__).resolve().parents[1] / "examples" / "finishing" / "brand.yaml"


def body(work: Path, seconds: float, width: int, height: int, fps: int = 25):
    n = round(seconds * fps)
    rng = np.random.default_rng(0)
    base = rng.integers(40, 200, (height, width, 3), dtype=np.uint8)
    video = encode_frames((np.roll(base, i, axis=1) for i in range(n)), fps, work / "body.mp4")
    rate = 22050
    t = np.arange(int(seconds * rate)) / rate
    words, x, k = [], np.zeros_like(t), 0.3
    while k + 0.35 < seconds - 0.3:
        words.append(Word(word=f"word{len(words)}.", start=k, end=k + 0.3) if len(words) % 8 == 7
                      else Word(word=f"word{len(words)}", start=k, end=k + 0.3))  # fmt: skip
        m = (t >= k) & (t < k + 0.3)
        x[m] = 0.2 * np.sin(2 * np.pi * 190 * t[m])
        k += 0.4 if len(words) % 8 else 1.2
    sf.write(work / "speech.wav", x.astype(np.float32), rate, subtype="PCM_16")
    return video, work / "speech.wav", words


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--size", default="1280x704")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        video, speech, words = body(work, args.seconds, width, height)
        common = dict(video=video, speech=speech, words=words, width=width, height=height, fps=25)
        runs = {
            "audio only (loudness, chapters, poster)": FinishSpec(**common),
            "full (brand kit, music, burned captions)": FinishSpec(
                **common, brand=load_brand(EXAMPLE_KIT), burn_captions="words"
            ),
        }
        for name, spec in runs.items():
            t0 = time.perf_counter()
            done = finish_video(spec, work / name.split()[0])
            s = time.perf_counter() - t0
            total = sum(done.parts.values())
            print(f"{name}: {s:.1f} s for {total:.1f} s of {args.size} video "
                  f"({s / total:.2f} s per video second); {done.loudness['integrated_lufs']} LUFS, "
                  f"{done.loudness['true_peak_dbtp']} dBTP")  # fmt: skip


if __name__ == "__main__":
    main()
