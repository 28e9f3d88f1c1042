"""Synthetic Neuralynx recordings with known sleep states, for the tests and the demo.

Writes a folder of CSC*.ncs files exactly as Cheetah/Pegasus would (read back by
`pipeline.io.ncs.NcsFile` like real data), the implant's channel_map.yaml, and the ground
truth (hypnogram, dead/noisy channels, gains) that the pipeline's results are checked against.

How the signal is made, and why it is fast: everything below ~450 Hz is generated at a low
rate near 1 kHz, chunk by chunk, with filter states carried across chunks so that the signal
is continuous; each channel is then brought to the full rate by linear interpolation, and
white amplifier noise is added from a bank drawn once. Memory depends on the chunk, never
on the duration.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import yaml
from scipy import signal

from pipeline.io.ncs import NCS_RECORD_DTYPE, SAMPLES_PER_RECORD, format_ncs_header

WAKE, NREM, REM = 0, 1, 2
STATE_NAMES = ("wake", "nrem", "rem")
REGIONS = ("cortex", "hippocampus", "thalamus", "emg")
LFP_REGIONS = ("cortex", "hippocampus", "thalamus")

DEFAULT_START = datetime(2026, 1, 5, 7, 0, 0, tzinfo=timezone.utc)  # lights on at 07:00
INPUT_RANGE_UV = 3000
AD_MAX = 32767
AD_BIT_VOLTS = INPUT_RANGE_UV * 1e-6 / AD_MAX
LINE_FREQ = 60.0
LIGHTS_ON_H, LIGHTS_OFF_H = 7, 19

_CHUNK_S = 8.0  # target chunk length; memory is proportional to it
_WARMUP_S = 5.0  # low-rate filters run this long before t=0 so the recording starts in steady state
_BANK_SIZE = 1 << 22  # pre-drawn full-rate noise samples (16 MB of float32)
_SOURCES_PER_BAND = 3  # independent sources per region and band, mixed into the region's channels
_SMOOTH_S = 1.0  # state changes ramp over this long instead of stepping

# Band-limited neural sources per region: (low Hz, high Hz, wake, nrem, rem, movement), amplitudes
# in µV RMS before the animal's region gain. In NREM the amplitude is further scaled by the
# epoch's sleep depth for delta and sigma; "movement" adds in proportion to wake movement.
_BANDS: dict[str, dict[str, tuple[float, float, float, float, float, float]]] = {
    "cortex": {
        "delta": (0.5, 4.0, 45.0, 130.0, 35.0, 0.0),
        "theta": (5.0, 9.0, 20.0, 15.0, 35.0, 10.0),
        "sigma": (10.0, 15.0, 6.0, 8.0, 5.0, 0.0),  # spindle events add on top
        "beta": (15.0, 30.0, 12.0, 8.0, 10.0, 4.0),
        "gamma": (30.0, 80.0, 10.0, 4.0, 8.0, 10.0),
    },
    "hippocampus": {
        "delta": (1.0, 4.0, 35.0, 80.0, 35.0, 0.0),
        "theta": (6.0, 9.0, 40.0, 15.0, 90.0, 40.0),  # REM theta is the strongest REM marker
        "gamma": (30.0, 80.0, 12.0, 5.0, 12.0, 8.0),
        "ripple": (130.0, 230.0, 2.0, 2.0, 2.0, 0.0),  # sharp-wave ripple events add on top
    },
    "thalamus": {
        "delta": (0.5, 4.0, 25.0, 100.0, 25.0, 0.0),
        "theta": (5.0, 9.0, 15.0, 10.0, 25.0, 5.0),
        "sigma": (10.0, 15.0, 8.0, 10.0, 6.0, 0.0),
        "gamma": (30.0, 80.0, 8.0, 3.0, 6.0, 5.0),
    },
    # Neck EMG: tone in wake (much more with movement), less in NREM, atonia in REM.
    "emg": {"emg": (20.0, 400.0, 20.0, 9.0, 4.0, 40.0)},
}
_DEPTH_SCALED = ("delta", "sigma")
# Peak amplitude (µV, before region gain) that an event of relative size 1 adds to a band.
_EVENT_PEAKS = {
    ("cortex", "sigma"): ("spindle", 90.0),
    ("thalamus", "sigma"): ("spindle", 120.0),
    ("hippocampus", "ripple"): ("ripple", 60.0),
}
_EMG_BURST_UV = 80.0  # movement bursts: several times the resting wake tone
_EMG_TWITCH_UV = 12.0  # REM twitches: small against waking EMG
_CONTAMINATION_UV = 20.0  # muscle activity picked up by LFP electrodes during movement
_NOISY_UV = 300.0  # broadband noise of the noisy channel, ~10x a normal channel's LFP
# Paul Kellet's economy pinking filter: 1/f power over three decades.
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


def _streams(seed: int) -> list[np.random.SeedSequence]:
    """Independent random streams of a seed: 0 states, 1 events, 2 the animal's parameters,
    3 low-rate source noise, 4 full-rate noise, 5 file UUIDs.

    Separate streams keep e.g. the hypnogram independent of the channel count and rate.
    """
    return np.random.SeedSequence(seed).spawn(6)


# --------------------------------------------------------------------------------------
# Channel layout
# --------------------------------------------------------------------------------------
def default_layout(n_channels: int) -> dict:
    """{'regions': {'cortex': [...], 'hippocampus': [...], 'thalamus': [...], 'emg': [...]}, 'ignore': [...]}

    Channel names CSC1..CSCn. For 64: cortex CSC1-CSC20, hippocampus CSC21-CSC40, thalamus
    CSC41-CSC60, emg CSC61-CSC62, ignore CSC63-CSC64 (unconnected). For other n (minimum 5):
    emg = last 2 of the used ones (1 if n < 8), ignore = 2 last channels only if n >= 16 else
    none, the rest split as evenly as possible in the order cortex, hippocampus, thalamus
    (each at least 1).
    """
    n = int(n_channels)
    if n < 5:
        raise ValueError(
            f"n_channels={n_channels}: a synthetic recording needs at least 5 channels "
            "(one each for cortex, hippocampus, thalamus and EMG, plus one more)."
        )
    names = [f"CSC{i}" for i in range(1, n + 1)]
    n_ignore = 2 if n >= 16 else 0
    n_emg = 2 if n >= 8 else 1
    n_used = n - n_ignore
    n_lfp = n_used - n_emg
    sizes = [n_lfp // 3 + (1 if k < n_lfp % 3 else 0) for k in range(3)]
    regions: dict[str, list[str]] = {}
    start = 0
    for region, size in zip(LFP_REGIONS, sizes):
        regions[region] = names[start : start + size]
        start += size
    regions["emg"] = names[n_lfp:n_used]
    return {"regions": regions, "ignore": names[n_used:]}


# --------------------------------------------------------------------------------------
# Sleep states
# --------------------------------------------------------------------------------------
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
    rng = np.random.default_rng(_streams(seed)[0])
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


# --------------------------------------------------------------------------------------
# Events and envelopes
# --------------------------------------------------------------------------------------
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


class _Smoothed:
    """A per-epoch value as a continuous function of time, moving-averaged over `window_s`."""

    def __init__(self, per_epoch: np.ndarray, epoch_s: float, window_s: float = _SMOOTH_S):
        pad = int(math.ceil((_WARMUP_S + window_s) / epoch_s)) + 1  # hold the ends beyond the recording
        v = np.concatenate([np.full(pad, per_epoch[0]), per_epoch, np.full(pad, per_epoch[-1])])
        self.edges = (np.arange(v.size + 1) - pad) * epoch_s
        self.cum = np.concatenate([[0.0], np.cumsum(v * epoch_s)])
        self.half = window_s / 2

    def __call__(self, t: np.ndarray) -> np.ndarray:
        hi = np.interp(t + self.half, self.edges, self.cum)
        lo = np.interp(t - self.half, self.edges, self.cum)
        return (hi - lo) / (2 * self.half)


# --------------------------------------------------------------------------------------
# The animal and its low-rate signal
# --------------------------------------------------------------------------------------
def _band_sos(lo: float, hi: float, low_fs: float):
    """Bandpass at the low rate, its upper edge kept below Nyquist; None if nothing is left."""
    hi = min(hi, 0.45 * low_fs)
    if hi <= lo * 1.2:
        return None
    return signal.butter(2, [lo, hi], btype="bandpass", fs=low_fs, output="sos")


def _as_slice(idx: np.ndarray):
    """A slice equal to an ascending run of indices, else the indices themselves."""
    idx = np.asarray(idx)
    if idx.size and np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):
        return slice(int(idx[0]), int(idx[0]) + idx.size)
    return idx


def _small_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for a with a handful of columns, without BLAS.

    OpenBLAS would spread these small products over threads that then spin-wait, taking
    the second core away from the writer threads (measured: twice slower overall).
    """
    out = a[:, :1] * b[0]
    for k in range(1, a.shape[1]):
        out += a[:, k : k + 1] * b[k]
    return out


