"""The inner loop of decimation: a symmetric FIR evaluated only at the kept outputs.

Output i of a stage with factor D and odd, symmetric taps h of length L is
sum_m h[m] * x[i*D + m]. Folding the symmetric halves halves the multiplications, only
every D-th output is computed, and everything stays float32. The first stage reads the
raw channel-major rows (one file per channel) and writes its D-times smaller output
time-major, in cache-sized blocks; later stages work time-major, where the inner loop
runs over contiguous channels and the compiler turns it into SIMD. Compiled by numba
(cached on disk after the first run). Each output is the same arithmetic on the same
window wherever a segment starts, so segments still join bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, fastmath=True)
def _decimate_time_major(x, h_half, h_mid, factor, n_out, out):
    n_ch = x.shape[1]
    half = h_half.shape[0]
    last = 2 * half
    acc = np.empty(n_ch, dtype=np.float32)
    for i in range(n_out):
        base = i * factor
        centre = x[base + half]
        for c in range(n_ch):
            acc[c] = h_mid * centre[c]
        for m in range(half):
            hm = h_half[m]
            r1 = x[base + m]
            r2 = x[base + last - m]
            for c in range(n_ch):
                acc[c] += hm * (r1[c] + r2[c])
        for c in range(n_ch):
            out[i, c] = acc[c]


def decimate_symmetric(x: np.ndarray, taps: np.ndarray, factor: int, n_out: int) -> np.ndarray:
    """Outputs 0..n_out of sum_m taps[m] * x[i*factor + m, :]; x is (samples, channels)."""
    h_half, h_mid = _folded_taps(taps)
    x = np.ascontiguousarray(x, dtype=np.float32)
    _check_length(x.shape[0], len(taps), factor, n_out)
    out = np.empty((n_out, x.shape[1]), dtype=np.float32)
    _decimate_time_major(x, h_half, h_mid, factor, n_out, out)
    return out


def _folded_taps(taps: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """First half and centre of odd-length symmetric taps, float32."""
    taps = np.asarray(taps, dtype=np.float64)
    if len(taps) % 2 == 0 or not np.allclose(taps, taps[::-1], rtol=0, atol=1e-12):
        raise ValueError("the decimation kernels need odd-length symmetric taps")
    half = (len(taps) - 1) // 2
    return np.ascontiguousarray(taps[:half], dtype=np.float32), np.float32(taps[half])


def _check_length(n_in: int, n_taps: int, factor: int, n_out: int) -> None:
    if n_in < (n_out - 1) * factor + n_taps:
        raise ValueError("input shorter than the outputs asked for need")


@njit(cache=True, nogil=True, fastmath=True)
def _decimate_channel_major(x, h_half, h_mid, factor, n_out, out, block):
    """First stage: channel-major input, time-major output, in blocks of outputs.

    Reading each channel's row sequentially and writing a block of `block` outputs x
    all channels (which stays in cache) replaces a full-size transpose of the input.
    """
    n_ch = x.shape[0]
    half = h_half.shape[0]
    last = 2 * half
    for i0 in range(0, n_out, block):
        i1 = min(n_out, i0 + block)
        for c in range(n_ch):
            row = x[c]
            for i in range(i0, i1):
                base = i * factor
                acc = h_mid * row[base + half]
                for m in range(half):
                    acc += h_half[m] * (row[base + m] + row[base + last - m])
                out[i, c] = acc


def decimate_channel_major(x: np.ndarray, taps: np.ndarray, factor: int, n_out: int) -> np.ndarray:
    """Like decimate_symmetric, but x is (channels, samples); the result is (n_out, channels)."""
    h_half, h_mid = _folded_taps(taps)
    x = np.ascontiguousarray(x, dtype=np.float32)
    _check_length(x.shape[1], len(taps), factor, n_out)
    out = np.empty((n_out, x.shape[0]), dtype=np.float32)
    _decimate_channel_major(x, h_half, h_mid, factor, n_out, out, 64)
    return out
