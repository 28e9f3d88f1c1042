"""Video tracking beside a recording: DeepLabCut's CSV of body-part positions, and the
per-epoch head speed the tracking stage makes of it.

A recording's raw folder may hold the DeepLabCut output of its video: a `*DLC*.csv`
(DeepLabCut's own naming, e.g. `rec1DLC_resnet50_sleepJan5shuffle1_100000.csv`), or a
file the lab renamed `tracking.csv`. An optional `tracking.yaml` beside it says what the
CSV cannot: the camera's frame rate and where frame 0 lies on the recording's clock
(see TRACKING_KEYS). inspect records the file it found (recording.json `tracking_file`);
the tracking stage (pipeline.tracking) reads it with this module, and the mathematics
(pipeline.dsp.head_speed) never sees a file.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from pipeline.errors import DataError
from pipeline.io.atomic import write_json_atomic, write_tsv_atomic

TRACKING_CSV = "tracking.csv"  # the name a lab may give its tracking file
DLC_PATTERN = "*DLC*.csv"  # DeepLabCut's own naming of its output
TRACKING_SETTINGS = "tracking.yaml"  # the camera's facts, beside the CSV
# What tracking.yaml may say; each wins over the configuration's tracking.<key>.
TRACKING_KEYS = ("fps", "offset_s", "px_per_cm")
COORDS = ("x", "y", "likelihood")


def is_tracking_csv(name: str) -> bool:
    return name == TRACKING_CSV or fnmatch.fnmatchcase(name, DLC_PATTERN)


def tracking_candidates(folder: str | Path) -> list[Path]:
    """Every file of a raw folder (not its sub-folders) that may be its tracking, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and is_tracking_csv(p.name))


def find_tracking_file(folder: str | Path) -> Path | None:
    """The tracking CSV of a raw folder, or None. `tracking.csv` wins; otherwise one
    `*DLC*.csv` must be there (DeepLabCut's `_filtered` output counts as another file)."""
    found = tracking_candidates(folder)
    names = [p.name for p in found]
    if not found:
        return None
    if TRACKING_CSV in names:
        return Path(folder) / TRACKING_CSV
    if len(found) == 1:
        return found[0]
    raise DataError(f"{folder} holds {len(names)} DeepLabCut files ({', '.join(names)}); keep the one to use "
                    f"for head speed, or name it {TRACKING_CSV}.")


def tracking_file_name(folder: str | Path) -> str | None:
    """What inspect records: the tracking file's name, None when there is none or it is
    not clear which (the tracking stage then says why)."""
    try:
        found = find_tracking_file(folder)
    except DataError:
        return None
    return found.name if found else None


def read_tracking_settings(path: str | Path) -> dict:
    """What a tracking.yaml says ({} when there is none), checked key by key."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise DataError(f"{path} is not readable YAML ({type(e).__name__}); it may say "
                        f"{', '.join(TRACKING_KEYS)}, e.g. `fps: 25`.") from None
    if not isinstance(doc, dict) or set(doc) - set(TRACKING_KEYS):
        unknown = sorted(set(doc) - set(TRACKING_KEYS)) if isinstance(doc, dict) else [str(doc)[:40]]
        raise DataError(f"{path}: {', '.join(map(str, unknown))} is not something it may say; it may say "
                        f"{', '.join(TRACKING_KEYS)} (e.g. `fps: 25`).")
    for key, value in doc.items():
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if value is not None and (not ok or (key != "offset_s" and value <= 0)):
            raise DataError(f"{path}: {key} must be a {'' if key == 'offset_s' else 'positive '}number "
                            f"(it is {value!r}).")
    return {k: (None if v is None else float(v)) for k, v in doc.items()}


@dataclass
class BodyPartTable:
    """DeepLabCut's output for one animal: per frame and body part, x and y in pixels and
    the network's likelihood."""

    path: Path
    scorer: str
    bodyparts: list[str]
    x: np.ndarray  # (frames, parts), NaN where the file has no value
    y: np.ndarray
    likelihood: np.ndarray

    @property
    def n_frames(self) -> int:
        return len(self.x)


def _not_dlc(path: Path, what: str) -> DataError:
    return DataError(f"{path} is not a DeepLabCut CSV ({what}); export the tracking from DeepLabCut as CSV "
                     "(rows scorer, bodyparts, coords with x, y, likelihood), single animal.")


