"""Spectrogram stage: LFP segment -> one multitaper spectrogram per brain region.

Each region's signal is the mean of its good channels (channels QC flagged as dead or
noisy are left out), at each moment of those that have samples then (a channel that
ended early, or skipped records, is left out there: BAD_NO_SAMPLES); channels in no
region are in the LFP but in no spectrogram, and an LFP without any channel in a brain
region stops here with a sentence on how to map one.
The result is saved as .npz: `freqs`, `onsets_s` (epoch onsets from the recording
start), `regions`, `power` (regions x epochs x freqs, V^2/Hz), `valid` (epochs not
touching a recording gap, nor a stretch where a region has no channel with samples), `roles` (JSON: the region of each role in sleep scoring) and
`lfp_emg`: muscle tone estimated from the LFP itself (pipeline.dsp.lfp_emg), from the
LFP where its rate allows, else the one the convert stage made from the raw data.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from pipeline.channels import ROLES, resolve_roles
from pipeline.dsp.lfp_emg import (LFP_EMG_BAND, LFP_EMG_MIN_WIDTH, PASSBAND_FRACTION,  # noqa: F401 (read here too)
                                  lfp_emg)
from pipeline.dsp.spectrogram import epoch_spectrogram
from pipeline.errors import DataError, RawDataError
from pipeline.io.atomic import atomic_path
from pipeline.io.lfp import CHANNEL_GAP_ANNOTATION, GAP_ANNOTATION, read_lfp
from pipeline.io.recording_info import RecordingInfo

log = logging.getLogger(__name__)


def channel_gaps(raw) -> dict[str, list[tuple[int, int]]]:
    """Channel -> sample spans [a, b) of `raw` where it has no samples (BAD_NO_SAMPLES)."""
    sfreq = raw.info["sfreq"]
    out: dict[str, list[tuple[int, int]]] = {}
    for a in raw.annotations:
        if a["description"] != CHANNEL_GAP_ANNOTATION:
            continue
        onset = a["onset"] - (raw.first_time if raw.annotations.orig_time is None else 0)
        lo = max(int(np.floor(onset * sfreq + 1e-6)) - raw.first_samp, 0)
        hi = min(int(np.ceil((onset + a["duration"]) * sfreq - 1e-6)) - raw.first_samp, raw.n_times)
        if hi > lo:
            for ch in a["ch_names"]:
                out.setdefault(ch, []).append((lo, hi))
    return out


def region_signals(raw, info: RecordingInfo, *, chunk_s: float = 300.0) -> tuple[dict[str, np.ndarray],
                                                                                  dict[str, np.ndarray]]:
    """Mean LFP of the good channels of each region, in volts, and where each region
    had no channel with samples (a boolean per sample).

    At each sample the mean takes the channels that have samples there; where none has,
    it takes them all (their filled values: the epochs there are not valid anyway).
    Read in chunks of `chunk_s` seconds, so a one-hour, 64-channel segment never sits
    in memory whole (it would be 1.8 GB as MNE's float64).
    """
    regions: dict[str, list[int]] = {}
    region_of = {c.name: c.region for c in info.channels}
    for i, name in enumerate(raw.ch_names):
        if name in raw.info["bads"] or not region_of.get(name):
            continue
        regions.setdefault(region_of[name], []).append(i)
    n = raw.n_times
    gaps = channel_gaps(raw)
    has = {}  # channel index -> samples where it has data, for the channels with a gap
    for i, name in enumerate(raw.ch_names):
        if name in gaps:
            has[i] = np.ones(n, dtype=bool)
            for lo, hi in gaps[name]:
                has[i][lo:hi] = False
    out = {r: np.empty(n, dtype=np.float64) for r in regions}
    empty = {r: np.zeros(n, dtype=bool) for r in regions}
    step = max(1, int(chunk_s * raw.info["sfreq"]))
    for start in range(0, n, step):
        stop = min(n, start + step)
        for r, idx in regions.items():
            x = raw.get_data(picks=idx, start=start, stop=stop)
            if not any(i in has for i in idx):
                out[r][start:stop] = x.mean(axis=0)
                continue
            w = np.stack([has[i][start:stop] if i in has else np.ones(stop - start, dtype=bool) for i in idx])
            count = w.sum(axis=0)
            none = count == 0
            out[r][start:stop] = np.where(none, x.mean(axis=0), (x * w).sum(axis=0) / np.maximum(count, 1))
            empty[r][start:stop] = none
    return out, empty


def epochs_touching(mask: np.ndarray, n_epochs: int, epoch_samples: int) -> np.ndarray:
    """Per epoch: whether any of its samples is True in `mask`."""
    m = mask[: n_epochs * epoch_samples]
    m = np.concatenate([m, np.zeros(n_epochs * epoch_samples - len(m), dtype=bool)])
    return m.reshape(n_epochs, epoch_samples).any(axis=1)


def epoch_validity(raw, onsets_s: np.ndarray, epoch_s: float) -> np.ndarray:
    """False for epochs that overlap a BAD_ACQ_SKIP annotation."""
    valid = np.ones(len(onsets_s), dtype=bool)
    for a in raw.annotations:
        if a["description"] != GAP_ANNOTATION:
            continue
        onset = a["onset"] - (raw.first_time if raw.annotations.orig_time is None else 0)
        end = onset + a["duration"]
        valid &= ~((onsets_s < end) & (onsets_s + epoch_s > onset))
    return valid


def recording_roles(info: RecordingInfo) -> dict[str, str | None]:
    """The region of each role in sleep scoring (the channel map's roles, resolved)."""
    cmap = info.channel_map or {}
    return resolve_roles(cmap.get("roles") or ROLES, list(cmap.get("regions") or {}) or
                         sorted({c.region for c in info.channels if c.region}))


def brain_region_channels(info: RecordingInfo) -> dict[str, list[str]]:
    """The good converted channels of each brain region (every region but the one with
    role `emg`): what the muscle tone from the LFP correlates, here and in conversion."""
    emg = recording_roles(info).get("emg")
    out: dict[str, list[str]] = {}
    for c in info.converted_channels:
        if c.region and c.region != emg and not c.bad:
            out.setdefault(c.region, []).append(c.name)
    return dict(sorted(out.items()))


def converted_lfp_emg(path: str | Path, onsets_s: np.ndarray) -> np.ndarray | None:
    """The estimate the convert stage made of this segment (pipeline.convert), for the
    epochs starting at `onsets_s`, or None if it made none or its epochs differ."""
    with np.load(path) as z:
        if "lfp_emg" not in z:
            return None
        est, their_onsets = z["lfp_emg"], z["onsets_s"]
    n = len(onsets_s)
    if len(est) < n or not np.allclose(their_onsets[:n], onsets_s, rtol=0, atol=1e-6):
        log.warning("%s: its epochs are not this spectrogram's (sleep.epoch_s changed?); not used", path)
        return None
    return est[:n]


def channel_spectrograms(raw, info: RecordingInfo, epoch_s: float, *, time_bandwidth: float,
                         fmax: float) -> tuple[list[str], np.ndarray]:
    """Spectrograms of every good channel of a region, one at a time (memory: one channel)."""
    region_of = {c.name: c.region for c in info.channels}
    names = [n for n in raw.ch_names if region_of.get(n) and n not in raw.info["bads"]]
    powers = []
    for name in names:
        _, p = epoch_spectrogram(raw.get_data(picks=[name])[0], raw.info["sfreq"], epoch_s,
                                 time_bandwidth=time_bandwidth, fmax=fmax)
        powers.append(p.astype(np.float32))
    return names, np.stack(powers) if powers else np.zeros((0, 0, 0), dtype=np.float32)


def compute_spectrogram(info: RecordingInfo, lfp_path: str | Path, out_npz: str | Path, *, epoch_s: float,
                        time_bandwidth: float, fmax: float, per_channel: bool = False,
                        lfp_emg_npz: str | Path | None = None) -> dict:
    """One multitaper spectrogram per region, one window per epoch of `epoch_s` seconds
    (sleep.epoch_s), with `time_bandwidth` (NW) and frequencies up to `fmax` Hz; with
    `per_channel` (spectrogram.per_channel), also one per good channel of a region
    (`channel_names`, `channel_power` in the .npz). `lfp_emg_npz`: the segment's muscle
    tone estimated during conversion (an LFP rate too low for it here), used when the
    LFP cannot give it."""
    raw = read_lfp(lfp_path, preload=False)
    region_of = {c.name: c.region for c in info.channels}
    roles = recording_roles(info)
    if not any(region_of.get(name) not in (None, roles.get("emg")) for name in raw.ch_names):
        raise RawDataError(
            f"{lfp_path}: no channel is mapped to a brain region, so there is nothing to average into "
            "spectrograms; name the regions' channels in a channel_map.yaml in the raw data folder "
            "(e.g. regions: {cortex: CSC1-CSC4}) or in channel_maps.default of config.yaml, then process the "
            "recording again (tick rerun)."
        )
    signals, empty = region_signals(raw, info)
    if not signals:
        raise DataError(f"{lfp_path}: no good channel in any region (QC flagged them all as dead or noisy); "
                        "each channel's qc.flag in recording.json says why.")
    regions = sorted(signals)
    rate = raw.info["sfreq"]
    if fmax > rate / 2:
        log.warning("spectrogram.fmax (%g Hz) is above half the LFP rate (%g Hz): the spectrograms stop at %g Hz",
                    fmax, rate, rate / 2)
        fmax = rate / 2
    brain = [r for r in regions if r != roles.get("emg")]
    emg_estimate = lfp_emg([signals[r] for r in brain], rate, epoch_s)
    powers, freqs = [], None
    for r in regions:
        freqs, p = epoch_spectrogram(signals[r], raw.info["sfreq"], epoch_s,
                                     time_bandwidth=time_bandwidth, fmax=fmax)
        powers.append(p.astype(np.float32))
    power = np.stack(powers)
    onsets = raw.first_samp / raw.info["sfreq"] + epoch_s * np.arange(power.shape[1])
    if emg_estimate is None and lfp_emg_npz is not None:
        emg_estimate = converted_lfp_emg(lfp_emg_npz, onsets)
    if emg_estimate is None:
        log.warning("no muscle tone from the LFP: it needs two brain regions and an LFP rate of at least %g Hz, "
                    "or a raw rate of at least that to estimate it during conversion",
                    (LFP_EMG_BAND[0] + LFP_EMG_MIN_WIDTH) / PASSBAND_FRACTION)
    valid = epoch_validity(raw, onsets, epoch_s)
    epoch_samples = int(round(epoch_s * rate))
    for r in regions:
        if empty[r].any():
            lost = epochs_touching(empty[r], len(onsets), epoch_samples)
            log.warning("%s has no channel with samples in %d epoch(s) of %s: those epochs are not scored",
                        r, int(lost.sum()), lfp_path)
            valid &= ~lost
    with atomic_path(out_npz, suffix=".npz") as tmp:
        extra = {} if emg_estimate is None else {"lfp_emg": emg_estimate[: power.shape[1]]}
        if per_channel:
            names, channel_power = channel_spectrograms(raw, info, epoch_s, time_bandwidth=time_bandwidth, fmax=fmax)
            extra.update(channel_names=np.array(names), channel_power=channel_power)
        np.savez(tmp, freqs=freqs, onsets_s=onsets, regions=np.array(regions), power=power, valid=valid,
                 roles=np.array(json.dumps(roles)), **extra)
    log.info("spectrogram of %s: %d regions x %d epochs x %d freqs", lfp_path, *power.shape)
    return {"regions": regions, "n_epochs": power.shape[1]}
