"""Channel quality control: RMS, flat and saturated fractions and line noise per channel,
on windows spread over a whole recording, and the flags that keep a channel out of its
region's average (`dead`, `noisy`).

It reads through any raw reader's `read(start, stop, channels)` and knows no format.
"""

from __future__ import annotations

import numpy as np

QC_WINDOWS = 8
QC_WINDOW_S = 10.0


def _line_noise_ratio(x: np.ndarray, rate: float) -> np.ndarray:
    """Power at 50 or 60 Hz (whichever is larger) over the median power 40-80 Hz."""
    n = x.shape[-1]
    spec = np.abs(np.fft.rfft(x * np.hanning(n), axis=-1)) ** 2
    freqs = np.fft.rfftfreq(n, 1 / rate)
    band = (freqs >= 40) & (freqs <= 80)
    ref = np.median(spec[:, band], axis=-1) + 1e-30
    peak = np.max([spec[:, np.abs(freqs - f0) <= 0.5].max(axis=-1) for f0 in (50.0, 60.0)], axis=0)
    return peak / ref


def channel_qc(recording, channels: list[str], regions: dict[str, str | None]) -> dict[str, dict]:
    """Per-channel QC on windows spread over the whole recording.

    A channel is `dead` when its RMS is under a tenth of its region's median (or it is
    flat), `noisy` when over five times the median or saturated; both are left out of
    region averages. `regions` gives every channel a group to be compared with (the
    caller puts channels in no region into one group of their own).
    """
    rate = recording.sampling_rate
    n_win = int(min(QC_WINDOW_S * rate, recording.n_samples))
    starts = np.linspace(0, recording.n_samples - n_win, QC_WINDOWS).astype(np.int64)
    starts = np.unique(starts)
    full_scale = 32767 * np.abs(recording.volts_per_bit(channels))  # int16 samples
    stats = {ch: {"rms": [], "flat": [], "sat": [], "line": []} for ch in channels}
    for s in starts:
        stored = recording.read(int(s), int(s) + n_win, channels)
        block = stored - stored.mean(axis=1, keepdims=True)
        line = _line_noise_ratio(block, rate)
        for i, ch in enumerate(channels):
            x = block[i]
            stats[ch]["rms"].append(float(np.sqrt(np.mean(x * x))))
            stats[ch]["flat"].append(float(np.mean(np.diff(x) == 0)))
            stats[ch]["sat"].append(float(np.mean(np.abs(stored[i]) >= 0.999 * full_scale[i])))
            stats[ch]["line"].append(float(line[i]))
    qc = {}
    for ch in channels:
        s = stats[ch]
        qc[ch] = {
            "rms_uv": float(np.median(s["rms"]) * 1e6),
            "flat_fraction": float(np.mean(s["flat"])),
            "saturated_fraction": float(np.mean(s["sat"])),
            "line_noise_ratio": float(np.median(s["line"])),
            "flag": "ok",
        }
    for region in set(regions.values()):
        members = [ch for ch in channels if regions[ch] == region]
        med = np.median([qc[ch]["rms_uv"] for ch in members])
        for ch in members:
            q = qc[ch]
            if q["flat_fraction"] > 0.5 or q["rms_uv"] < 0.1 * med:
                q["flag"] = "dead"
            elif q["saturated_fraction"] > 0.01 or (len(members) > 2 and q["rms_uv"] > 5 * med):
                q["flag"] = "noisy"
    return qc
