"""The synthetic animal's sleep: wake, NREM and REM per scoring epoch, with the light cycle.

A semi-Markov draw of bouts (lognormal wake and NREM, uniform REM lengths; REM only after
NREM) whose parameters follow lights on/off, plus per-epoch wake movement and NREM depth,
which the signal model turns into band amplitudes and events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from pipeline.synth.random_streams import random_stream

WAKE, NREM, REM = 0, 1, 2
STATE_NAMES = ("wake", "nrem", "rem")
LIGHTS_ON_H, LIGHTS_OFF_H = 7, 19


@dataclass(frozen=True)
class _PhaseParams:
    wake_median_s: float
    wake_sigma: float  # lognormal: heavy tail of long wake bouts
    nrem_median_s: float
    p_rem: float  # probability that an NREM bout ends in REM rather than wake
    p_active: float  # probability that a wake bout has movement


_LIGHT = _PhaseParams(wake_median_s=70.0, wake_sigma=1.0, nrem_median_s=150.0, p_rem=0.35, p_active=0.6)
_DARK = _PhaseParams(wake_median_s=150.0, wake_sigma=1.2, nrem_median_s=110.0, p_rem=0.3, p_active=0.85)


def _is_light(clock_h: np.ndarray | float) -> np.ndarray | bool:
    h = np.mod(clock_h, 24.0)
    return (h >= LIGHTS_ON_H) & (h < LIGHTS_OFF_H)


def _simulate_states(rng: np.random.Generator, n_epochs: int, epoch_s: float, start_h: float):
    """One semi-Markov draw: per-epoch state, wake movement (0..1) and NREM depth."""
    states = np.empty(n_epochs, dtype=np.int8)
    move = np.zeros(n_epochs)
    depth = np.ones(n_epochs)
    state = NREM if rng.random() < (0.7 if _is_light(start_h) else 0.3) else WAKE
    t, first = 0, True
    while t < n_epochs:
        p = _LIGHT if _is_light(start_h + t * epoch_s / 3600.0) else _DARK
        if state == WAKE:
            d = min(max(p.wake_median_s * math.exp(p.wake_sigma * rng.standard_normal()), epoch_s), 4 * 3600.0)
        elif state == NREM:
            d = min(max(p.nrem_median_s * math.exp(0.5 * rng.standard_normal()), 30.0), 1200.0)
        else:
            d = rng.uniform(40.0, 120.0)
        if first:  # the recording starts in the middle of a bout
            d *= rng.uniform(0.2, 1.0)
            first = False
        ne = max(1, int(round(d / epoch_s)))
        end = min(t + ne, n_epochs)
        states[t:end] = state
        if state == WAKE:
            if rng.random() < p.p_active:
                move[t:end] = 0.25 + 0.75 * rng.beta(2.0, 2.0, size=end - t)
            else:
                move[t:end] = 0.05
            nxt = NREM  # REM is entered only from NREM
        elif state == NREM:
            # Light NREM at the bout start deepens over ~1 min; depth wanders epoch to epoch.
            k = np.arange(end - t)
            depth[t:end] = np.minimum(1.0, 0.5 + 0.5 * k * epoch_s / 60.0) * rng.uniform(0.85, 1.15, end - t)
            # Brief arousals: 1-3 epochs of wake inside the bout, never at its edges, so the
            # epoch before a REM bout is always NREM.
            n_arousals = rng.poisson(ne * epoch_s / 150.0) if ne >= 10 else 0
            for _ in range(n_arousals):
                a0 = t + int(rng.integers(3, ne - 6))
                a1 = a0 + int(rng.integers(1, 4))
                states[a0 : min(a1, n_epochs)] = WAKE
                move[a0 : min(a1, n_epochs)] = 0.3
            nxt = REM if rng.random() < p.p_rem else WAKE
            if nxt == REM:  # delta fades in the last half minute before REM
                n_ramp = min(max(1, int(round(30.0 / epoch_s))), ne)
                idx = np.arange(t + ne - n_ramp, t + ne)
                inside = idx < n_epochs
                depth[idx[inside]] *= np.linspace(1.0, 0.5, n_ramp)[inside]
        else:
            nxt = WAKE if rng.random() < 0.85 else NREM
        t += ne
        state = nxt
    return states, move, depth


def _fraction_box(light_frac: float, duration_s: float):
    """Accepted (low, high) state fractions for a recording, or None if any draw is fine.

    Short recordings are held to realistic proportions so that every seed gives a usable
    test or demo recording; long ones (over 3 h) are left to the model and the light cycle.
    """
    if duration_s < 180.0 or duration_s > 3 * 3600.0:
        return None
    if duration_s < 1200.0:  # a few minutes: every state present (REM bouts last >= 40 s)
        return {WAKE: (0.12, 0.6), NREM: (0.25, 0.7), REM: (0.08, 0.35)}
    f = light_frac
    center = {WAKE: 0.425 * f + 0.65 * (1 - f), NREM: 0.475 * f + 0.30 * (1 - f)}
    half = 0.075 * f + 0.1 * (1 - f)
    return {
        WAKE: (center[WAKE] - half, center[WAKE] + half),
        NREM: (center[NREM] - half, center[NREM] + half),
        REM: (0.05 * f + 0.02 * (1 - f), 0.12 * f + 0.08 * (1 - f)),
    }


def _hypnogram(seed: int, n_epochs: int, epoch_s: float, start: datetime, n_scored: int | None = None):
    """States, movement and NREM depth per epoch for a seed; depends on nothing else.

    For recordings between 3 min and 3 h the draw is repeated (deterministically) until
    the state fractions of the first `n_scored` epochs are realistic.
    """
    n_scored = n_epochs if n_scored is None else n_scored
    rng = random_stream(seed, "states")
    start_h = start.hour + start.minute / 60.0 + start.second / 3600.0
    clock = start_h + (np.arange(n_scored) + 0.5) * epoch_s / 3600.0
    box = _fraction_box(float(np.mean(_is_light(clock))), n_scored * epoch_s)
    best, best_miss = None, math.inf
    for _ in range(2000 if box else 1):
        draw = _simulate_states(rng, n_epochs, epoch_s, start_h)
        if box is None:
            return draw
        fr = np.bincount(draw[0][:n_scored], minlength=3) / n_scored
        miss = sum(max(lo - fr[s], 0.0, fr[s] - hi) for s, (lo, hi) in box.items())
        if miss == 0.0:
            return draw
        if miss < best_miss:
            best, best_miss = draw, miss
    return best
