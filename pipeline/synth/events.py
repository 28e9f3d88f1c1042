"""Brief events of a recording: sleep spindles, sharp-wave ripples, movements, REM twitches.

Drawn once for the whole recording from the hypnogram (each kind only in its state), then
read block by block by the signal model as smooth envelopes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.synth.hypnogram import NREM, REM, WAKE


@dataclass
class _Events:
    onset: np.ndarray  # s, sorted
    duration: np.ndarray  # s
    amp: np.ndarray  # relative size (signed volts for movement artefacts)

    @property
    def max_duration(self) -> float:
        return float(self.duration.max()) if self.duration.size else 0.0

    def envelope(self, j0: int, n: int, low_fs: float) -> np.ndarray:
        """Sum of sin^2 (Hann) bumps at low-rate samples j0..j0+n-1 (sample j at t=j/low_fs)."""
        out = np.zeros(n)
        t0, t1 = j0 / low_fs, (j0 + n) / low_fs
        lo = np.searchsorted(self.onset, t0 - self.max_duration)
        hi = np.searchsorted(self.onset, t1)
        for e in range(lo, hi):
            on, dur = self.onset[e], self.duration[e]
            i0 = max(int(math.ceil(on * low_fs)) - j0, 0)
            i1 = min(int(math.ceil((on + dur) * low_fs)) - j0, n)
            if i1 <= i0:
                continue
            phase = ((j0 + np.arange(i0, i1)) / low_fs - on) / dur
            out[i0:i1] += self.amp[e] * np.sin(np.pi * phase) ** 2
        return out


def _draw_events(rng, states, move, epoch_s) -> dict[str, _Events]:
    """Spindles, ripples, movements (with artefacts) and REM twitches for the whole recording."""
    n = len(states)

    def poisson(rate_per_s, dur_range, *, same_state=None):
        counts = rng.poisson(rate_per_s * epoch_s)
        idx = np.repeat(np.arange(n), counts)
        onset = np.sort(idx * epoch_s + rng.uniform(0.0, epoch_s, idx.size))
        dur = rng.uniform(*dur_range, onset.size)
        amp = rng.uniform(0.6, 1.4, onset.size)
        if same_state is not None:  # the event must end in the state it started in
            end_epoch = np.minimum(((onset + dur) // epoch_s).astype(np.int64), n - 1)
            keep = states[end_epoch] == same_state
            onset, dur, amp = onset[keep], dur[keep], amp[keep]
        return _Events(onset, dur, amp)

    is_nrem, is_rem, is_wake = states == NREM, states == REM, states == WAKE
    events = {
        "spindle": poisson(0.1 * is_nrem, (0.5, 2.0), same_state=NREM),  # ~6/min of NREM
        "ripple": poisson(0.5 * is_nrem, (0.03, 0.1), same_state=NREM),
        "twitch": poisson(0.15 * is_rem, (0.05, 0.25)),
    }
    mov = poisson(0.12 * move * is_wake, (1.0, 2.5))
    mov.amp = rng.uniform(1.0, 2.0, mov.onset.size)
    events["movement"] = mov
    # Half of the movements shift the electrodes: a slow (<2 Hz) bump on every LFP channel.
    has_artefact = rng.random(mov.onset.size) < 0.5
    sign = np.where(rng.random(mov.onset.size) < 0.5, -1.0, 1.0)
    size_uv = 150.0 * np.exp(0.6 * rng.standard_normal(mov.onset.size))
    events["artefact"] = _Events(mov.onset, mov.duration, np.where(has_artefact, sign * size_uv * 1e-6, 0.0))
    return events
