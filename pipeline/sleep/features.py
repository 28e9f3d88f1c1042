"""Per-epoch features from the region spectrograms.

Features are named `<region>_<feature>` (YASA's convention) so a trained model can be
checked against the feature names of the data it is asked to score. The EMG's features
are named `emg_*` whatever its region is called (the channel map's `roles.emg`), and the
muscle tone estimated from the LFP itself is `lfp_emg`. One table per segment holds
these base features; `classify` joins the segments' tables in time order and adds the
smoothed and normalised versions (pipeline.sleep.table), since both need the whole
recording.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from pipeline.io.atomic import write_tsv_atomic

log = logging.getLogger(__name__)

# Band powers of brain regions (Hz, upper edge excluded).
BANDS = {
    "delta": (1.0, 4.0),
    "theta": (6.0, 9.0),
    "sigma": (10.0, 15.0),
    "beta": (15.0, 30.0),
    "gamma": (30.0, 80.0),  # low gamma
    "high": (80.0, 150.0),  # high gamma
}
TOTAL_BAND = (0.5, 50.0)  # relative powers are fractions of this
THETA_RATIO = ((5.0, 10.0), (2.0, 20.0))  # theta over a broad band, robust to 1/f gains
SLOPE_BAND = (2.0, 40.0)  # aperiodic slope of log power against log frequency
EMG_BAND = (30.0, 200.0)
LINE_FREQS = (50.0, 60.0)  # mains in Europe and America; their harmonics are notched in the EMG
NOTCH_HALF_WIDTH = 2.0
META_COLUMNS = ["onset_s", "valid"]
EMG_ROLE = "emg"
LFP_EMG = "lfp_emg"


def _band_power(freqs: np.ndarray, power: np.ndarray, lo: float, hi: float,
                keep: np.ndarray | None = None) -> np.ndarray | None:
    sel = (freqs >= lo) & (freqs < hi)
    if keep is not None:
        sel &= keep
    if not sel.any():
        return None
    df = freqs[1] - freqs[0]
    return power[..., sel].sum(axis=-1) * df


def line_noise_mask(freqs: np.ndarray, line_freqs=LINE_FREQS, half_width: float = NOTCH_HALF_WIDTH) -> np.ndarray:
    """True for the frequencies kept once mains and its harmonics are notched out."""
    keep = np.ones(len(freqs), dtype=bool)
    top = freqs[-1] if len(freqs) else 0.0
    for f0 in line_freqs:
        for h in np.arange(f0, top + half_width, f0):
            keep &= np.abs(freqs - h) > half_width
    return keep


def _slope(freqs: np.ndarray, power: np.ndarray) -> np.ndarray | None:
    sel = (freqs >= SLOPE_BAND[0]) & (freqs < SLOPE_BAND[1]) & line_noise_mask(freqs)
    if sel.sum() < 3:
        return None
    x = np.log10(freqs[sel])
    y = np.log10(power[:, sel] + 1e-30)
    xc = x - x.mean()
    return (y - y.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)


def epoch_features(freqs: np.ndarray, power: np.ndarray, regions: list[str], *,
                   emg_region: str | None = EMG_ROLE) -> tuple[dict[str, np.ndarray], list[str]]:
    """Features of every epoch, and notes on bands left out.

    `power` is (regions, epochs, freqs) in V^2/Hz; `emg_region` is the region whose
    channels are EMG electrodes (None: no EMG). A band above the highest frequency of
    the spectrogram (a low sampling rate) is left out with a note, never an error.
    """
    feats: dict[str, np.ndarray] = {}
    notes: set[str] = set()
    tiny = 1e-30
    top = float(freqs[-1]) if len(freqs) else 0.0
    for i, region in enumerate(regions):
        p = power[i].astype(np.float64)
        if emg_region is not None and region == emg_region:
            keep = line_noise_mask(freqs)
            lo, hi = EMG_BAND
            if top < hi:
                notes.add(f"the EMG band is cut to {lo:g}-{top:g} Hz by the sampling rate")
            bp = _band_power(freqs, p, lo, min(hi, top + 1e-9), keep)
            if bp is None:
                notes.add(f"the EMG channel is not used: the sampling rate leaves nothing above {lo:g} Hz")
                continue
            feats[f"{EMG_ROLE}_log_power"] = np.log10(bp + tiny)
            low = _band_power(freqs, p, 1.0, 30.0, keep)
            feats[f"{EMG_ROLE}_log_low"] = np.log10(low + tiny)  # movement artefacts, ECG
            continue
        total = _band_power(freqs, p, *TOTAL_BAND)
        feats[f"{region}_log_total"] = np.log10(total + tiny)
        everything = _band_power(freqs, p, 0.5, top + 1e-9)
        feats[f"{region}_log_var"] = np.log10(everything + tiny)
        for band, (lo, hi) in BANDS.items():
            if hi > top + 1e-9:
                notes.add(f"the {band} band ({lo:g}-{hi:g} Hz) is left out: the spectrogram stops at {top:g} Hz")
                continue
            bp = _band_power(freqs, p, lo, hi)
            feats[f"{region}_log_{band}"] = np.log10(bp + tiny)
            if hi <= TOTAL_BAND[1]:
                feats[f"{region}_rel_{band}"] = bp / (total + tiny)
        theta, delta = _band_power(freqs, p, *BANDS["theta"]), _band_power(freqs, p, *BANDS["delta"])
        feats[f"{region}_theta_delta"] = np.log10((theta + tiny) / (delta + tiny))
        num, den = (_band_power(freqs, p, *b) for b in THETA_RATIO)
        feats[f"{region}_theta_ratio"] = (num + tiny) / (den + tiny)
        slope = _slope(freqs, p)
        if slope is not None:
            feats[f"{region}_slope"] = slope
    return feats, sorted(notes)


def compute_features(spectrogram_npz: str | Path, out_tsv: str | Path) -> int:
    with np.load(spectrogram_npz) as z:
        freqs, power, regions = z["freqs"], z["power"], [str(r) for r in z["regions"]]
        onsets, valid = z["onsets_s"], z["valid"]
        roles = json.loads(str(z["roles"])) if "roles" in z else {EMG_ROLE: EMG_ROLE}
        lfp_emg = z["lfp_emg"] if "lfp_emg" in z else None
    feats, notes = epoch_features(freqs, power, regions, emg_region=roles.get(EMG_ROLE))
    for note in notes:
        log.warning("%s: %s", spectrogram_npz, note)
    if lfp_emg is not None:
        feats[LFP_EMG] = np.asarray(lfp_emg, dtype=np.float64)
    write_feature_table(out_tsv, onsets, valid, feats)
    log.info("features of %s: %d epochs x %d features", spectrogram_npz, len(onsets), len(feats))
    return len(onsets)


def write_feature_table(out_tsv: str | Path, onsets: np.ndarray, valid: np.ndarray, feats: dict[str, np.ndarray]) -> None:
    names = sorted(feats)
    write_tsv_atomic(out_tsv, META_COLUMNS + names,
                     ([f"{onsets[e]:.3f}", int(valid[e])] + [f"{feats[n][e]:.7g}" for n in names]
                      for e in range(len(onsets))))


def regions_of(feats: dict[str, np.ndarray]) -> list[str]:
    """The brain regions a feature table describes (each has a `<region>_log_total`)."""
    return sorted({n[: -len("_log_total")] for n in feats if n.endswith("_log_total")})


def read_feature_tables(paths: list[str | Path]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Join per-segment tables in time order: (onsets_s, valid, {feature: values})."""
    rows: list[list[str]] = []
    header = None
    for p in paths:
        with open(p, newline="", encoding="utf-8") as f:
            r = csv.reader(f, delimiter="\t")
            h = next(r)
            if header is None:
                header = h
            elif h != header:
                raise DataError(f"{p}: feature columns differ from the other segments; convert the recording again (tick rerun)")
            rows.extend(r)
    if header is None or not rows:
        raise DataError("no epochs to score: the recording is shorter than one sleep epoch (sleep.epoch_s)")
    arr = np.array(rows, dtype=np.float64)
    order = np.argsort(arr[:, 0], kind="stable")
    arr = arr[order]
    feats = {name: arr[:, i] for i, name in enumerate(header) if name not in META_COLUMNS}
    return arr[:, 0], arr[:, 1].astype(bool), feats
