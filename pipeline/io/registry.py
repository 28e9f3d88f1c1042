"""The registry of recordings (state/recordings.tsv) and the checks a sheet row must pass.

The poller registers valid sheet rows here; `ephys add` registers a recording without
any sheet. Snakemake reads only this file, never the sheet. Sheet cells are untrusted:
an id must be usable as a folder name, and a raw path must lie inside a data root.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import os
import re
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Iterator

from pipeline import layout
from pipeline.errors import RowError
from pipeline.io.atomic import write_text_atomic

REGISTRY_NAME = Path(layout.REGISTRY).name  # in the state folder
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class Recording:
    recording_id: str
    animal: str
    raw_path: str
    notes: str = ""
    run_id: str = ""
    registered_at: str = ""
    source: str = "cli"
    # '' (the config's sleep.model), `label-free`, or a model's name in sleep.models_dir
    # (checked by pipeline.sleep.models.check_model_cell before it gets here).
    sleep_model: str = ""
    # '' (the raw folder's own tracking, if any) or the real path of the DeepLabCut CSV
    # the row names (checked by resolve_tracking_file before it gets here).
    tracking: str = ""


COLUMNS = [f.name for f in fields(Recording)]


def quoted(value: str, limit: int = 60) -> str:
    """A cell's text as a message quotes it: at most a short prefix."""
    value = str(value)
    return value if len(value) <= limit else value[:limit - 3] + "..."


def check_name(value: str, what: str) -> str:
    value = (value or "").strip()
    if not value:
        raise RowError(f"The {what} is empty. Please fill it in.")
    if not _ID.match(value) or value in (".", ".."):
        raise RowError(
            f"The {what} '{quoted(value)}' can only use letters, digits, '.', '_' and '-' (no spaces or slashes, "
            "at most 100 characters), because it becomes a folder name. Please rename it."
        )
    return value


def _cell_path(value: str, what: str, empty: str) -> str:
    value = (value or "").strip()
    if not value:
        raise RowError(f"The {what} is empty. {empty}")
    if "\x00" in value:
        raise RowError(f"The {what} contains an invalid character.")
    return value


def _candidates(value: str, bases: list[str | Path]) -> list[Path]:
    """Where a path typed in a cell may be: itself if absolute, else below each base in turn."""
    if os.path.isabs(value):
        return [Path(value)]
    return [Path(b) / value for b in bases]


def _real_paths_inside(candidates: list[Path], data_roots: list[str]) -> list[Path]:
    """The real paths of `candidates` (`~` expanded, `..` and symbolic links resolved)
    that lie inside a data root, in order: the one check every path from a cell passes,
    so that neither `..` nor a link leads out of the roots. Raises OSError."""
    roots = [Path(os.path.realpath(r)) for r in data_roots]
    real = [Path(os.path.realpath(os.path.expanduser(c))) for c in candidates]
    return [p for p in real if any(p == r or p.is_relative_to(r) for r in roots)]


def _outside_roots(subject: str, data_roots: list[str], what: str) -> RowError:
    allowed = ", ".join(os.path.realpath(r) for r in data_roots)
    return RowError(f"{subject} is outside the folders the pipeline may read ({allowed}). "
                    f"Please copy {what} into one of them and give that path.")


def resolve_raw_path(value: str, data_roots: list[str], *, cwd: str | Path | None = None) -> Path:
    """The real path of a raw folder named in a sheet, if it lies inside a data root.

    Relative paths are taken relative to `cwd` if given (a maintainer typing a path),
    then to each data root in turn. Symbolic links are followed before the check, so
    a link pointing out of the roots is refused.
    """
    value = _cell_path(value, "raw_path", "Please give the folder that holds the raw recording files.")
    shown = quoted(value, 80)
    bases = ([cwd] if cwd is not None else []) + [os.path.realpath(r) for r in data_roots]
    try:
        inside = _real_paths_inside(_candidates(value, bases), data_roots)
        for real in inside:
            if real.is_dir():
                return real
            if real.exists():
                raise RowError(f"The raw_path '{shown}' is a file; please give the folder that holds the recording files.")
    except OSError as e:  # a name too long for the file system, a folder we may not open ...
        raise RowError(f"The raw_path '{shown}' cannot be used ({e.strerror or e}). Please check it.") from None
    if inside:
        raise RowError(f"The raw_path '{shown}' does not exist. Please check the spelling and that the data has been copied.")
    raise _outside_roots(f"The raw_path '{shown}'", data_roots, "the data")


TRACKING_SUFFIX = ".csv"


