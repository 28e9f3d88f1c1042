"""The sheet lab members add recordings to: its columns, how a row is identified, the
interface every back-end implements, and the factory that picks one from the config.

Only the poller writes to a sheet: one read of every row per poll, then one batched
write of that poll's changes to rows found by who they are (`row_key`), never by a row
number remembered from the read, because people sort and insert rows meanwhile.
"""

from __future__ import annotations

import re
from typing import Protocol

from pipeline.config import backend_module
from pipeline.errors import BackendUnavailable

# Columns a lab member fills in; the pipeline only ever clears `rerun`. A sheet may lack
# any but REQUIRED_COLUMNS (read as empty; never added by the pipeline): `sleep_model`
# chooses a trained sleep model per recording, empty meaning the config's sleep.model;
# `tracking` names the DeepLabCut CSV of the recording's video, empty meaning the one in
# its raw folder, if any.
USER_COLUMNS = ["recording_id", "animal", "raw_path", "sleep_model", "tracking", "notes", "rerun"]
# Columns only the pipeline writes.
PIPELINE_COLUMNS = ["status", "progress", "message", "results_link", "updated", "run_id"]
COLUMNS = USER_COLUMNS + PIPELINE_COLUMNS
# The pipeline may write these (its own columns, and clearing the rerun tick).
WRITABLE_COLUMNS = frozenset(PIPELINE_COLUMNS) | {"rerun"}

RowKey = tuple[str, str, str]
Row = dict[str, str]
Update = tuple[RowKey, dict[str, str]]


# Without these a row cannot be identified (row_key): a header must name them.
REQUIRED_COLUMNS = ["recording_id", "animal", "raw_path"]


def label_key(label: str) -> str:
    """A header label as it is compared: case, spaces, underscores and hyphens aside, so
    that `Recording ID`, `recording_id` and `recording-id` name the same column."""
    return re.sub(r"[\s_\-]+", " ", str(label)).strip().casefold()


def match_header(header: list[str], labels: dict[str, str]) -> dict[str, int]:
    """Column name -> index of the first header cell whose label matches `labels[name]`;
    names no cell matches are left out (the caller says which it cannot do without)."""
    first: dict[str, int] = {}
    for j, label in enumerate(header):
        first.setdefault(label_key(label), j)
    return {col: first[label_key(label)] for col, label in labels.items() if label_key(label) in first}


def row_key(row: Row) -> RowKey:
    """What identifies a row to the pipeline: the cells a person typed to describe it."""
    return tuple((row.get(c) or "").strip() for c in ("recording_id", "animal", "raw_path"))


class SheetBusy(BackendUnavailable):
    """The sheet kept changing (or was locked) while the pipeline tried to write to it."""


class Sheet(Protocol):
    def read_rows(self) -> list[Row]:
        """Every non-empty row, each with all of COLUMNS present ('' where empty).

        Raises BackendUnavailable when the sheet cannot be read now (unreachable, or a
        file caught half saved) and ConfigError when its header lacks a REQUIRED_COLUMNS
        column; either way the poll does nothing, and the next one tries again.
        """

    def apply_updates(self, updates: list[Update]) -> int:
        """Write pipeline-column values to the rows with the given keys, in one write.

        Returns the number of rows changed; keys that match no row (deleted or retyped
        meanwhile) are skipped. Raises ValueError for a column outside WRITABLE_COLUMNS
        (a bug) and BackendUnavailable when the sheet cannot be written now.
        """

    def append_row(self, values: Row) -> None:
        """Add a row as a person would (used by `ephys demo` and tests, never by the poller)."""


# backend name -> module with `open_sheet(config: dict) -> Sheet`
BACKENDS = {"local": "pipeline.sheets.local_csv", "google": "pipeline.sheets.google_sheet"}


def make_sheet(config: dict) -> Sheet:
    return backend_module("sheet", config, BACKENDS).open_sheet(config)


def check_writable(values: dict[str, str]) -> None:
    for col in values:
        if col not in WRITABLE_COLUMNS:
            raise ValueError(f"the pipeline never writes the user column {col}")
