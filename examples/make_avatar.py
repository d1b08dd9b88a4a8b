"""Draw the example presenter image (no downloaded images): `python examples/make_avatar.py`."""

from pathlib import Path

from flows.video.avatar import default_avatar

if __name__ == "__main__":
    dest = Path(__file__).with_name("presenter.png")
    default_avatar(768, 768).save(dest, optimize=True)
    print(dest)
