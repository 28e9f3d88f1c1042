"""The synthetic animal's sleep: wake, NREM and REM per scoring epoch, with the light cycle.

A semi-Markov draw of bouts (lognormal wake, NREM and REM lengths; REM only after NREM;
brief arousals inside NREM) whose parameters follow lights on/off and real mouse sleep,
plus per-epoch wake movement and NREM depth, which the signal model turns into band
amplitudes and events.
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
    wake_sigma: float  # lognormal: wake bouts from seconds to an hour
    wake_max_s: float
    nrem_median_s: float  # of an NREM episode, before brief arousals split it into bouts
    nrem_sigma: float
    p_rem: float  # probability that an NREM episode ends in REM rather than wake
    p_active: float  # probability that a wake bout has movement
    arousals_per_h: float  # brief arousals (< 20 s of wake) per hour of NREM


# Mouse sleep (C57BL/6, 12:12 light cycle): NREM bouts of minutes with a tail to 10-20 min in
# the light phase, wake bouts of seconds to an hour, REM bouts of about 1-2 min skewed
# towards long ones, a brief arousal every 5-10 min of NREM.
_LIGHT = _PhaseParams(wake_median_s=70.0, wake_sigma=1.3, wake_max_s=3600.0, nrem_median_s=250.0, nrem_sigma=0.75,
                      p_rem=0.55, p_active=0.5, arousals_per_h=6.0)
_DARK = _PhaseParams(wake_median_s=150.0, wake_sigma=1.7, wake_max_s=2 * 3600.0, nrem_median_s=200.0,
                     nrem_sigma=0.75, p_rem=0.4, p_active=0.8, arousals_per_h=6.0)
_REM_MEDIAN_S, _REM_SIGMA, _REM_RANGE_S = 70.0, 0.4, (20.0, 180.0)
_AROUSAL_S = (4.0, 16.0)  # brief arousals last one to four 4-s epochs


def _is_light(clock_h: np.ndarray | float) -> np.ndarray | bool:
    h = np.mod(clock_h, 24.0)
    return (h >= LIGHTS_ON_H) & (h < LIGHTS_OFF_H)


def _nrem_depth(rng: np.random.Generator, n: int, epoch_s: float) -> np.ndarray:
    """NREM depth per epoch of one episode: light at its start, then wandering around 1.

    The wander is an AR(1) over epochs (a ~30 s time constant), so depth varies within a bout
    as in real NREM, where delta power rises and falls over tens of seconds.
    """
    k = np.arange(n)
    ramp = np.minimum(1.0, 0.45 + 0.55 * k * epoch_s / 90.0)
    a = math.exp(-epoch_s / 30.0)
    z = np.empty(n)
    z[0] = rng.standard_normal()
    noise = rng.standard_normal(n) * math.sqrt(1 - a * a)
    for i in range(1, n):
        z[i] = a * z[i - 1] + noise[i]
    return ramp * np.exp(0.25 * z)


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
            d = min(max(p.wake_median_s * math.exp(p.wake_sigma * rng.standard_normal()), epoch_s), p.wake_max_s)
        elif state == NREM:
            d = min(max(p.nrem_median_s * math.exp(p.nrem_sigma * rng.standard_normal()), 30.0), 40 * 60.0)
        else:
            d = min(max(_REM_MEDIAN_S * math.exp(_REM_SIGMA * rng.standard_normal()), _REM_RANGE_S[0]), _REM_RANGE_S[1])
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
                move[t:end] = 0.05  # quiet wake: still, but with hippocampal theta
            nxt = NREM  # REM is entered only from NREM
        elif state == NREM:
            depth[t:end] = _nrem_depth(rng, ne, epoch_s)[: end - t]
            # Brief arousals inside the episode, never at its edges, so the epoch before a
            # REM bout is always NREM; each splits the episode into two NREM bouts.
            n_arousals = rng.poisson(ne * epoch_s / 3600.0 * p.arousals_per_h) if ne >= 10 else 0
            for _ in range(n_arousals):
                a0 = t + int(rng.integers(3, ne - 6))
                a1 = a0 + max(1, int(round(rng.uniform(*_AROUSAL_S) / epoch_s)))
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
