"""The avatar image: validation before any heavy work, and the built-in default avatar.

The default avatar is drawn procedurally (no downloaded images), so a script without
`avatar:` still renders.
"""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, UnidentifiedImageError

from flows.runtime.errors import InputError

MIN_SIDE = 256
MAX_PIXELS = 40_000_000


def check_avatar(path: Path, *, file: str | None = None) -> tuple[int, int]:
    """(width, height) of a usable avatar image, or an InputError naming the problem."""
    field = "avatar"
    if not path.exists():
        raise InputError(f"avatar image not found: {path}", file=file, field=field)
    if not path.is_file():
        raise InputError(f"avatar is not a file: {path}", file=file, field=field)
    # Read only the header first: a 40-megapixel check must not decode a huge image.
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as im:
            width, height = im.size
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = (
            "not an image" if isinstance(exc, UnidentifiedImageError) else f"unreadable ({exc})"
        )
        raise InputError(f"{path.name} is {reason}", file=file, field=field) from None
    if min(width, height) < MIN_SIDE:
        raise InputError(
            f"{path.name} is {width}x{height}; the shorter side must be at least {MIN_SIDE} px",
            file=file,
            field=field,
        )
    if width * height > MAX_PIXELS:
        raise InputError(
            f"{path.name} is {width}x{height} ({width * height / 1e6:.1f} MP); the "
            f"limit is {MAX_PIXELS / 1e6:.0f} MP",
            file=file,
            field=field,
        )
    return width, height


def load_avatar(path: Path | None) -> Image.Image:
    """RGB avatar (the default one when `path` is None)."""
    if path is None:
        return default_avatar()
    with Image.open(path) as im:
        return im.convert("RGB")


def default_avatar(width: int = 768, height: int = 768, seed: int = 0) -> Image.Image:
    """A friendly stylised presenter: head, hair, eyes, shoulders on a soft studio backdrop."""
    w, h = width, height
    bg = Image.new("RGB", (w, h))
    d = ImageDraw.Draw(bg)
    for y in range(h):  # vertical gradient backdrop
        t = y / h
        d.line([(0, y), (w, y)], fill=(int(38 + 40 * t), int(64 + 50 * t), int(96 + 60 * t)))
    d = ImageDraw.Draw(bg)
    cx = w // 2
    skin, shirt, hair = (224, 178, 150), (52, 86, 140), (58, 40, 30)
    # Shoulders and torso.
    d.ellipse([cx - 0.42 * w, 0.70 * h, cx + 0.42 * w, 1.35 * h], fill=shirt)
    d.polygon(
        [(cx - 0.07 * w, 0.70 * h), (cx + 0.07 * w, 0.70 * h), (cx, 0.80 * h)], fill=(235, 235, 240)
    )
    # Neck and head.
    d.rectangle([cx - 0.07 * w, 0.52 * h, cx + 0.07 * w, 0.72 * h], fill=(210, 164, 136))
    d.ellipse([cx - 0.17 * w, 0.20 * h, cx + 0.17 * w, 0.62 * h], fill=skin)
    d.chord([cx - 0.185 * w, 0.16 * h, cx + 0.185 * w, 0.46 * h], 180, 360, fill=hair)
    # Eyes, brows, nose, mouth.
    for sx in (-1, 1):
        ex = cx + sx * 0.065 * w
        d.ellipse([ex - 0.022 * w, 0.37 * h, ex + 0.022 * w, 0.40 * h], fill=(250, 250, 250))
        d.ellipse([ex - 0.011 * w, 0.372 * h, ex + 0.011 * w, 0.398 * h], fill=(60, 40, 30))
        d.line(
            [ex - 0.03 * w, 0.345 * h, ex + 0.03 * w, 0.34 * h], fill=hair, width=max(2, w // 150)
        )
    d.line(
        [cx, 0.40 * h, cx - 0.012 * w, 0.46 * h, cx + 0.01 * w, 0.465 * h],
        fill=(190, 140, 115),
        width=max(2, w // 200),
    )
    d.arc(
        [cx - 0.06 * w, 0.47 * h, cx + 0.06 * w, 0.53 * h],
        20,
        160,
        fill=(150, 70, 70),
        width=max(2, w // 150),
    )
    return bg.filter(ImageFilter.SMOOTH)
