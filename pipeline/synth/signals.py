"""The synthetic animal's neural signal below ~450 Hz, made at a low rate near 1 kHz.

Band-limited sources per region (delta to ripples, and neck EMG) whose amplitudes follow
the hypnogram, the events and an epoch-to-epoch variation, a heartbeat in the EMG, a 1/f
background per channel, movement artefacts, line noise, and a dead and a noisy channel.
The states overlap as in real mice (bench/sleep.py measures how much): NREM has some theta,
REM some delta, quiet wake has theta, and the animal's gains and noise differ per seed. It is generated block by block with filter states
carried across blocks, so the signal is continuous and memory depends on the block, never
on the duration; the .ncs writer brings it to the full rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal

from pipeline.synth.hypnogram import NREM, REM, WAKE
from pipeline.synth.layout import LFP_REGIONS, REGIONS
from pipeline.synth.random_streams import random_stream

LINE_FREQ = 60.0

_WARMUP_S = 5.0  # low-rate filters run this long before t=0 so the recording starts in steady state
_SOURCES_PER_BAND = 3  # independent sources per region and band, mixed into the region's channels
_SMOOTH_S = 1.0  # state changes ramp over this long instead of stepping

# Band-limited neural sources per region: (low Hz, high Hz, wake, nrem, rem, movement), amplitudes
# in µV RMS before the animal's region gain. In NREM the amplitude is further scaled by the
# epoch's sleep depth for delta and sigma; "movement" adds in proportion to wake movement.
# The contrasts are those of real mice, not of a textbook: REM theta/delta separates from
# NREM with d' about 2.5-3 (not 5-8), quiet wake has theta as REM does, and neck EMG tone
# separates wake from NREM with d' about 3.
_BANDS: dict[str, dict[str, tuple[float, float, float, float, float, float]]] = {
    "cortex": {
        "delta": (0.5, 4.0, 50.0, 110.0, 50.0, 0.0),
        "theta": (5.0, 9.0, 25.0, 20.0, 32.0, 10.0),
        "sigma": (10.0, 15.0, 6.0, 8.0, 5.0, 0.0),  # spindle events add on top
        "beta": (15.0, 30.0, 12.0, 8.0, 10.0, 4.0),
        "gamma": (30.0, 80.0, 10.0, 5.0, 8.0, 10.0),
    },
    "hippocampus": {
        "delta": (1.0, 4.0, 50.0, 80.0, 45.0, 0.0),
        "theta": (6.0, 9.0, 45.0, 27.0, 70.0, 30.0),  # REM theta: the REM marker, but not a clean one
        "gamma": (30.0, 80.0, 12.0, 6.0, 12.0, 8.0),
        "ripple": (130.0, 230.0, 2.0, 2.0, 2.0, 0.0),  # sharp-wave ripple events add on top
    },
    "thalamus": {
        "delta": (0.5, 4.0, 30.0, 90.0, 30.0, 0.0),
        "theta": (5.0, 9.0, 18.0, 12.0, 24.0, 5.0),
        "sigma": (10.0, 15.0, 8.0, 10.0, 6.0, 0.0),
        "gamma": (30.0, 80.0, 8.0, 4.0, 6.0, 5.0),
    },
    # Neck EMG: tone in wake (much more with movement), less in NREM, atonia in REM.
    "emg": {"emg": (20.0, 400.0, 18.0, 7.0, 3.5, 30.0)},
}
# Epoch-to-epoch variation of every band's amplitude (log-normal, sigma of the natural log),
# correlated over _VARIATION_TAU_S: shared by a band across regions, plus a part per region.
_VARIATION_SIGMA = {"wake": 0.3, "nrem": 0.3, "rem": 0.3}
_VARIATION_TAU_S = 8.0
_EMG_VARIATION_SIGMA = 0.35
# Heartbeat in the neck EMG: QRS-like biphasic spikes at 8-10 Hz (480-600 bpm), slower in sleep.
_HEART_RATE_HZ = (8.0, 10.0)  # the animal's waking rate is drawn from this range
_HEART_RATE_FACTOR = {WAKE: 1.0, NREM: 0.88, REM: 0.93}
_QRS_SIGMA_S = 0.003  # width of the spike: its power lies at 20-100 Hz, inside the EMG band
_QRS_PEAK_UV = (15.0, 30.0)  # peak, before the EMG gain: like the NREM tone's peaks (RMS 7 µV)
_DEPTH_SCALED = ("delta", "sigma")
# Peak amplitude (µV, before region gain) that an event of relative size 1 adds to a band.
_EVENT_PEAKS = {
    ("cortex", "sigma"): ("spindle", 90.0),
    ("thalamus", "sigma"): ("spindle", 120.0),
    ("hippocampus", "ripple"): ("ripple", 60.0),
}
_EMG_BURST_UV = 80.0  # movement bursts: several times the resting wake tone
_EMG_TWITCH_UV = 12.0  # REM twitches: small against waking EMG
_TONE_CONTAMINATION = 0.3  # fraction of the neck EMG's amplitude seen on every LFP channel
_CONTAMINATION_UV = 20.0  # muscle activity picked up by LFP electrodes during movement
_NOISY_UV = 300.0  # broadband noise of the noisy channel, ~10x a normal channel's LFP
# Paul Kellet's economy pinking filter: 1/f power over three decades.
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


def _ar1(rng: np.random.Generator, n: int, epoch_s: float, tau_s: float) -> np.ndarray:
    """Unit-variance AR(1) series over n epochs with time constant tau_s."""
    a = math.exp(-epoch_s / tau_s)
    z = rng.standard_normal(n) * math.sqrt(1 - a * a)
    z[0] /= math.sqrt(1 - a * a)
    return signal.lfilter([1.0], [1.0, -a], z)


def _heartbeat_times(rng: np.random.Generator, states: np.ndarray, epoch_s: float) -> np.ndarray:
    """Beat times (s) of the whole recording: a rate per epoch from the state, slowly wandering."""
    n = len(states)
    base = rng.uniform(*_HEART_RATE_HZ)
    factor = np.select([states == WAKE, states == NREM, states == REM], [_HEART_RATE_FACTOR[s] for s in (WAKE, NREM, REM)])
    rate = base * factor * np.exp(0.03 * _ar1(rng, n, epoch_s, 60.0))
    edges = np.arange(n + 1) * epoch_s
    phase = np.concatenate([[0.0], np.cumsum(rate * epoch_s)])
    k = np.arange(1, int(phase[-1]))
    jitter = 0.03 * rng.standard_normal(k.size)  # beat-to-beat variability, in beats
    return np.interp(k + jitter, phase, edges)


class _Heartbeat:
    """QRS-like spikes at given beat times, rendered block by block at the low rate."""

    def __init__(self, times: np.ndarray, peak_v: float, low_fs: float):
        self.times = np.sort(times)
        self.peak_v = peak_v
        # At 250 Hz a 3-ms spike falls between samples: widen it to a sample, as the
        # anti-aliasing filter of a low-rate recorder would, so that every beat looks alike.
        self.sigma_s = max(_QRS_SIGMA_S, 1.0 / low_fs)
        half = int(math.ceil(5 * self.sigma_s * low_fs))
        self.offsets = np.arange(-half, half + 1)
        self.low_fs = low_fs

    def block(self, j0: int, n: int) -> np.ndarray:
        fs = self.low_fs
        half = self.offsets[-1]
        lo = np.searchsorted(self.times, (j0 - half) / fs)
        hi = np.searchsorted(self.times, (j0 + n + half) / fs)
        out = np.zeros(n)
        if hi <= lo:
            return out
        tb = self.times[lo:hi]
        idx = np.rint(tb * fs).astype(np.int64)[:, None] + self.offsets  # absolute low-rate samples
        u = (idx / fs - tb[:, None]) / self.sigma_s
        wave = -u * np.exp(0.5 - 0.5 * u * u)  # biphasic, peak 1
        rel = idx - j0
        keep = (rel >= 0) & (rel < n)
        np.add.at(out, rel[keep], wave[keep])
        out *= self.peak_v
        return out


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

    def __init__(self, seed, layout, names, states, move, depth, events, epoch_s, low_fs, *, faults=True):
        arng = random_stream(seed, "animal")  # fixed by the seed alone
        self.rng = random_stream(seed, "source_noise")  # the noise driving the sources
        self.low_fs = low_fs
        self.events = events
        n = len(names)
        index = {name: i for i, name in enumerate(names)}
        self.lfp = np.array([index[c] for r in LFP_REGIONS for c in layout["regions"][r]])

        # Per-animal differences.
        # Gains of x0.5-2 (log-uniform) per region: electrode placement, impedance, EMG wire depth.
        self.region_gain = {r: float(2.0 ** arng.uniform(-1.0, 1.0)) for r in REGIONS}
        self.noise_uv = float(arng.uniform(2.0, 10.0))
        pink_uv = float(arng.uniform(15.0, 50.0))
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
        # (faults=False: every channel good, as in a few-channel EEG/EMG file.)
        self.dead_channel = self.noisy_channel = None
        self.dead = self.noisy = np.array([], dtype=np.int64)
        if faults:
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

        # Band sources: per-epoch amplitude (state, depth, movement, variation), smoothed in time.
        in_state = [(states == s).astype(float) for s in (WAKE, NREM, REM)]
        vrng = random_stream(seed, "epoch_variation")
        n_ep = len(states)
        sigma = np.select([states == WAKE, states == NREM, states == REM],
                          [_VARIATION_SIGMA["wake"], _VARIATION_SIGMA["nrem"], _VARIATION_SIGMA["rem"]])
        shared = {b: _ar1(vrng, n_ep, epoch_s, _VARIATION_TAU_S) for b in
                  ("delta", "theta", "sigma", "beta", "gamma", "ripple", "emg")}
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
                own = _ar1(vrng, n_ep, epoch_s, _VARIATION_TAU_S)
                if region == "emg":
                    per_epoch = per_epoch * np.exp(_EMG_VARIATION_SIGMA * (0.6 * shared[band] + 0.8 * own))
                else:
                    per_epoch = per_epoch * np.exp(sigma * (0.8 * shared[band] + 0.6 * own))
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
        hrng = random_stream(seed, "heartbeat")
        self.heart = _Heartbeat(_heartbeat_times(hrng, states, epoch_s),
                                hrng.uniform(*_QRS_PEAK_UV) * self.region_gain["emg"] * 1e-6, low_fs)
        self.emg = np.array([index[c] for c in layout["regions"]["emg"]], dtype=np.int64)
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
                tone_v = amp / (src.norm * self.region_gain["emg"])  # the muscles' own activity, volts RMS
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
        # Neck and jaw muscles reach every electrode in proportion to their tone (SleepScoreMaster
        # estimates EMG from the LFP this way); movement adds more.
        common[1] = 0.0 if muscle is None else (
            _TONE_CONTAMINATION * tone_v + _CONTAMINATION_UV * 1e-6 * (0.5 * move + mov_env)) * muscle
        pink += _small_matmul(self.lfp_common_gain, common)
        x[self.lfp] += pink
        if self.emg.size:  # the heart's QRS spikes, seen by every EMG wire alike
            x[self.emg] += self.heart.block(j0, n)
        # Noisy channel: large broadband noise in the LFP band too (the full-rate part is added later).
        if self.noisy_channel is not None:
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
