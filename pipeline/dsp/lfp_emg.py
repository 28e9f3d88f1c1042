"""Muscle tone from the LFP itself, where no EMG electrode exists (SleepScoreMaster's
EMG from the LFP): the mean correlation between brain regions of their 300-600 Hz
activity in each epoch. Neck and jaw muscles reach every electrode alike, brain
activity at these frequencies does not.

The spectrogram stage computes it from the LFP when the LFP's rate keeps enough of the
band; below that, the convert stage computes it from the raw data, decimated (region
means only) to `estimate_rate`, with the same `lfp_emg`.
"""

from __future__ import annotations

import numpy as np

LFP_EMG_BAND = (300.0, 600.0)
LFP_EMG_MIN_WIDTH = 50.0  # Hz of usable band above 300 Hz needed for the estimate
PASSBAND_FRACTION = 0.4  # of the LFP rate: what its anti-alias filter leaves flat (pipeline.dsp.decimate)


def usable_band(rate: float, *, passband_fraction: float = PASSBAND_FRACTION) -> tuple[float, float] | None:
    """The part of 300-600 Hz a signal at `rate` keeps flat, or None when under 50 Hz of it."""
    lo, hi = LFP_EMG_BAND[0], min(LFP_EMG_BAND[1], passband_fraction * rate)
    return None if hi - lo < LFP_EMG_MIN_WIDTH else (lo, hi)


def lfp_emg(signals: list[np.ndarray], rate: float, epoch_s: float, *,
            passband_fraction: float = PASSBAND_FRACTION) -> np.ndarray | None:
    """Per-epoch mean pairwise correlation of the signals' 300-600 Hz activity.

    The band is cut to the part of the LFP's spectrum its anti-alias filter leaves flat
    (`passband_fraction` of the rate); None when fewer than two signals or less than
    50 Hz of band remain (an LFP below ~900 Hz).
    """
    from scipy.signal import butter, sosfiltfilt

    band = usable_band(rate, passband_fraction=passband_fraction)
    if len(signals) < 2 or band is None:
        return None
    # Filtered in the signals' own precision (float32 signals: float32 filters, half the
    # memory traffic; float64, as the spectrogram stage's region means are: unchanged).
    sos = butter(4, list(band), btype="bandpass", fs=rate, output="sos").astype(np.result_type(*signals))
    n = int(round(epoch_s * rate))
    n_epochs = min(len(x) for x in signals) // n
    if n_epochs == 0:
        return np.zeros(0)
    z = []
    for x in signals:
        e = sosfiltfilt(sos, x[: n_epochs * n]).reshape(n_epochs, n)
        e = e - e.mean(axis=1, keepdims=True)
        z.append(e / np.maximum(np.sqrt((e ** 2).sum(axis=1, keepdims=True)), 1e-30))
    pairs = [(z[i] * z[j]).sum(axis=1) for i in range(len(z)) for j in range(i + 1, len(z))]
    return np.mean(pairs, axis=0)


FULL_BAND_RATE = LFP_EMG_BAND[1] / PASSBAND_FRACTION  # 1500 Hz: the whole band flat


def estimate_rate(raw_rate: float, lfp_rate: float) -> float | None:
    """The rate to compute the estimate at during conversion, when the LFP rate is too
    low for it: a whole multiple of the LFP rate (so that the spectrogram's epochs start
    on its samples) that keeps the whole band flat, the raw rate divided by a whole
    number where one of the first few multiples is (no up/down stage to make it), else
    the lowest; capped at the raw rate, as long as that keeps enough of the band. None
    when the LFP rate suffices, or when the raw rate is too low too."""
    if usable_band(lfp_rate) is not None:
        return None
    most = int(np.floor(raw_rate / lfp_rate + 1e-9))
    least = int(np.ceil(FULL_BAND_RATE / lfp_rate - 1e-9))
    fitting = [m for m in range(least, min(2 * least, most) + 1)
               if abs(raw_rate / (m * lfp_rate) - round(raw_rate / (m * lfp_rate))) < 1e-9]
    m = fitting[0] if fitting else min(least, most)
    rate = m * lfp_rate
    return rate if m >= 2 and usable_band(rate) is not None else None
