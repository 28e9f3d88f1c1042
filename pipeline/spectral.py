"""Spectrogram stage: LFP segment -> one multitaper spectrogram per brain region.

Each region's signal is the mean of its good channels (channels QC flagged as dead or
noisy are left out); channels in no region are in the LFP but in no spectrogram, and an
LFP without any channel in a brain region stops here with a sentence on how to map one.
The result is saved as .npz: `freqs`, `onsets_s` (epoch onsets from the recording
start), `regions`, `power` (regions x epochs x freqs, V^2/Hz) and `valid` (epochs not
touching a recording gap).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.dsp.spectrogram import epoch_spectrogram
from pipeline.errors import DataError, RawDataError
from pipeline.io.atomic import atomic_path
from pipeline.io.lfp import GAP_ANNOTATION, read_lfp
from pipeline.io.recording_info import RecordingInfo

log = logging.getLogger(__name__)


def region_signals(raw, info: RecordingInfo, *, chunk_s: float = 300.0) -> dict[str, np.ndarray]:
    """Mean LFP of the good channels of each region, in volts.

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
    out = {r: np.empty(n, dtype=np.float64) for r in regions}
    step = max(1, int(chunk_s * raw.info["sfreq"]))
    for start in range(0, n, step):
        stop = min(n, start + step)
        for r, idx in regions.items():
            out[r][start:stop] = raw.get_data(picks=idx, start=start, stop=stop).mean(axis=0)
    return out


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


def compute_spectrogram(info: RecordingInfo, lfp_path: str | Path, out_npz: str | Path, *, epoch_s: float,
                        time_bandwidth: float, fmax: float) -> dict:
    """One multitaper spectrogram per region, one window per epoch of `epoch_s` seconds
    (sleep.epoch_s), with `time_bandwidth` (NW) and frequencies up to `fmax` Hz."""
    raw = read_lfp(lfp_path, preload=False)
    region_of = {c.name: c.region for c in info.channels}
    if not any(region_of.get(name) not in (None, "emg") for name in raw.ch_names):
        raise RawDataError(
            f"{lfp_path}: no channel is mapped to a brain region, so there is nothing to average into "
            "spectrograms; name the regions' channels in a channel_map.yaml in the raw data folder "
            "(e.g. regions: {cortex: CSC1-CSC4}) or in channel_maps.default of config.yaml, then process the "
            "recording again (tick rerun)."
        )
    signals = region_signals(raw, info)
    if not signals:
        raise DataError(f"{lfp_path}: no good channel in any region (QC flagged them all as dead or noisy); "
                        "each channel's qc.flag in recording.json says why.")
    regions = sorted(signals)
    powers, freqs = [], None
    for r in regions:
        freqs, p = epoch_spectrogram(signals[r], raw.info["sfreq"], epoch_s,
                                     time_bandwidth=time_bandwidth, fmax=fmax)
        powers.append(p.astype(np.float32))
    power = np.stack(powers)
    onsets = raw.first_samp / raw.info["sfreq"] + epoch_s * np.arange(power.shape[1])
    valid = epoch_validity(raw, onsets, epoch_s)
    with atomic_path(out_npz, suffix=".npz") as tmp:
        np.savez(tmp, freqs=freqs, onsets_s=onsets, regions=np.array(regions), power=power, valid=valid)
    log.info("spectrogram of %s: %d regions x %d epochs x %d freqs", lfp_path, *power.shape)
    return {"regions": regions, "n_epochs": power.shape[1]}