def resolve_tracking_file(value: str, raw_folder: str | Path, data_roots: list[str], *,
                          cwd: str | Path | None = None) -> str:
    """The real path of the DeepLabCut CSV a `tracking` cell names ('' for an empty cell:
    the raw folder's own tracking, if any, is used), if it is a readable .csv file inside
    a data root.

    A relative path is taken relative to `cwd` if given (a maintainer typing a path),
    then to the row's raw folder (already checked). Links and `..` are resolved before
    the check, as for the raw_path.
    """
    if not (value or "").strip():
        return ""
    value = _cell_path(value, "tracking file", "")
    shown = quoted(value, 200)  # a video's folder is often deep, and its file's name is what tells
    bases = ([cwd] if cwd is not None else []) + [raw_folder]
    looked = "" if os.path.isabs(value) else f" (looked for it in the raw folder {raw_folder})"
    try:
        inside = _real_paths_inside(_candidates(value, bases), data_roots)
        real = next((p for p in inside if p.exists()), None)
        if real is None and inside:
            raise RowError(f"The tracking file '{shown}' was not found{looked}. Please check the spelling and that "
                           "the file has been copied.")
        if real is None:
            raise _outside_roots(f"The tracking file '{shown}'", data_roots, "it")
        if real.is_dir():
            raise RowError(f"The tracking file '{shown}' is a folder; please give the DeepLabCut .csv file in it.")
        if not real.is_file():  # a pipe or a device: opening it could wait for ever
            raise RowError(f"The tracking file '{shown}' is not a regular file; please give DeepLabCut's .csv file.")
        if real.suffix.lower() != TRACKING_SUFFIX:  # the file that is read, whatever a link is called
            raise RowError(f"The tracking file '{shown}' is not a .csv file; please give the CSV that DeepLabCut "
                           "wrote for the video (analyze_videos with save_as_csv=True).")
        with open(real, "rb") as f:
            f.read(1)
    except OSError as e:  # not allowed to read it, a name too long ...
        raise RowError(f"The tracking file '{shown}' cannot be read ({e.strerror or e}). Please check it, or ask a "
                       "maintainer to let the pipeline read it.") from None
    return str(real)


def tracking_cell_path(value: str, raw_folder: str | Path) -> str | None:
    """What `resolve_tracking_file` would return for a cell, without checking anything:
    for telling whether a processed row's cell still names the file it was processed
    with. None: the cell cannot name a file at all."""
    value = (value or "").strip()
    if not value:
        return ""
    try:
        return str(Path(os.path.realpath(os.path.expanduser(_candidates(value, [raw_folder])[0]))))
    except (OSError, ValueError):  # a null character, a name too long
        return None


class Registry:
    """state/recordings.tsv, read and written under a file lock, replaced atomically."""

    def __init__(self, state_dir: str | Path):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / REGISTRY_NAME

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".recordings.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> dict[str, Recording]:
        if not self.path.exists():
            return {}
        with open(self.path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        return {r["recording_id"]: Recording(**{c: r.get(c) or "" for c in COLUMNS}) for r in rows}

    def _write(self, recs: dict[str, Recording]) -> None:
        # The same csv dialect as read(): a note with quotes, tabs or newlines survives.
        out = io.StringIO()
        w = csv.writer(out, delimiter="\t", lineterminator="\n")
        w.writerow(COLUMNS)
        for rec in recs.values():
            w.writerow([str(getattr(rec, c)) for c in COLUMNS])
        write_text_atomic(self.path, out.getvalue())

    def add(self, rec: Recording, *, replace: bool = False) -> Recording:
        """Register `rec`. An id registered for other data is refused unless `replace`;
        the same data registered again only takes its new sleep model and tracking file."""
        with self.locked():
            recs = self.read()
            old = recs.get(rec.recording_id)
            if old and not replace and (old.raw_path != rec.raw_path or old.animal != rec.animal):
                raise RowError(id_taken_message(rec.recording_id, old, "or give --replace to replace it"))
            if old and not replace:
                if (old.sleep_model, old.tracking) != (rec.sleep_model, rec.tracking):
                    old.sleep_model, old.tracking = rec.sleep_model, rec.tracking
                    self._write(recs)
                return old
            rec.registered_at = rec.registered_at or datetime.now().astimezone().isoformat(timespec="seconds")
            recs[rec.recording_id] = rec
            self._write(recs)
            return rec


def id_taken_message(recording_id: str, old: Recording, how_to_replace: str | None = None) -> str:
    """The one sentence for an id registered for other data; `how_to_replace` fits a
    reader who may replace it (a maintainer's --replace). A sheet row gets none: its
    rerun would overwrite the other recording's published results."""
    taken = (f"The recording id '{recording_id}' is already used for another recording (animal {old.animal}, "
             f"raw folder {quoted(Path(old.raw_path).name)})")
    if how_to_replace:
        return f"{taken}. Please choose a different id, {how_to_replace}."
    return f"{taken}, whose results are kept. Please give this row a different id."


def new_run_id() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex()