def read_dlc_csv(path: str | Path) -> BodyPartTable:
    """Read a single-animal DeepLabCut CSV: three header rows (scorer, bodyparts, coords),
    then one row per frame: the frame index, and x, y, likelihood of each body part."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = csv.reader(f)
            header = [next(rows, None) for _ in range(3)]
            if any(h is None for h in header):
                raise _not_dlc(path, "fewer than three header rows")
            first = [h[0].strip().lower() if h else "" for h in header]
            if first[0] == "scorer" and first[1] == "individuals":
                raise DataError(f"{path} is a multi-animal DeepLabCut CSV; head speed needs one animal per file "
                                "(export the animal's track alone).")
            if first != ["scorer", "bodyparts", "coords"]:
                raise _not_dlc(path, f"its first column starts {', '.join(repr(c) for c in first)}")
            scorer_row, part_row, coord_row = (h[1:] for h in header)
            if not coord_row or len(coord_row) % 3 or len(part_row) != len(coord_row):
                raise _not_dlc(path, f"{len(coord_row)} data columns, not three per body part")
            parts = []
            for i in range(0, len(coord_row), 3):
                names = {p.strip() for p in part_row[i:i + 3]}
                coords = tuple(c.strip().lower() for c in coord_row[i:i + 3])
                if len(names) != 1 or coords != COORDS:
                    raise _not_dlc(path, f"columns {i + 2}-{i + 4} are not x, y, likelihood of one body part")
                parts.append(names.pop())
            data = []
            for line_no, row in enumerate(rows, start=4):
                if not row or not "".join(row).strip():
                    continue
                if len(row) != len(coord_row) + 1:
                    raise DataError(f"{path}: line {line_no} has {len(row)} columns, the header {len(coord_row) + 1}; "
                                    "the file is cut short or damaged, export it from DeepLabCut again.")
                try:
                    data.append([float(v) if v.strip() else math.nan for v in row[1:]])
                except ValueError:
                    raise DataError(f"{path}: line {line_no} holds something that is not a number; the file is "
                                    "damaged, export it from DeepLabCut again.") from None
    except UnicodeDecodeError:
        raise _not_dlc(path, "it is not text") from None
    except OSError as e:
        raise DataError(f"cannot read the tracking file {path} ({e.strerror or e}).") from None
    values = np.array(data, dtype=np.float64).reshape(len(data), len(coord_row))
    if len(set(parts)) != len(parts):
        raise _not_dlc(path, "a body part appears twice")
    return BodyPartTable(path=path, scorer=scorer_row[0].strip() if scorer_row else "", bodyparts=parts,
                         x=values[:, 0::3], y=values[:, 1::3], likelihood=values[:, 2::3])


# -- the tracking stage's output ---------------------------------------------------------
HEAD_SPEED_COLUMNS = ["onset", "duration", "speed"]


def write_head_speed(tsv: str | Path, meta_json: str | Path, onsets: np.ndarray, epoch_s: float,
                     speed: np.ndarray, meta: dict) -> None:
    """head_speed.tsv (onset and duration in s from the recording start, as BIDS events
    files, and the median head speed of the epoch, `n/a` where unknown) and the JSON
    beside it (the unit, the body parts used, notes)."""
    write_tsv_atomic(tsv, HEAD_SPEED_COLUMNS, ([f"{t:.3f}", f"{epoch_s:g}", f"{v:.4g}" if np.isfinite(v) else "n/a"]
                                               for t, v in zip(onsets, speed)))
    write_json_atomic(meta_json, meta)


@dataclass
class HeadSpeed:
    onsets: np.ndarray
    speed: np.ndarray  # NaN: no tracked frame in the epoch
    unit: str  # "cm/s" or "px/s"
    notes: list[str]


def read_head_speed(tsv: str | Path, meta_json: str | Path | None = None) -> HeadSpeed:
    """What write_head_speed wrote (the JSON beside it by default: same name, .json)."""
    tsv = Path(tsv)
    meta_json = Path(meta_json) if meta_json is not None else tsv.with_suffix(".json")
    try:
        with open(tsv, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        onsets = np.array([float(r["onset"]) for r in rows])
        speed = np.array([math.nan if r["speed"] == "n/a" else float(r["speed"]) for r in rows])
        meta = json.loads(meta_json.read_text(encoding="utf-8")) if meta_json.is_file() else {}
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise DataError(f"{tsv} is not a readable head-speed table ({type(e).__name__}: {e}); compute it again "
                        "(tick rerun).") from None
    return HeadSpeed(onsets, speed, str(meta.get("unit", "px/s")), list(meta.get("notes", [])))
