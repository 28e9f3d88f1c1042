"""Multitaper spectrograms, one window per sleep epoch.

Windows do not overlap and start on epoch boundaries counted from the recording start,
so the spectrogram of a segment is exactly the corresponding rows of the spectrogram of
the whole recording, and every row lines up with one scored epoch.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.signal.windows import dpss


@lru_cache(maxsize=8)
def _tapers(n: int, time_bandwidth: float) -> np.ndarray:
    k = max(1, int(2 * time_bandwidth) - 1)
    return dpss(n, time_bandwidth, Kmax=k, norm=2).astype(np.float64)


def multitaper_psd(x: np.ndarray, rate: float, *, time_bandwidth: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """One-sided power spectral density of each row of `x` (V^2/Hz), averaged over tapers.

    `x` has shape (..., n_times); the mean of each row is removed first. Returns
    (freqs, psd) with psd of shape (..., n_freqs).
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    x = x - x.mean(axis=-1, keepdims=True)
    tapers = _tapers(n, float(time_bandwidth))
    spec = np.fft.rfft(x[..., None, :] * tapers, axis=-1)
    psd = np.mean(np.abs(spec) ** 2, axis=-2) / rate
    psd[..., 1:] *= 2  # one-sided
    if n % 2 == 0:
        psd[..., -1] /= 2  # the Nyquist bin has no mirror
    return np.fft.rfftfreq(n, 1 / rate), psd


def epoch_spectrogram(x: np.ndarray, rate: float, epoch_s: float, *, time_bandwidth: float = 2.0,
                      fmax: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Spectrogram of a 1-D signal in non-overlapping epochs of `epoch_s` seconds.

    Returns (freqs, power) with power of shape (n_epochs, n_freqs); a trailing part
    shorter than one epoch is left out.
    """
    n = int(round(epoch_s * rate))
    n_epochs = len(x) // n
    epochs = np.asarray(x[: n_epochs * n]).reshape(n_epochs, n)
    freqs, psd = multitaper_psd(epochs, rate, time_bandwidth=time_bandwidth)
    if fmax is not None:
        keep = freqs <= fmax
        freqs, psd = freqs[keep], psd[:, keep]
    return freqs, psd
