"""Brand kits: a small YAML file with a logo, intro/outro clips and a lower-third title.

    logo:
      file: logo.png            # relative to the kit
      position: top-right       # top-left | top-right | bottom-left | bottom-right
      size: 0.14                # logo width as a fraction of the video width
      opacity: 0.9
    intro: intro.mp4            # any video ffmpeg reads; conformed to the job's size/fps/audio
    outro: outro.mp4
    lower_third:
      name: Ada Lovelace
      role: Head of Product
      seconds: 4                # on screen from 0.5 s, fading in and out
      color: "#1f6feb"
    music: bed.ogg              # default background music (the `music` option wins)

Everything is checked when the kit is read (files exist, are pictures/videos, are big enough),
so a bad kit fails with one line naming the kit and the field before anything renders.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from PIL import Image, ImageColor, ImageDraw, UnidentifiedImageError

from flows.runtime.errors import InputError
from flows.video.finish.burn import Overlay, Patch, font, static, timed
from storage import sha256_file

POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")
KEYS = ("logo", "intro", "outro", "lower_third", "music")
LOGO_KEYS = ("file", "position", "size", "opacity", "margin")
LOWER_THIRD_KEYS = ("name", "role", "seconds", "color", "start")
MIN_LOGO_PX = 16
MIN_CLIP_PX = 64
MAX_CLIP_SECONDS = 60.0


@dataclass(frozen=True)
class Logo:
    file: Path
    position: str = "top-right"
    size: float = 0.14
    opacity: float = 0.9
    margin: float = 0.03


@dataclass(frozen=True)
class LowerThird:
    name: str
    role: str = ""
    seconds: float = 4.0
    start: float = 0.5
    color: str = "#1f6feb"


@dataclass(frozen=True)
class BrandKit:
    path: Path
    logo: Logo | None = None
    intro: Path | None = None
    outro: Path | None = None
    lower_third: LowerThird | None = None
    music: Path | None = None

    def content_key(self) -> str:
        """A hash of the kit and every file it names: what finishing's cache key needs."""
        data = asdict(self)
        data.pop("path")
        files = [p for p in (self.intro, self.outro, self.music) if p]
        if self.logo:
            files.append(self.logo.file)
        data["sha256"] = {str(p): sha256_file(p) for p in files}
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:32]


def _fail(kit: str, field: str, message: str) -> InputError:
    return InputError(message, file=kit, field=field)


def _file(kit: Path, field: str, value: Any) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise _fail(str(kit), field, f"expected a file path, got {value!r}")
    p = Path(value).expanduser()
    p = p if p.is_absolute() else (kit.parent / p).resolve()
    if not p.is_file():
        raise _fail(str(kit), field, f"no such file: {p}")
    return p


