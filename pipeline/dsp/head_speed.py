"""Head speed from tracked body-part positions, per sleep epoch.

The head's position in a frame is the mean of its tracked parts (nose, ears ...) that
the tracker was sure of (likelihood at or above a threshold); a frame with none of them
has no position. Positions are median-filtered over a few frames before differencing,
so a single-frame jump of the tracker (a part mistaken for another, a reflection) or
pixel jitter is not taken for movement; the filter also bridges a dropped frame between
tracked ones. Speed is the distance between consecutive filtered positions times the
frame rate, and an epoch's head speed is the median over the frame steps inside it:
half the time the head moved faster, half slower, whatever a few bad frames say.

No file formats here: pipeline.io.tracking reads them, pipeline.tracking joins the two.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# Body parts that belong to the head, as DeepLabCut projects usually name them
# (matched ignoring case); the configuration's tracking.head_parts replaces this list.
HEAD_PARTS = ("head", "nose", "snout", "ear_left", "ear_right", "leftear", "rightear", "headcenter")
SMOOTH_FRAMES = 5  # the median filter's width: 1/6 s at 30 frames/s


def choose_head_parts(bodyparts: list[str], wanted: list[str] | tuple[str, ...] = HEAD_PARTS) -> list[int]:
    """Indices of the body parts named in `wanted` (ignoring case); [] when none is."""
    wanted_lower = {w.lower() for w in wanted}
    return [i for i, p in enumerate(bodyparts) if p.lower() in wanted_lower]


def head_position(x: np.ndarray, y: np.ndarray, likelihood: np.ndarray, parts: list[int],
                  min_likelihood: float) -> np.ndarray:
    """(frames, 2): the mean position of the `parts` tracked with at least `min_likelihood`
    in each frame; NaN where none is."""
    sure = (likelihood[:, parts] >= min_likelihood) & np.isfinite(x[:, parts]) & np.isfinite(y[:, parts])
    count = sure.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        px = np.where(sure, x[:, parts], 0.0).sum(axis=1) / count
        py = np.where(sure, y[:, parts], 0.0).sum(axis=1) / count
    out = np.column_stack([px, py])
    out[count == 0] = np.nan
    return out


def median_filter(values: np.ndarray, width: int = SMOOTH_FRAMES) -> np.ndarray:
    """Centred running median of each column over `width` frames (odd), NaN left out; a
    frame whose window holds fewer than width // 2 + 1 finite values is NaN."""
    if width <= 1 or len(values) == 0:
        return values.astype(np.float64)
    half = width // 2
    pad = np.full((half,) + values.shape[1:], np.nan)
    padded = np.concatenate([pad, values.astype(np.float64), pad])
    windows = sliding_window_view(padded, width, axis=0)  # (frames, columns, width)
    enough = np.isfinite(windows).sum(axis=-1) >= half + 1
    out = np.full(values.shape, np.nan)
    if enough.any():
        out[enough] = np.nanmedian(windows[enough], axis=-1)
    return out


def frame_speed(position: np.ndarray, fps: float, *, smooth_frames: int = SMOOTH_FRAMES) -> np.ndarray:
    """Speed of each step from frame i to i + 1 (length frames - 1), in position units per
    second, of the positions median-filtered over `smooth_frames`; NaN where either end
    has no position."""
    filtered = median_filter(position, smooth_frames)
    step = np.diff(filtered, axis=0)
    return np.hypot(step[:, 0], step[:, 1]) * float(fps)


def epoch_medians(times: np.ndarray, values: np.ndarray, onsets: np.ndarray, epoch_s: float) -> np.ndarray:
    """The median of the finite `values` whose `times` (increasing) lie in each epoch
    [onset, onset + epoch_s); NaN for an epoch with none."""
    keep = np.isfinite(values)
    times, values = times[keep], values[keep]
    lo = np.searchsorted(times, onsets, side="left")
    hi = np.searchsorted(times, onsets + epoch_s, side="left")
    out = np.full(len(onsets), np.nan)
    for e in np.flatnonzero(hi > lo):
        out[e] = np.median(values[lo[e]:hi[e]])
    return out
