"""How fast the CPU preview path is: animatic rendering and H.264 encoding, in frames/s.

The whole pipeline must run faster than real time (25 fps) on 2 cores, so both numbers
need to be well above that. Run: `.venv/bin/python benchmarks/animatic.py`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from flows.video.media import encode_frames
from generator.animatic import AnimaticRenderer
from generator.render_types import CaptionWord, PromptPhase, RenderRequest, StructuredPrompt

WORDS = [
    "so",
    "here",
    "is",
    "the",
    "plan",
    "for",
    "today",
    "we",
    "will",
    "look",
    "at",
    "three",
    "things",
    "that",
    "matter",
    "most",
]


def make_request(width: int, height: int, num_frames: int = 125, fps: int = 25) -> RenderRequest:
    """A realistic segment: full caption load, two phases, speech-like audio."""
    rate = 16000
    seconds = num_frames / fps
    t = np.arange(int(seconds * rate)) / rate
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 2.0 * t) > 0)).astype(
        np.float32
    )
    yy, xx = np.mgrid[0:512, 0:512]
    avatar = Image.fromarray(
        np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
    )
    step = seconds / len(WORDS)
    captions = [CaptionWord(w, i * step, i * step + step * 0.8) for i, w in enumerate(WORDS)]
    phases = (PromptPhase("waves hello with the right hand", 0.4, 2.2),
              PromptPhase("counts on the fingers of one hand", 2.6, 4.6))  # fmt: skip
    return RenderRequest(
        index=1, num_frames=num_frames, fps=fps, width=width, height=height, audio=audio,
        prompt=StructuredPrompt("a presenter", phases, seconds), image=avatar,
        captions=captions, segment_start=5.0, total_duration=30.0,
        timeline_phases=[PromptPhase(p.text, p.start + 5, p.end + 5) for p in phases],
        timeline_cuts=[5.0, 10.0, 15.0, 20.0, 25.0],
    )  # fmt: skip


def bench(width: int, height: int, repeats: int) -> None:
    renderer = AnimaticRenderer()
    request = make_request(width, height)
    n = request.num_frames
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        frames = renderer.render(request)
        times.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        encode_frames(frames, request.fps, Path(tmp) / "seg.mp4")
        enc = time.perf_counter() - t0
    print(
        f"{width}x{height}: animatic {n / times[0]:7.1f} fps first, {n / min(times):7.1f} fps best"
        f" | encode {n / enc:6.1f} fps | render+encode {n / (times[0] + enc):6.1f} fps"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for w, h in ((1280, 704), (640, 352)):
        bench(w, h, args.repeats)


if __name__ == "__main__":
    main()
