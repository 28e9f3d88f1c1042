"""The feature table a sleep model sees: every epoch of a whole recording, each base
feature normalised within the recording and smoothed over neighbouring epochs.

Normalising per recording (median 0, interquartile range of a standard normal) removes
what differs between animals and electrodes (gains, impedance, noise floors) and keeps
what differs between states. Smoothing gives each epoch its context, as a scorer looks
at the epochs around the one being scored: centred windows (what happens around it) and
past windows (what led to it), as in YASA. With 4 s epochs a lab's usual 60-odd base
features become about 300 columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Window name -> (kind, width in seconds). Widths are converted to whole epochs.
WINDOWS = {
    "c12s": ("centred", 12.0),
    "c60s": ("centred", 60.0),
    "p30s": ("past", 30.0),
    "p120s": ("past", 120.0),
}


@dataclass
class FeatureTable:
    """Every epoch of one recording: onsets, which are usable, and the model's columns."""

    onsets: np.ndarray  # s from the recording start
    valid: np.ndarray  # False: the epoch touches a gap or its features are not finite
    epoch_s: float
    names: list[str]
    values: np.ndarray  # (epochs, names), float32
    base: dict[str, np.ndarray]  # the raw base features, before normalising
    notes: list[str] = field(default_factory=list)  # what a person should know about the inputs

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]

    def epoch_columns(self) -> np.ndarray:
        """Indices of the columns of each epoch alone (normalised, not averaged over a window)."""
        windowed = tuple(f"_{w}" for w in WINDOWS)
        return np.array([i for i, n in enumerate(self.names) if not n.endswith(windowed)], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.onsets)


def robust_z(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(x - median) / (IQR / 1.349) over the valid epochs; columns of x."""
    if not valid.any():
        return np.zeros_like(x)
    med = np.median(x[valid], axis=0)
    q75, q25 = np.percentile(x[valid], [75, 25], axis=0)
    scale = (q75 - q25) / 1.349
    return (x - med) / np.where(scale > 0, scale, 1.0)


def rolling_mean(x: np.ndarray, valid: np.ndarray, width: int, kind: str) -> np.ndarray:
    """Mean over a window of `width` epochs of each column, ignoring invalid epochs.

    `centred`: the epoch and its neighbours on both sides; `past`: the epoch and the
    ones before it. An epoch whose window holds no valid epoch gets its own value.
    """
    n = len(x)
    w = np.where(valid[:, None], x, 0.0)
    c = valid.astype(np.float64)[:, None]
    cs = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(w, axis=0)])
    cc = np.vstack([np.zeros((1, 1)), np.cumsum(c, axis=0)])
    idx = np.arange(n)
    if kind == "centred":
        lo, hi = idx - width // 2, idx + (width - 1 - width // 2) + 1
    elif kind == "past":
        lo, hi = idx - width + 1, idx + 1
    else:
        raise ValueError(kind)
    lo, hi = np.clip(lo, 0, n), np.clip(hi, 0, n)
    total = cs[hi] - cs[lo]
    count = cc[hi] - cc[lo]
    return np.where(count > 0, total / np.maximum(count, 1), x)


def build_table(onsets: np.ndarray, valid: np.ndarray, base: dict[str, np.ndarray], epoch_s: float,
                notes: list[str] | None = None) -> FeatureTable:
    """Normalise and smooth the base features; columns named `<feature>` (normalised)
    and `<feature>_<window>` (normalised, then averaged over the window)."""
    names0 = sorted(base)
    x = np.column_stack([np.asarray(base[n], dtype=np.float64) for n in names0]) if names0 else np.zeros((len(onsets), 0))
    finite = np.all(np.isfinite(x), axis=1)
    usable = np.asarray(valid, dtype=bool) & finite
    x = np.where(np.isfinite(x), x, 0.0)
    z = robust_z(x, usable)
    blocks, names = [z], list(names0)
    for wname, (kind, seconds) in WINDOWS.items():
        width = max(1, int(round(seconds / epoch_s)))
        blocks.append(rolling_mean(z, usable, width, kind))
        names += [f"{n}_{wname}" for n in names0]
    values = np.hstack(blocks).astype(np.float32)
    return FeatureTable(onsets=np.asarray(onsets, dtype=np.float64), valid=usable, epoch_s=float(epoch_s),
                        names=names, values=values, base={n: np.asarray(base[n]) for n in names0},
                        notes=list(notes or []))