def _unit_gain(sos=None, ba=None, n: int = 60000) -> float:
    """Factor that makes white noise through this filter unit RMS (from its impulse response)."""
    x = np.zeros(n)
    x[0] = 1.0
    h = signal.sosfilt(sos, x) if sos is not None else signal.lfilter(ba[0], ba[1], x)
    return 1.0 / math.sqrt(float(np.sum(h * h)))


@dataclass
class _BandSource:
    region: str
    band: str
    channels: np.ndarray | slice  # the region's channels
    sos: np.ndarray
    zi: np.ndarray
    norm: float
    mixing: np.ndarray  # (n_channels_in_region, K): correlated within the region
    amp: _Smoothed  # volts RMS as a function of time
    event: str | None
    event_peak_v: float


class _LowRateSignal:
    """Every channel's content below ~450 Hz at the low rate, continuous across blocks."""

    def __init__(self, seed, layout, names, states, move, depth, events, epoch_s, low_fs):
        arng = np.random.default_rng(_streams(seed)[2])  # the animal: fixed by the seed alone
        self.rng = np.random.default_rng(_streams(seed)[3])  # the noise driving the sources
        self.low_fs = low_fs
        self.events = events
        n = len(names)
        index = {name: i for i, name in enumerate(names)}
        self.lfp = np.array([index[c] for r in LFP_REGIONS for c in layout["regions"][r]])

        # Per-animal differences.
        self.region_gain = {r: float(arng.uniform(0.7, 1.4)) for r in REGIONS}
        self.noise_uv = float(arng.uniform(3.0, 8.0))
        pink_uv = float(arng.uniform(25.0, 50.0))
        self.hr_noise_uv = self.noise_uv * arng.uniform(0.8, 1.25, n)
        self.pink_v = pink_uv * 1e-6 * arng.uniform(0.8, 1.2, self.lfp.size)
        self.line_uv = arng.uniform(5.0, 30.0, n)
        line_phase0 = float(arng.uniform(0.0, 2 * np.pi))
        self.line_phase = line_phase0 + 0.3 * arng.standard_normal(n)  # mostly common-mode
        self.line_h3 = 0.15 * self.line_uv * arng.uniform(0.5, 1.5, n)
        self.line_h3_phase = arng.uniform(0.0, 2 * np.pi, n)
        self.art_gain = arng.uniform(0.5, 1.5, self.lfp.size)
        self.contam_gain = arng.uniform(0.3, 1.0, self.lfp.size)
        # Dead and noisy channel: an LFP channel each, preferably from a region that keeps
        # at least one good channel.
        eligible = [c for r in LFP_REGIONS for c in layout["regions"][r] if len(layout["regions"][r]) >= 2]
        if len(eligible) < 2:
            eligible = [c for r in LFP_REGIONS for c in layout["regions"][r]]
        pick = arng.choice(len(eligible), size=2, replace=False)
        self.dead_channel, self.noisy_channel = eligible[int(pick[0])], eligible[int(pick[1])]
        self.dead, self.noisy = index[self.dead_channel], index[self.noisy_channel]
        self.hr_noise_uv[self.dead] = arng.uniform(1.5, 3.0)
        self.hr_noise_uv[self.noisy] = _NOISY_UV
        self.line_uv[self.dead] = 0.0
        self.line_h3[self.dead] = 0.0
        self.ignore = np.array([index[c] for c in layout["ignore"]], dtype=np.int64)

        # Band sources: per-epoch amplitude (state, depth, movement), smoothed in time.
        in_state = [(states == s).astype(float) for s in (WAKE, NREM, REM)]
        self.sources: list[_BandSource] = []
        for region, bands in _BANDS.items():
            chans = np.array([index[c] for c in layout["regions"][region]])
            if chans.size == 0:
                continue
            gain = self.region_gain[region]
            for band, (lo, hi, a_w, a_n, a_r, a_m) in bands.items():
                mixing = np.empty((chans.size, _SOURCES_PER_BAND))
                mixing[:, 0] = arng.uniform(0.7, 1.1, chans.size)
                mixing[:, 1:] = 0.3 * arng.standard_normal((chans.size, _SOURCES_PER_BAND - 1))
                sos = _band_sos(lo, hi, low_fs)
                if sos is None:
                    continue
                nrem_amp = a_n * depth if band in _DEPTH_SCALED else a_n
                per_epoch = (a_w * in_state[0] + nrem_amp * in_state[1] + a_r * in_state[2] + a_m * move)
                event, peak = _EVENT_PEAKS.get((region, band), (None, 0.0))
                if region == "emg":
                    event = "emg"
                self.sources.append(
                    _BandSource(
                        region, band, chans, sos, np.zeros((sos.shape[0], _SOURCES_PER_BAND, 2)),
                        _unit_gain(sos=sos), mixing, _Smoothed(per_epoch * gain * 1e-6, epoch_s),
                        event, peak * gain * 1e-6,
                    )
                )
        self.move = _Smoothed(move * (states == WAKE), epoch_s)
        self.pink_scale = self.pink_v * _unit_gain(ba=(_PINK_B, _PINK_A))
        self.pink_zi = np.zeros((self.lfp.size, 3))
        self.emg_gain_v = self.region_gain["emg"] * 1e-6
        self.lfp_common_gain = np.stack([self.art_gain, self.contam_gain], axis=1)
        a, a3 = self.line_uv * 1e-6, self.line_h3 * 1e-6
        self.line_coef = np.stack(
            [a * np.cos(self.line_phase), a * np.sin(self.line_phase),
             a3 * np.cos(self.line_h3_phase), a3 * np.sin(self.line_h3_phase)], axis=1
        )
        self.n_channels, self.n_lfp = n, self.lfp.size
        # Channel groups are contiguous in the default layout: slices avoid fancy-index copies.
        self.lfp = _as_slice(self.lfp)
        for src in self.sources:
            src.channels = _as_slice(src.channels)

    def block(self, j0: int, n: int) -> np.ndarray:
        """Volts of every channel at low-rate samples j0..j0+n-1, shape (channels, n)."""
        fs = self.low_fs
        t = (j0 + np.arange(n)) / fs
        x = np.zeros((self.n_channels, n))
        move = self.move(t)
        mov_env = self.events["movement"].envelope(j0, n, fs)
        # Uniform noise drives the filters: once band-limited it is Gaussian (central limit
        # theorem), and it costs a quarter of what normal draws cost.
        k = _SOURCES_PER_BAND
        drive = self.rng.random((len(self.sources) * k + self.n_lfp, n))
        drive -= 0.5
        drive *= math.sqrt(12.0)
        muscle = None
        for i, src in enumerate(self.sources):
            s, src.zi = signal.sosfilt(src.sos, drive[i * k : (i + 1) * k], axis=-1, zi=src.zi)
            amp = src.amp(t) * src.norm
            if src.event == "emg":
                amp += src.norm * self.emg_gain_v * (
                    _EMG_BURST_UV * mov_env + _EMG_TWITCH_UV * self.events["twitch"].envelope(j0, n, fs)
                )
                muscle = s[0] * src.norm
            elif src.event is not None:
                amp += src.norm * src.event_peak_v * self.events[src.event].envelope(j0, n, fs)
            s *= amp
            x[src.channels] += _small_matmul(src.mixing, s)
        # Per-channel 1/f background.
        pink, self.pink_zi = signal.lfilter(_PINK_B, _PINK_A, drive[len(self.sources) * k :], axis=-1, zi=self.pink_zi)
        pink *= self.pink_scale[:, None]
        # Movement: slow electrode artefacts and muscle contamination on the LFP channels.
        common = np.empty((2, n))
        common[0] = self.events["artefact"].envelope(j0, n, fs)
        common[1] = 0.0 if muscle is None else _CONTAMINATION_UV * 1e-6 * (0.5 * move + mov_env) * muscle
        pink += _small_matmul(self.lfp_common_gain, common)
        x[self.lfp] += pink
        # Noisy channel: large broadband noise in the LFP band too (the full-rate part is added later).
        x[self.noisy] += _NOISY_UV * 1e-6 * self.rng.standard_normal(n)
        x[self.dead] = 0.0  # a broken wire: only amplifier noise
        x[self.ignore] = 0.0  # unconnected: only noise and line pick-up
        # Line noise on the absolute clock, so phase-continuous across blocks:
        # a*sin(wt+p) = a*cos(p)*sin(wt) + a*sin(p)*cos(wt).
        basis = np.zeros((4, n))
        for h, f in enumerate((LINE_FREQ, 3 * LINE_FREQ)):
            if f < 0.45 * fs:
                wt = 2 * np.pi * np.mod(f * (j0 + np.arange(n)) / fs, 1.0)
                basis[2 * h], basis[2 * h + 1] = np.sin(wt), np.cos(wt)
        x += _small_matmul(self.line_coef, basis)
        return x


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------
def _format_rate(fs: float) -> str:
    return str(int(fs)) if float(fs).is_integer() else repr(float(fs))


