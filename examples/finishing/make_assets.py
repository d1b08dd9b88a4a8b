"""Make the finishing example's media here, from nothing (no downloads, no licence question):
`python examples/finishing/make_assets.py`.

- music.ogg: 20 s of mono background music synthesised from a four-chord progression (soft
  sine pads with a slow attack, a quiet pulse), Vorbis;
- logo.png: the "af" mark on a transparent background;
- intro.mp4 / outro.mp4: 1.6 s title cards with a short chime, 832x480 at 25 fps.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw

from flows.video.finish.burn import font
from flows.video.media import encode_frames, run_ffmpeg

HERE = Path(__file__).resolve().parent
RATE = 44100
CHORDS = [
    (220.0, 277.18, 329.63),
    (196.0, 246.94, 293.66),
    (174.61, 220.0, 261.63),
    (196.0, 246.94, 329.63),
]  # fmt: skip  A, G, F, G(sus): a calm loop


def music(seconds: float = 20.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    out = np.zeros_like(t)
    bar = seconds / 8
    for i in range(8):
        chord = CHORDS[i % len(CHORDS)]
        m = (t >= i * bar) & (t < (i + 1) * bar)
        local = t[m] - i * bar
        env = np.minimum(1.0, local / 0.4) * np.minimum(1.0, (bar - local) / 0.3)
        for k, f in enumerate(chord):
            out[m] += env * (0.22 / (k + 1)) * np.sin(2 * np.pi * f * t[m])
            out[m] += env * 0.03 * np.sin(2 * np.pi * 2 * f * t[m])
        beats = local % (bar / 4)
        out[m] += 0.08 * np.exp(-beats * 30) * np.sin(2 * np.pi * 110 * beats)
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def logo(path: Path) -> None:
    img = Image.new("RGBA", (256, 128), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((4, 4, 252, 124), radius=28, fill=(31, 111, 235, 235))
    d.text((128, 64), "af", font=font(84, bold=True), fill=(255, 255, 255), anchor="mm")
    img.save(path, optimize=True)


def card(path: Path, text: str, sub: str, seconds: float = 1.6, fps: int = 25) -> None:
    w, h = 832, 480
    frames = []
    for i in range(round(seconds * fps)):
        a = min(1.0, i / 8, (round(seconds * fps) - 1 - i) / 8)
        img = Image.new("RGB", (w, h), (12, 18, 34))
        d = ImageDraw.Draw(img)
        c = tuple(int(v * a) for v in (255, 255, 255))
        d.text((w // 2, h // 2 - 20), text, font=font(56, bold=True), fill=c, anchor="mm")
        d.text(
            (w // 2, h // 2 + 40),
            sub,
            font=font(26),
            fill=tuple(int(v * a) for v in (140, 180, 255)),
            anchor="mm",
        )
        frames.append(np.asarray(img))
    t = np.arange(int(seconds * RATE)) / RATE
    chime = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate((523.25, 659.25, 783.99)))
    chime = (0.3 * chime * np.exp(-t * 2.5) * np.minimum(1, t / 0.01)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        pic = encode_frames(np.stack(frames), fps, Path(tmp) / "v.mp4")
        wav = Path(tmp) / "a.wav"
        sf.write(wav, chime, RATE, subtype="PCM_16")
        run_ffmpeg(["-i", str(pic), "-i", str(wav), "-c:v", "copy", "-c:a", "aac", "-b:a", "96k",
                    "-shortest", "-movflags", "+faststart", str(path)])  # fmt: skip


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "music.wav"
        sf.write(wav, music(), RATE, subtype="PCM_16")
        run_ffmpeg(["-i", str(wav), "-ac", "1", "-c:a", "libvorbis", "-q:a", "1",
                    str(HERE / "music.ogg")])  # fmt: skip
    logo(HERE / "logo.png")
    card(HERE / "intro.mp4", "avatar-flow", "personal videos, made from a script")
    card(HERE / "outro.mp4", "Thanks for watching", "avatar-flow.example")
    for name in ("music.ogg", "logo.png", "intro.mp4", "outro.mp4"):
        print(HERE / name, (HERE / name).stat().st_size, "bytes")
