"""An independent ITU-R BS.1770-4 meter for the tests (K-weighting, 400-ms blocks, absolute and
relative gates; true peak by 4x oversampling), so finishing's loudness is checked by other code
than the ffmpeg filters that set it."""

import numpy as np
from scipy.signal import lfilter, resample_poly

# K-weighting at 48 kHz (BS.1770-4, table 1 and 2)
SHELF = ([1.53512485958697, -2.69169618940638, 1.19839281085285], [1.0, -1.69065929318241, 0.73248077421585])  # fmt: skip
HIGHPASS = ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621])


def integrated_loudness(x: np.ndarray, rate: int = 48000) -> float:
    """LUFS of `x` (samples, or samples x channels, float in -1..1) sampled at 48 kHz."""
    assert rate == 48000, "the K-weighting coefficients here are the 48 kHz ones"
    x = x.reshape(len(x), -1)
    y = lfilter(*HIGHPASS, lfilter(*SHELF, x, axis=0), axis=0)
    block, step = int(0.4 * rate), int(0.1 * rate)
    starts = range(0, len(y) - block + 1, step)
    z = np.array([np.mean(y[s : s + block] ** 2, axis=0).sum() for s in starts])
    loud = -0.691 + 10 * np.log10(z + 1e-20)
    z = z[loud > -70.0]
    relative = -0.691 + 10 * np.log10(z.mean()) - 10.0
    z = z[-0.691 + 10 * np.log10(z) > relative]
    return float(-0.691 + 10 * np.log10(z.mean()))


def true_peak_dbtp(x: np.ndarray) -> float:
    x = x.reshape(len(x), -1)
    up = resample_poly(x, 4, 1, axis=0)
    return float(20 * np.log10(np.abs(up).max() + 1e-20))