def _header_fields(i: int, fs: float, start: datetime, end: datetime, file_uuid: str, session_uuid: str) -> dict:
    """Header keys in the order Cheetah/Pegasus write them (see the real LAHCu1.ncs)."""
    folder = start.strftime("%Y-%m-%d_%H-%M-%S")
    return {
        "FileType": "NCS",
        "FileVersion": "3.4",
        "FileUUID": file_uuid,
        "SessionUUID": session_uuid,
        "ProbeName": "",
        "OriginalFileName": f'"C:\\CheetahData\\{folder}\\CSC{i}.ncs"',
        "TimeCreated": start.strftime("%Y/%m/%d %H:%M:%S"),
        "TimeClosed": end.strftime("%Y/%m/%d %H:%M:%S"),
        "RecordSize": NCS_RECORD_DTYPE.itemsize,
        "ApplicationName": 'Cheetah "6.4.2 "',
        "AcquisitionSystem": "AcqSystem1 DigitalLynxSX",
        "ReferenceChannel": '"Source 01 Reference 1"',
        "SamplingFrequency": _format_rate(fs),
        "ADMaxValue": AD_MAX,
        "ADBitVolts": f"{AD_BIT_VOLTS:.24f}",  # as many digits as Cheetah writes; round-trips exactly
        "AcqEntName": f"CSC{i}",
        "NumADChannels": 1,
        "ADChannel": i - 1,
        "InputRange": INPUT_RANGE_UV,
        "InputInverted": True,
        "DSPLowCutFilterEnabled": True,
        "DspLowCutFrequency": 0.1,
        "DspLowCutNumTaps": 0,
        "DspLowCutFilterType": "DCO",
        "DSPHighCutFilterEnabled": True,
        "DspHighCutFrequency": min(8000, int(round(0.45 * fs))),
        "DspHighCutNumTaps": 256,
        "DspHighCutFilterType": "FIR",
        "DspDelayCompensation": "Enabled",
        "DspFilterDelay_µs": int(round(127.5 / fs * 1e6)),  # half the 256-tap FIR
    }


