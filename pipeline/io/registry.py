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


def resolve_raw_path(value: str, data_roots: list[str], *, cwd: str | Path | None = None) -> Path:
    """The real path of a raw folder named in a sheet, if it lies inside a data root.

    Relative paths are taken relative to `cwd` if given (a maintainer typing a path),
    then to each data root in turn. Symbolic links are followed before the check, so
    a link pointing out of the roots is refused.
    """
    value = (value or "").strip()
    if not value:
        raise RowError("The raw_path is empty. Please give the folder that holds the raw recording files.")
    if "\x00" in value:
        raise RowError("The raw_path contains an invalid character.")
    roots = [Path(os.path.realpath(r)) for r in data_roots]
    if os.path.isabs(value):
        candidates = [Path(value)]
    else:
        candidates = ([Path(cwd) / value] if cwd is not None else []) + [r / value for r in roots]
    shown = quoted(value, 80)
    inside_any = False
    try:
        for cand in candidates:
            real = Path(os.path.realpath(os.path.expanduser(cand)))
            if not any(real == r or real.is_relative_to(r) for r in roots):
                continue
            inside_any = True
            if real.is_dir():
                return real
            if real.exists():
                raise RowError(f"The raw_path '{shown}' is a file; please give the folder that holds the recording files.")
    except OSError as e:  # a name too long for the file system, a folder we may not open ...
        raise RowError(f"The raw_path '{shown}' cannot be used ({e.strerror or e}). Please check it.") from None
    if inside_any:
        raise RowError(f"The raw_path '{shown}' does not exist. Please check the spelling and that the data has been copied.")
    allowed = ", ".join(str(r) for r in roots)
    raise RowError(
        f"The raw_path '{shown}' is outside the folders the pipeline may read ({allowed}). "
        "Please copy the data into one of them and give that path."
    )


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
        the same data registered again only takes its new sleep model choice."""
        with self.locked():
            recs = self.read()
            old = recs.get(rec.recording_id)
            if old and not replace and (old.raw_path != rec.raw_path or old.animal != rec.animal):
                raise RowError(id_taken_message(rec.recording_id, old, "or give --replace to replace it"))
            if old and not replace:
                if old.sleep_model != rec.sleep_model:
                    old.sleep_model = rec.sleep_model
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