def _number(kit: Path, field: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise _fail(str(kit), field, f"expected a number from {lo} to {hi}, got {value!r}")
    return float(value)


def _check_keys(kit: Path, field: str, data: Any, allowed: tuple[str, ...]) -> dict:
    if not isinstance(data, dict):
        raise _fail(str(kit), field, f"expected a mapping ({', '.join(allowed)}), got {data!r}")
    for k in data:
        if k not in allowed:
            raise _fail(str(kit), f"{field}.{k}" if field else str(k),
                        f"unknown key '{k}' (one of: {', '.join(allowed)})")  # fmt: skip
    return data


def check_image(path: Path, *, kit: str, field: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            image = im.convert("RGBA")
    except (UnidentifiedImageError, OSError) as exc:
        raise _fail(kit, field, f"{path.name} is not an image ({exc})") from None
    if min(image.size) < MIN_LOGO_PX:
        raise _fail(kit, field, f"{path.name} is {image.width}x{image.height}: too small "
                    f"(at least {MIN_LOGO_PX}x{MIN_LOGO_PX} pixels)")  # fmt: skip
    return image


def check_clip(path: Path, *, kit: str, field: str) -> None:
    """A readable video with at least one frame, big enough, not too long."""
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise _fail(kit, field, f"{path.name} has no video stream")
            v = c.streams.video[0]
            w, h = v.codec_context.width, v.codec_context.height
            seconds = c.duration / av.time_base if c.duration else 0.0
            frame = next(c.decode(v), None)
    except InputError:
        raise
    except (av.error.FFmpegError, OSError, StopIteration) as exc:
        raise _fail(kit, field, f"{path.name} is not a video ffmpeg can read ({exc})") from None
    if frame is None:
        raise _fail(kit, field, f"{path.name} has no frames")
    if min(w, h) < MIN_CLIP_PX:
        raise _fail(kit, field, f"{path.name} is {w}x{h}: too small (at least {MIN_CLIP_PX} px)")
    if seconds > MAX_CLIP_SECONDS:
        raise _fail(
            kit, field, f"{path.name} is {seconds:.0f} s long (at most {MAX_CLIP_SECONDS:.0f})"
        )


def load_brand(path: str | Path) -> BrandKit:
    """Read and check a brand kit; InputError naming the kit and the field on any problem."""
    kit = Path(path).expanduser().resolve()
    if not kit.is_file():
        raise InputError("brand kit not found", file=str(path), field="brand")
    try:
        data = yaml.safe_load(kit.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(
            f"not a YAML brand kit: {str(exc).splitlines()[0]}", file=str(kit)
        ) from None
    data = _check_keys(kit, "", data, KEYS)
    logo = None
    if data.get("logo") is not None:
        raw = data["logo"] if isinstance(data["logo"], dict) else {"file": data["logo"]}
        raw = _check_keys(kit, "logo", raw, LOGO_KEYS)
        position = raw.get("position", "top-right")
        if position not in POSITIONS:
            raise _fail(str(kit), "logo.position",
                        f"expected one of {', '.join(POSITIONS)}, got {position!r}")  # fmt: skip
        logo = Logo(
            file=_file(kit, "logo.file", raw.get("file")),
            position=position,
            size=_number(kit, "logo.size", raw.get("size", 0.14), 0.02, 0.5),
            opacity=_number(kit, "logo.opacity", raw.get("opacity", 0.9), 0.05, 1.0),
            margin=_number(kit, "logo.margin", raw.get("margin", 0.03), 0.0, 0.3),
        )
        check_image(logo.file, kit=str(kit), field="logo.file")
    clips = {}
    for key in ("intro", "outro"):
        if data.get(key) is not None:
            clips[key] = _file(kit, key, data[key])
            check_clip(clips[key], kit=str(kit), field=key)
    lower = None
    if data.get("lower_third") is not None:
        raw = _check_keys(kit, "lower_third", data["lower_third"], LOWER_THIRD_KEYS)
        name = str(raw.get("name") or "").strip()
        if not name:
            raise _fail(str(kit), "lower_third.name", "the lower third needs a name")
        color = str(raw.get("color", "#1f6feb"))
        try:
            ImageColor.getrgb(color)
        except ValueError:
            raise _fail(str(kit), "lower_third.color", f"not a colour: {color!r}") from None
        lower = LowerThird(
            name=name,
            role=str(raw.get("role") or "").strip(),
            seconds=_number(kit, "lower_third.seconds", raw.get("seconds", 4.0), 1.0, 30.0),
            start=_number(kit, "lower_third.start", raw.get("start", 0.5), 0.0, 30.0),
            color=color,
        )
    music = _file(kit, "music", data["music"]) if data.get("music") is not None else None
    return BrandKit(kit, logo, clips.get("intro"), clips.get("outro"), lower, music)


# ------------------------------------------------------------------------------------ drawing
def logo_box(
    logo: Logo, width: int, height: int, image_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the logo on a width x height frame."""
    w = max(MIN_LOGO_PX, round(width * logo.size))
    h = max(1, round(w * image_size[1] / image_size[0]))
    m = round(min(width, height) * logo.margin)
    x = m if logo.position.endswith("left") else width - w - m
    y = m if logo.position.startswith("top") else height - h - m
    return x, y, w, h


def logo_overlay(logo: Logo, width: int, height: int) -> Overlay:
    with Image.open(logo.file) as im:
        image = im.convert("RGBA")
    x, y, w, h = logo_box(logo, width, height, image.size)
    resized = image.resize((w, h), Image.Resampling.LANCZOS)
    return static(Patch.from_image(resized, x, y, logo.opacity))


def lower_third_overlay(lt: LowerThird, width: int, height: int) -> Overlay:
    """Name (bold) and role on a coloured bar, bottom left, above where captions go."""
    name_size = max(14, round(height / 18))
    role_size = max(11, round(name_size * 0.7))
    pad = name_size // 2
    fn, fr = font(name_size, bold=True), font(role_size)
    text_w = max(fn.getlength(lt.name), fr.getlength(lt.role) if lt.role else 0)
    box_w = int(min(width * 0.8, text_w + 2 * pad + pad))
    box_h = int(pad + name_size * 1.25 + (role_size * 1.3 if lt.role else 0) + pad / 2)
    img = Image.new("RGBA", (box_w, box_h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, box_w - 1, box_h - 1), fill=(20, 20, 24, 215))
    draw.rectangle((0, 0, pad // 2, box_h - 1), fill=ImageColor.getrgb(lt.color))
    draw.text((pad + pad // 2, pad // 2), lt.name, font=fn, fill=(255, 255, 255))
    if lt.role:
        draw.text((pad + pad // 2, pad // 2 + name_size * 1.25), lt.role, font=fr,
                  fill=(215, 215, 220))  # fmt: skip
    x, y = round(width * 0.05), round(height * 0.72) - box_h
    return timed(Patch.from_image(img, x, y), lt.start, lt.start + lt.seconds)