class _ChannelWriter:
    """Brings channels from the low rate to int16 records and appends them to their files.

    One instance per worker thread: it owns its scratch buffers, so workers share nothing
    writable. numpy releases the GIL in the large array operations and in file writes.
    """

    def __init__(self, chunk_samples: int, R: int, records_per_chunk: int):
        self.R = R
        self.y = np.empty(chunk_samples, dtype=np.float32)
        self.tmp = np.empty(chunk_samples, dtype=np.float32)
        self.ends = np.empty((chunk_samples // R + 1, 2), dtype=np.float32)
        self.recs = np.zeros(records_per_chunk, dtype=NCS_RECORD_DTYPE)
        w = np.arange(R, dtype=np.float32) / np.float32(R)
        self.weights = np.stack([1 - w, w])  # (2, R): linear interpolation as a tiny matrix product

    def write(self, channels, arr, n_samples, timestamps, keep, files, bank, offsets, noise_scale, bound, fs_int):
        n_rec = n_samples // SAMPLES_PER_RECORD
        recs = self.recs[:n_rec]
        recs["timestamp"] = timestamps
        recs["sampling_rate"] = fs_int
        recs["n_valid"] = SAMPLES_PER_RECORD
        n_low = arr.shape[1] - 1
        y2 = self.y[: n_low * self.R].reshape(n_low, self.R)
        ends = self.ends[:n_low]
        y = self.y[:n_samples]
        tmp = self.tmp[:n_samples]
        for c in channels:
            # Sample m lies between low-rate samples m//R and m//R+1; (n_low, 2) @ (2, R) fills
            # all of them at once, several times faster than broadcasting over a short axis.
            ends[:, 0] = arr[c, :-1]
            ends[:, 1] = arr[c, 1:]
            np.matmul(ends, self.weights, out=y2)
            if noise_scale[c] > 0:
                np.multiply(bank[offsets[c] : offsets[c] + n_samples], noise_scale[c], out=tmp)
                y += tmp
            np.rint(y, out=y)
            if bound[c] > AD_MAX:  # only a channel that can exceed the input range needs clipping
                np.clip(y, -AD_MAX - 1, AD_MAX, out=y)
            recs["channel"] = c
            recs["samples"] = y.reshape(n_rec, SAMPLES_PER_RECORD)
            out = recs if keep is None else recs[keep]
            files[c].write(out.view(np.uint8))


def write_synthetic_recording(
    out_dir,
    *,
    duration_s: float,
    n_channels: int = 64,
    sampling_rate: float = 32000.0,
    seed: int = 0,
    start_time: datetime | None = None,
    gap: tuple[float, float] | None = None,
    epoch_s: float = 4.0,
    progress: Callable[[float, float], None] | None = None,
) -> dict:
    """Write a synthetic Neuralynx recording folder with its ground truth; return a summary.

    out_dir gets CSC1.ncs..CSCn.ncs, channel_map.yaml (= default_layout(n)), and
    ground_truth/hypnogram.tsv and ground_truth/truth.yaml. Every file is written under
    name + '.partial' and renamed only when all are complete; on an error or interrupt the
    partial files are removed. The same arguments give the same files byte for byte (with
    the same numpy/scipy on the same kind of machine: floating-point kernels may differ).

    duration_s is rounded up to whole 512-sample records. gap=(start_s, length_s) leaves out
    the records that start in that stretch (the timestamps jump) on all channels; hypnogram
    epochs of which at least half is missing are labelled `gap`. progress(done_s, total_s)
    is called after every chunk. start_time defaults to 2026-01-05 07:00 UTC (lights on at
    07:00, off at 19:00 on start_time's clock); a naive datetime is taken as UTC.

    The summary holds the paths (out_dir, ncs_files, channel_map, hypnogram, truth),
    n_channels, sampling_rate, duration_s (as written), n_records (per channel), n_epochs,
    state_fractions (of the epochs outside a gap), dead_channel, noisy_channel and the
    seconds the call took.
    """
    t_begin = time.perf_counter()
    out_dir = Path(out_dir)
    fs = float(sampling_rate)
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"duration_s={duration_s!r}: must be a positive number of seconds.")
    if not (fs > 0 and math.isfinite(fs)):
        raise ValueError(f"sampling_rate={sampling_rate!r}: must be a positive number of Hz.")
    if not (epoch_s > 0):
        raise ValueError(f"epoch_s={epoch_s!r}: must be a positive number of seconds.")
    layout = default_layout(n_channels)
    if out_dir.is_dir():
        existing = sorted(p.name for p in out_dir.iterdir() if p.suffix.lower() == ".ncs")
        if existing:
            raise ValueError(
                f"{out_dir} already contains .ncs files ({', '.join(existing[:3])}"
                f"{', ...' if len(existing) > 3 else ''}): refusing to write a synthetic recording "
                "over or beside another one. Choose an empty or new folder."
            )
    start = DEFAULT_START if start_time is None else start_time
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    t0_us = (start - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)

    # Geometry: records, chunks (a whole number of records and of low-rate samples), epochs.
    n_records = int(math.ceil(duration_s * fs / SAMPLES_PER_RECORD - 1e-9))
    total_s = n_records * SAMPLES_PER_RECORD / fs
    R = max(1, int(round(fs / 1000.0)))
    low_fs = fs / R
    rec_step = R // math.gcd(SAMPLES_PER_RECORD, R)
    recs_per_chunk = rec_step * max(1, int(round(_CHUNK_S * fs / SAMPLES_PER_RECORD / rec_step)))
    chunk_samples = recs_per_chunk * SAMPLES_PER_RECORD
    n_epochs = int(math.ceil(duration_s / epoch_s - 1e-9))
    n_epochs_sim = max(n_epochs, int(math.ceil(total_s / epoch_s - 1e-9)))
    fs_int = int(round(fs))

    drop = None
    if gap is not None:
        g_start, g_len = float(gap[0]), float(gap[1])
        k0 = int(math.ceil(g_start * fs / SAMPLES_PER_RECORD - 1e-9))
        k1 = int(math.ceil((g_start + g_len) * fs / SAMPLES_PER_RECORD - 1e-9))
        if not (g_len > 0 and 0 < k0 < k1 < n_records):
            raise ValueError(
                f"gap={gap!r}: the gap must have a positive length and lie inside the "
                f"{total_s:g}-s recording, with at least one record before and after it."
            )
        drop = (k0, k1)

    # States, events and the animal: cheap, for the whole recording at once.
    states, move, depth = _hypnogram(seed, n_epochs_sim, epoch_s, start, n_scored=n_epochs)
    events = _draw_events(np.random.default_rng(_streams(seed)[1]), states, move, epoch_s)
    names = [f"CSC{i}" for i in range(1, n_channels + 1)]
    gen = _LowRateSignal(seed, layout, names, states, move, depth, events, epoch_s, low_fs)
    hrng = np.random.default_rng(_streams(seed)[4])
    bank_size = max(_BANK_SIZE, 2 * chunk_samples)
    bank = hrng.standard_normal(bank_size, dtype=np.float32)
    bank_absmax = float(np.abs(bank).max())
    noise_scale = (gen.hr_noise_uv * 1e-6 / AD_BIT_VOLTS).astype(np.float32)
    urng = np.random.default_rng(_streams(seed)[5])
    session_uuid = str(uuid.UUID(bytes=urng.bytes(16), version=4))
    file_uuids = [str(uuid.UUID(bytes=urng.bytes(16), version=4)) for _ in names]

    # Output paths, all written as .partial first.
    truth_dir = out_dir / "ground_truth"
    ncs_paths = [out_dir / f"{name}.ncs" for name in names]
    map_path = out_dir / "channel_map.yaml"
    hyp_path = truth_dir / "hypnogram.tsv"
    truth_path = truth_dir / "truth.yaml"
    finals = [hyp_path, truth_path, *ncs_paths, map_path]  # renamed in this order
    partial = {p: p.with_name(p.name + ".partial") for p in finals}
    truth_dir.mkdir(parents=True, exist_ok=True)

    end_time = start + timedelta(seconds=total_s)
    files = []
    n_threads = max(1, min(2, os.cpu_count() or 1))
    try:
        for i, path in enumerate(ncs_paths, start=1):
            f = open(partial[path], "wb")
            files.append(f)
            f.write(format_ncs_header(_header_fields(i, fs, start, end_time, file_uuids[i - 1], session_uuid)))
        writers = [_ChannelWriter(chunk_samples, R, recs_per_chunk) for _ in range(n_threads)]
        groups = [list(range(w, n_channels, n_threads)) for w in range(n_threads)]
        scale = np.float32(-1.0 / AD_BIT_VOLTS)  # InputInverted: the file holds the negated signal

        # Warm the low-rate filters up before t=0; keep the t=0 sample as the first "previous".
        n_warm = int(round(_WARMUP_S * low_fs))
        prev = (gen.block(-n_warm + 1, n_warm)[:, -1] * scale).astype(np.float32)
        j_next = 1
        chunks = [(k, min(recs_per_chunk, n_records - k)) for k in range(0, n_records, recs_per_chunk)]

        def low_block(n_rec):
            nonlocal j_next
            n_low = -(-n_rec * SAMPLES_PER_RECORD // R)  # the last chunk may end between low-rate samples
            x = gen.block(j_next, n_low)
            j_next += n_low
            return x

        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            x = low_block(chunks[0][1])
            for ci, (k_start, n_rec) in enumerate(chunks):
                n_samp = n_rec * SAMPLES_PER_RECORD
                arr = np.empty((n_channels, x.shape[1] + 1), dtype=np.float32)
                arr[:, 0] = prev
                np.multiply(x, scale, out=arr[:, 1:], casting="same_kind")
                prev = arr[:, -1].copy()
                offsets = hrng.integers(0, bank_size - n_samp, size=n_channels)
                bound = np.abs(arr).max(axis=1) + bank_absmax * noise_scale
                k = np.arange(k_start, k_start + n_rec, dtype=np.int64)
                timestamps = t0_us + np.rint(k * (SAMPLES_PER_RECORD * 1e6 / fs)).astype(np.int64)
                keep = None
                if drop is not None and k_start < drop[1] and k_start + n_rec > drop[0]:
                    keep = (k < drop[0]) | (k >= drop[1])
                futures = [
                    pool.submit(w.write, g, arr, n_samp, timestamps, keep, files, bank, offsets, noise_scale, bound, fs_int)
                    for w, g in zip(writers, groups)
                ]
                # The next block's low-rate signal is computed while the workers write this one.
                if ci + 1 < len(chunks):
                    x = low_block(chunks[ci + 1][1])
                for fut in futures:
                    fut.result()
                if progress is not None:
                    progress(min((k_start + n_rec) * SAMPLES_PER_RECORD / fs, total_s), total_s)
        for f in files:
            f.close()

        # Ground truth.
        labels = [STATE_NAMES[s] for s in states[:n_epochs]]
        onsets = np.arange(n_epochs) * epoch_s
        durations = np.minimum(epoch_s, duration_s - onsets)
        gap_info = None
        if drop is not None:
            miss0, miss1 = drop[0] * SAMPLES_PER_RECORD / fs, drop[1] * SAMPLES_PER_RECORD / fs
            missing = np.clip(np.minimum(onsets + durations, miss1) - np.maximum(onsets, miss0), 0, None)
            for e in np.flatnonzero(missing >= durations / 2):
                labels[e] = "gap"
            gap_info = {
                "start_s": float(gap[0]),
                "length_s": float(gap[1]),
                "missing_from_s": miss0,
                "missing_to_s": miss1,
                "records_dropped": drop[1] - drop[0],
            }
        with open(partial[hyp_path], "w", encoding="utf-8", newline="\n") as f:
            f.write("onset_s\tduration_s\tstate\n")
            for on, du, lab in zip(onsets, durations, labels):
                f.write(f"{on:.3f}\t{du:.3f}\t{lab}\n")
        scored = [lab for lab in labels if lab != "gap"]
        fractions = {s: (scored.count(s) / len(scored) if scored else 0.0) for s in STATE_NAMES}
        truth = {
            "seed": int(seed),
            "start_time": start.isoformat(),
            "sampling_rate": fs,
            "duration_s": total_s,
            "epoch_s": float(epoch_s),
            "n_epochs": n_epochs,
            "state_fractions": {k: round(v, 4) for k, v in fractions.items()},
            "dead_channel": gen.dead_channel,
            "noisy_channel": gen.noisy_channel,
            "line_freq": LINE_FREQ,
            "line_amplitude_uV": {n: round(float(a), 2) for n, a in zip(names, gen.line_uv)},
            "region_gains": {r: round(g, 4) for r, g in gen.region_gain.items()},
            "noise_uV": round(gen.noise_uv, 3),
            "gap": gap_info,
            "input_range_uV": INPUT_RANGE_UV,
            "ad_bit_volts": AD_BIT_VOLTS,
            "input_inverted": True,
        }
        with open(partial[truth_path], "w", encoding="utf-8") as f:
            yaml.safe_dump(truth, f, sort_keys=False)
        with open(partial[map_path], "w", encoding="utf-8") as f:
            yaml.safe_dump(layout, f, sort_keys=False, default_flow_style=None, width=1000)
        for p in finals:
            os.replace(partial[p], p)
    except BaseException:
        for f in files:
            f.close()
        for p in partial.values():
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        raise

    seconds = time.perf_counter() - t_begin
    return {
        "out_dir": str(out_dir),
        "ncs_files": [str(p) for p in ncs_paths],
        "channel_map": str(map_path),
        "hypnogram": str(hyp_path),
        "truth": str(truth_path),
        "n_channels": n_channels,
        "sampling_rate": fs,
        "duration_s": total_s,
        "n_records": n_records - (drop[1] - drop[0] if drop else 0),
        "n_epochs": n_epochs,
        "state_fractions": fractions,
        "dead_channel": gen.dead_channel,
        "noisy_channel": gen.noisy_channel,
        "seconds": seconds,
    }
