"""A synthetic DeepLabCut CSV for a synthetic recording: the same animal on video.

The head moves in wake with movement (at a speed that follows the epoch's movement,
0.25-1 -> 2-8 cm/s), barely in quiet wake, and not at all in sleep; the tracker adds
pixel jitter to every point and, in a few frames, loses a body part (low likelihood, a
wild position). States and movement are those write_synthetic_recording draws for the
same seed, duration, rate, start and epoch length, so the video matches the LFP.

Only tests and explicit callers write it: a synthetic recording has no video unless asked.
"""

from __future__ import annotations

import csv
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pipeline.io.atomic import atomic_path
from pipeline.io.ncs import SAMPLES_PER_RECORD
from pipeline.synth.hypnogram import _hypnogram
from pipeline.synth.recording import DEFAULT_START

DLC_NAME = "videoDLC_resnet50_synthJan5shuffle1_100000.csv"  # as DeepLabCut names its output
SCORER = "DLC_resnet50_synthJan5shuffle1_100000"
# Body parts, as offsets from the head's centre in cm: (ahead, to the left).
BODY_PARTS = {"nose": (1.2, 0.0), "ear_left": (-0.3, 0.7), "ear_right": (-0.3, -0.7), "tailbase": (-7.0, 0.0)}
MAX_SPEED_CM_S = 8.0
ARENA_CM = 40.0
JITTER_PX = 0.6
_STREAM = 0x7ACC  # the tracking's own random stream of a seed, apart from the recording's


def states_and_movement(*, duration_s: float, sampling_rate: float, seed: int, start_time: datetime | None,
                        epoch_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-epoch state (0 wake, 1 NREM, 2 REM) and wake movement (0-1), drawn exactly as
    write_synthetic_recording draws them for the same arguments."""
    start = DEFAULT_START if start_time is None else start_time
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    n_records = int(math.ceil(duration_s * sampling_rate / SAMPLES_PER_RECORD - 1e-9))
    total_s = n_records * SAMPLES_PER_RECORD / sampling_rate
    n_epochs = int(math.ceil(duration_s / epoch_s - 1e-9))
    n_epochs_sim = max(n_epochs, int(math.ceil(total_s / epoch_s - 1e-9)))
    states, move, _ = _hypnogram(seed, n_epochs_sim, epoch_s, start, n_scored=n_epochs)
    return states, move


def write_synthetic_tracking(out_dir: str | Path, *, duration_s: float, sampling_rate: float = 32000.0,
                             seed: int = 0, start_time: datetime | None = None, epoch_s: float = 4.0,
                             fps: float = 30.0, px_per_cm: float = 10.0, name: str = DLC_NAME,
                             lost_fraction: float = 0.03, video_s: float | None = None) -> dict:
    """Write `name` into `out_dir` (a synthetic recording's folder); returns a summary:
    path, fps, px_per_cm, frames, and `epoch_speed_cm_s`, the head speed the generator
    gave each epoch. `video_s`: the video's length (default: the recording's)."""
    states, move = states_and_movement(duration_s=duration_s, sampling_rate=sampling_rate, seed=seed,
                                       start_time=start_time, epoch_s=epoch_s)
    epoch_speed = np.where(states == 0, MAX_SPEED_CM_S * move, 0.0)
    rng = np.random.default_rng([seed, _STREAM])
    recording_s = math.ceil(duration_s * sampling_rate / SAMPLES_PER_RECORD - 1e-9) * SAMPLES_PER_RECORD / sampling_rate
    length_s = recording_s if video_s is None else video_s
    n = int(math.floor(min(length_s, len(states) * epoch_s) * fps))
    t = np.arange(n) / fps
    speed = epoch_speed[np.minimum((t // epoch_s).astype(int), len(states) - 1)]
    # The head's path: a heading that wanders, steps of speed / fps, walls that reflect.
    heading = np.cumsum(rng.normal(0.0, 0.25, n))
    pos = np.empty((n, 2))
    p = np.array([ARENA_CM / 2, ARENA_CM / 2])
    for i in range(n):
        step = speed[i] / fps * np.array([math.cos(heading[i]), math.sin(heading[i])])
        p = p + step
        if not (0.0 <= p[0] <= ARENA_CM and 0.0 <= p[1] <= ARENA_CM):  # a wall: turn round
            p = np.clip(p - 2 * step, 0.0, ARENA_CM)
            heading[i:] += math.pi
        pos[i] = p
    forward = np.column_stack([np.cos(heading), np.sin(heading)])
    left = np.column_stack([-forward[:, 1], forward[:, 0]])
    columns = []
    for part, (ahead, side) in BODY_PARTS.items():
        xy = (pos + ahead * forward + side * left) * px_per_cm + rng.normal(0.0, JITTER_PX, (n, 2))
        likelihood = rng.uniform(0.95, 1.0, n)
        lost = rng.random(n) < lost_fraction
        likelihood[lost] = rng.uniform(0.0, 0.5, int(lost.sum()))
        xy[lost] = rng.uniform(0.0, ARENA_CM * px_per_cm, (int(lost.sum()), 2))  # the tracker's wild guess
        columns.append((part, xy, likelihood))
    path = Path(out_dir) / name
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["scorer"] + [SCORER] * (3 * len(columns)))
            w.writerow(["bodyparts"] + [part for part, _, _ in columns for _ in range(3)])
            w.writerow(["coords"] + ["x", "y", "likelihood"] * len(columns))
            values = np.column_stack([c for _, xy, lk in columns for c in (xy[:, 0], xy[:, 1], lk)])
            for i in range(n):
                w.writerow([i] + [f"{v:.3f}" for v in values[i]])
    return {"path": str(path), "fps": fps, "px_per_cm": px_per_cm, "frames": n, "epoch_s": epoch_s,
            "epoch_speed_cm_s": epoch_speed}
