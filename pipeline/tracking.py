"""The tracking stage: a recording's DeepLabCut CSV -> head speed per sleep epoch
(results/REC/tracking/head_speed.tsv and .json), which classify takes as a feature and
the overview draws as a trace.

It runs only for recordings with a tracking file: the DeepLabCut CSV their sheet row
names (its `tracking` cell), else one in their raw folder (a `*DLC*.csv` or
`tracking.csv`, pipeline.io.tracking). The video's frame 0 is taken to be at the
recording's start plus `offset_s`; frames are `1 / fps` apart.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.dsp.head_speed import HEAD_PARTS, choose_head_parts, epoch_medians, frame_speed, head_position
from pipeline.errors import DataError
from pipeline.io.raw import lies_inside
from pipeline.io.recording_info import RecordingInfo
from pipeline.io.tracking import (TRACKING_SETTINGS, HeadSpeed, find_tracking_file, read_dlc_csv,
                                  read_tracking_settings, write_head_speed)

log = logging.getLogger(__name__)

# The configuration's tracking section, as the rules pass it (config.yaml documents each).
DEFAULT_SETTINGS = {"fps": 30.0, "offset_s": 0.0, "px_per_cm": None, "min_likelihood": 0.9,
                    "head_parts": list(HEAD_PARTS)}


def compute_head_speed(info: RecordingInfo, source: str | Path, out_tsv: str | Path, out_json: str | Path, *,
                       epoch_s: float, settings: dict | None = None,
                       data_roots: list[str] | None = None) -> HeadSpeed:
    """Head speed of every epoch of the recording from `source`: a DeepLabCut CSV (a
    recording's own, named in its sheet row), or the raw folder holding its tracking
    file; writes out_tsv and out_json.

    `settings`: the configuration's tracking section (DEFAULT_SETTINGS for what it lacks);
    the tracking.yaml beside the CSV wins over it for fps, offset_s and px_per_cm.
    """
    source = Path(source)
    if source.is_dir():
        path = find_tracking_file(source)
        if path is None:
            raise DataError(f"{source} holds no tracking file (a *DLC*.csv or tracking.csv); nothing to compute "
                            "head speed from.")
    else:
        path = source  # read_dlc_csv says so if it is not there
    if data_roots is not None:
        for p in (path, path.parent / TRACKING_SETTINGS):
            if p.exists() and not lies_inside(p, data_roots):
                raise DataError(f"{p.name} in {path.parent} is, or is a link to, a place outside the folders the "
                                "pipeline may read; put the file itself into a folder below data_roots instead.")
    own = read_tracking_settings(path.parent / TRACKING_SETTINGS)
    s = {**DEFAULT_SETTINGS, **(settings or {}), **{k: v for k, v in own.items() if v is not None}}
    fps, offset_s, px_per_cm = s["fps"], float(s["offset_s"] or 0.0), s["px_per_cm"]
    if not fps:
        raise DataError(f"the frame rate of {path.name} is not known: write it into {TRACKING_SETTINGS} beside it "
                        "(e.g. `fps: 30`), or a maintainer sets tracking.fps.")
    fps = float(fps)
    table = read_dlc_csv(path)
    notes = []
    parts = choose_head_parts(table.bodyparts, s["head_parts"])
    if not parts:
        parts = list(range(len(table.bodyparts)))
        notes.append(f"{path.name} names no head part ({', '.join(s['head_parts'])}); the mean of all its parts "
                     f"({', '.join(table.bodyparts)}) is used as the head")
    position = head_position(table.x, table.y, table.likelihood, parts, float(s["min_likelihood"]))
    tracked = np.isfinite(position[:, 0])
    if not tracked.any():
        raise DataError(f"{path.name}: no frame has a body part tracked with likelihood >= {s['min_likelihood']:g} "
                        f"(looked at {', '.join(table.bodyparts[i] for i in parts)}; the file has "
                        f"{', '.join(table.bodyparts) or 'no body parts'}); check the DeepLabCut model or lower "
                        "tracking.min_likelihood.")
    speed = frame_speed(position, fps)
    if px_per_cm:
        speed = speed / float(px_per_cm)
    unit = "cm/s" if px_per_cm else "px/s"
    step_times = offset_s + (np.arange(len(speed)) + 0.5) / fps
    n_epochs = int(np.floor(info.duration_s / epoch_s + 1e-9))
    onsets = epoch_s * np.arange(n_epochs)
    per_epoch = epoch_medians(step_times, speed, onsets, epoch_s)

    video_end = offset_s + table.n_frames / fps
    if video_end < info.duration_s - epoch_s:
        notes.append(f"the tracking ends {info.duration_s - video_end:.0f} s before the recording does; head speed "
                     "is unknown there")
    if offset_s > epoch_s:
        notes.append(f"the tracking starts {offset_s:.0f} s after the recording (tracking offset_s)")
    if video_end > info.duration_s + epoch_s:
        notes.append(f"the tracking runs {video_end - info.duration_s:.0f} s past the end of the recording "
                     "(that part is not used); check the frame rate")
    lost = 1.0 - float(tracked.mean())
    if lost > 0.2:
        notes.append(f"the head was not tracked with likelihood >= {s['min_likelihood']:g} in "
                     f"{100 * lost:.0f}% of the frames")
    meta = {"unit": unit, "file": path.name, "scorer": table.scorer, "frames": table.n_frames, "fps": fps,
            "offset_s": offset_s, "px_per_cm": px_per_cm, "min_likelihood": s["min_likelihood"],
            "head_parts": [table.bodyparts[i] for i in parts], "tracked_fraction": round(float(tracked.mean()), 4),
            "epochs_with_speed": int(np.isfinite(per_epoch).sum()), "notes": notes}
    write_head_speed(out_tsv, out_json, onsets, epoch_s, per_epoch, meta)
    for note in notes:
        log.warning("%s", note)
    log.info("head speed of %d epochs (%d known) from %s, %d frames at %g frames/s, in %s", n_epochs,
             meta["epochs_with_speed"], path.name, table.n_frames, fps, unit)
    return HeadSpeed(onsets, per_epoch, unit, notes)


def head_speed_features(head_speed: HeadSpeed) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The sleep features made of head speed, for pipeline.sleep.staging.load_table:
    the speed itself and its logarithm (speeds span orders of magnitude between a still
    and a running animal), floored at 5 % of the median so a perfectly still epoch is
    not minus infinity."""
    known = head_speed.speed[np.isfinite(head_speed.speed)]
    floor = max(0.05 * float(np.median(known)), 1e-3) if known.size else 1e-3
    return {"head_speed": (head_speed.onsets, head_speed.speed),
            "head_log_speed": (head_speed.onsets, np.log10(head_speed.speed + floor))}
