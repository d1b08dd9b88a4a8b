import numpy as np
from PIL import Image

from generator.animatic import fit_cover, fit_preview


def test_square_avatar_is_shown_whole_over_a_blurred_backdrop():
    img = Image.new("RGB", (400, 400), (200, 40, 40))
    img.paste((20, 200, 20), (0, 0, 400, 40))  # a green "hair" band at the very top
    frame = fit_preview(img, 640, 352)
    assert frame.shape == (352, 640, 3) and frame.dtype == np.uint8
    x0 = (640 - 352) // 2
    # The top band survives (a cover crop would cut it off) ...
    assert tuple(frame[5, 320]) == (20, 200, 20)
    assert tuple(fit_cover(img, 640, 352)[5, 320]) != (20, 200, 20)
    # ... and the side bars are a darker backdrop, not the avatar itself.
    assert frame[:, : x0 - 2].mean() < frame[:, x0 + 2 : x0 + 352 - 2].mean()


def test_matching_aspect_is_a_plain_resize():
    img = Image.new("RGB", (1280, 704), (10, 120, 230))
    assert np.array_equal(fit_preview(img, 640, 352), fit_cover(img, 640, 352))
