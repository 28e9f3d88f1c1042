"""Per-epoch features from the region spectrograms.

Features are named `<region>_<feature>` (YASA's convention) so a trained model can be
checked against the feature names of the data it is asked to score. One table per
segment; `classify` joins the segments' tables in time order before scoring.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from pipeline.io.atomic import atomic_path

log = logging.getLogger(__name__)

BANDS = {
    "delta": (1.0, 4.0),
    "theta": (6.0, 9.0),
    "sigma": (10.0, 15.0),
    "beta": (15.0, 30.0),
    "gamma": (30.0, 80.0),
    "high": (80.0, 150.0),
}
EMG_BAND = (30.0, 200.0)
TOTAL_BAND = (0.5, 50.0)
META_COLUMNS = ["onset_s", "valid"]


def _band_power(freqs: np.ndarray, power: np.ndarray, lo: float, hi: float) -> np.ndarray | None:
    sel = (freqs >= lo) & (freqs < hi)
    if not sel.any():
        return None
    df = freqs[1] - freqs[0]
    return power[..., sel].sum(axis=-1) * df


def epoch_features(freqs: np.ndarray, power: np.ndarray, regions: list[str]) -> dict[str, np.ndarray]:
    """Features of every epoch; power is (regions, epochs, freqs) in V^2/Hz."""
    feats: dict[str, np.ndarray] = {}
    tiny = 1e-30
    for i, region in enumerate(regions):
        p = power[i].astype(np.float64)
        if region == "emg":
            bp = _band_power(freqs, p, *EMG_BAND)
            feats["emg_log_power"] = np.log10(bp + tiny)
            continue
        total = _band_power(freqs, p, *TOTAL_BAND)
        feats[f"{region}_log_total"] = np.log10(total + tiny)
        for band, (lo, hi) in BANDS.items():
            bp = _band_power(freqs, p, lo, hi)
            if bp is None:
                continue
            feats[f"{region}_log_{band}"] = np.log10(bp + tiny)
            if hi <= TOTAL_BAND[1]:
                feats[f"{region}_rel_{band}"] = bp / (total + tiny)
        theta, delta = _band_power(freqs, p, *BANDS["theta"]), _band_power(freqs, p, *BANDS["delta"])
        feats[f"{region}_theta_delta"] = np.log10((theta + tiny) / (delta + tiny))
    return feats


def compute_features(spectrogram_npz: str | Path, out_tsv: str | Path) -> int:
    with np.load(spectrogram_npz) as z:
        freqs, power, regions = z["freqs"], z["power"], [str(r) for r in z["regions"]]
        onsets, valid = z["onsets_s"], z["valid"]
    feats = epoch_features(freqs, power, regions)
    names = sorted(feats)
    with atomic_path(out_tsv) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(META_COLUMNS + names)
            for e in range(len(onsets)):
                w.writerow([f"{onsets[e]:.3f}", int(valid[e])] + [f"{feats[n][e]:.6g}" for n in names])
    log.info("features of %s: %d epochs x %d features", spectrogram_npz, len(onsets), len(names))
    return len(onsets)


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
        raise DataError("no epochs to score: the feature tables are empty")
    arr = np.array(rows, dtype=np.float64)
    order = np.argsort(arr[:, 0], kind="stable")
    arr = arr[order]
    feats = {name: arr[:, i] for i, name in enumerate(header) if name not in META_COLUMNS}
    return arr[:, 0], arr[:, 1].astype(bool), feats
