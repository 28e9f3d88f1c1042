"""The local sheet: a CSV file that people edit by hand, in a spreadsheet program or a
text editor, while the poller runs.

Rows are found by who they are (recording_id, animal, raw_path), never by their
position, because people sort and insert rows. Only the pipeline's cells of a row are
ever written, and they are spliced into the file's own text (csv_text.py): the
delimiter, the encoding, the byte-order mark, line endings, quoting and cells beyond the
header all stay byte for byte. Header labels match forgivingly (`Recording ID`).

Nobody's save is lost: a file that looks half written (its last line unfinished, a
quote never closed, its size or time changing while it is read) is not used in this
poll, and a write replaces the file only if it is still the very version the write
started from (see `_replace_if_unchanged` for the split second that remains).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.io.atomic import write_text_atomic
from pipeline.sheets import (COLUMNS, PIPELINE_COLUMNS, REQUIRED_COLUMNS, Row, SheetBusy, Update, check_writable, label_key,
                             match_header, row_key)
from pipeline.sheets.csv_text import CsvText, UnclosedQuote, parse

log = logging.getLogger(__name__)

# A last line without a newline is taken as unfinished while the file is younger than
# this; older, it is a file whose author did not end it with a newline (Notepad does not).
UNFINISHED_LINE_S = 10.0
LABELS = {c: c for c in COLUMNS}
KNOWN = {label_key(c) for c in COLUMNS}


def open_sheet(config: dict) -> "LocalCsvSheet":
    return LocalCsvSheet(config["sheet"]["path"])


@dataclass
class Version:
    """One read of the file: what it was (to tell whether it changed since) and its text."""

    ident: tuple[int, int, int, int]  # device, inode, size, mtime_ns
    digest: bytes
    csv: CsvText
    columns: dict[str, int]


class LocalCsvSheet:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def ensure_exists(self) -> None:
        if not self.path.exists():
            write_text_atomic(self.path, ",".join(COLUMNS) + "\r\n")

    # -- reading -------------------------------------------------------------------------
    def _busy(self, why: str) -> SheetBusy:
        e = SheetBusy(f"the sheet {self.path} {why}; it looks like it is being saved, so this poll leaves it "
                      "alone and the next one tries again.")
        e.why = why
        return e

    def _read_version(self) -> Version:
        """Read the file once; SheetBusy if it looks half written."""
        self.ensure_exists()
        with open(self.path, "rb") as f:
            before = os.fstat(f.fileno())
            raw = f.read()
            after = os.fstat(f.fileno())
        ident = (after.st_dev, after.st_ino, after.st_size, after.st_mtime_ns)
        now = os.stat(self.path)
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(raw) != after.st_size \
                or (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns) != ident:
            raise self._busy("changed while the pipeline read it")
        young = time.time() - after.st_mtime_ns / 1e9 < UNFINISHED_LINE_S
        try:
            text = parse(raw, KNOWN, label_key)
        except UnclosedQuote as e:
            raise self._busy(f"ends inside a quoted cell ({e})") from None
        if young and (not text.records or not text.records[-1].ending):
            raise self._busy("is empty" if not text.records else "ends in the middle of a line")
        header = text.records[0].cells if text.records else []
        columns = match_header(header, LABELS)
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing and any(c.strip() for c in header):
            found = ", ".join(repr(c) for c in header if c.strip()) or "none"
            raise ConfigError(f"the sheet {self.path} has no column {missing[0]!r} in its first line (the labels "
                              f"found are {found}); name a column {missing[0]!r} (case, spaces, '_' and '-' do "
                              "not matter) and the next poll uses the sheet.")
        return Version(ident, hashlib.sha256(raw).digest(), text, columns)

    @staticmethod
    def _rows(version: Version) -> list[tuple[int, Row]]:
        """(record index, row) of every non-blank line below the header."""
        records = version.csv.records
        header = records[0].cells if records else []
        out = []
        for i, rec in enumerate(records[1:], start=1):
            if rec.blank:
                continue
            cells = rec.cells
            row = {c: (cells[j] if j < len(cells) else "") for c, j in version.columns.items()}
            row = {c: row.get(c, "") for c in COLUMNS}
            for j, label in enumerate(header):  # a lab's own columns, by their label
                if label.strip() and label not in row and j < len(cells):
                    row[label] = cells[j]
            out.append((i, row))
        return out

    def read_rows(self) -> list[Row]:
        """All rows, with every known column present (empty where absent)."""
        return [row for _, row in self._rows(self._read_version())]

    # -- writing -------------------------------------------------------------------------
    def apply_updates(self, updates: list[Update], *, attempts: int = 20) -> int:
        """Write pipeline-column changes to the rows with the given keys; one write.

        Returns the number of rows changed. Keys with no matching row (the person
        deleted or retyped it) are skipped. SheetBusy if the file kept changing.
        """
        if not updates:
            return 0
        for _, values in updates:
            check_writable(values)
        why = "kept changing while the pipeline tried to write to it"
        for _ in range(attempts):
            try:
                version = self._read_version()
            except SheetBusy as e:
                why = getattr(e, "why", why)
                time.sleep(0.05)
                continue
            changed, text = self._updated_text(version, updates)
            if text == version.csv.text or self._replace_if_unchanged(version, version.csv.encode(text)):
                return changed
            time.sleep(0.05)
        raise SheetBusy(f"the sheet {self.path} {why}; it will try again at the next poll.")

    @staticmethod
    def _updated_text(version: Version, updates: list[Update]) -> tuple[int, str]:
        """(rows matched, the text with their pipeline cells changed)."""
        columns = dict(version.columns)
        records = version.csv.records
        # A pipeline column the header lacks goes after the widest line, so that no cell
        # a person typed beyond the header ends up under a pipeline label.
        width = max((len(r.cells) for r in records), default=0)
        changes: dict[int, dict[int, str]] = {}
        changed = 0
        rows = LocalCsvSheet._rows(version)
        for key, values in updates:
            for i, row in rows:
                if row_key(row) != key:
                    continue
                changed += 1
                cells = records[i].cells
                for col, value in values.items():
                    if col not in columns and value == "":
                        continue  # a cell that is not there is empty already
                    if col not in columns:  # all of them at once, in their order
                        for missing in [c for c in dict.fromkeys(PIPELINE_COLUMNS + [col]) if c not in columns]:
                            columns[missing] = width
                            changes.setdefault(0, {})[width] = missing
                            width += 1
                    j = columns[col]
                    if (cells[j] if j < len(cells) else "") != value:
                        changes.setdefault(i, {})[j] = value
        return changed, version.csv.with_cells(changes) if changes else version.csv.text

    def _replace_if_unchanged(self, version: Version, data: bytes) -> bool:
        """Put `data` in place of the file if it is still `version`; False if someone saved
        it since (the caller reads it again).

        The new file is complete on disk before the check, and the check is the last
        thing before the swap. Where the file system allows, the swap exchanges the two
        names atomically, so the file it displaced can be checked *after* the swap too: a
        save that slipped in is put back, never lost. What remains is a program that
        writes into the old file in place in the microseconds between that check and the
        removal of the old file's name: its bytes go to a file no longer in the folder.
        """
        with _temporary_beside(self.path) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(OSError):
                os.chmod(tmp, os.stat(self.path).st_mode & 0o7777)  # keep the sheet's permissions
            if not self._is_version(self.path, version):
                return False
            if not _exchange(tmp, self.path):
                os.replace(tmp, self.path)  # this file system cannot exchange names
                return True
            if self._is_version(tmp, version):
                return True  # tmp (now the old file) is removed on leaving
            # Someone saved in the split second before the swap: theirs goes back.
            if not _exchange(tmp, self.path):
                os.replace(tmp, self.path)
            log.warning("the sheet %s was saved while the pipeline wrote to it; the saved version was kept, "
                        "and the pipeline writes again", self.path)
            return False

    @staticmethod
    def _is_version(path: Path, version: Version) -> bool:
        try:
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).digest()
                st = os.fstat(f.fileno())
        except FileNotFoundError:
            return False
        return digest == version.digest and (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == version.ident

    def append_row(self, values: Row) -> None:
        """Add a row at the end, as a person saving the sheet would."""
        version = self._read_version()
        header = version.csv.records[0].cells if version.csv.records else []
        at = {j: c for c, j in version.columns.items()}
        text = version.csv.with_cells({}, new_row=[values.get(at.get(j, ""), "") for j in range(len(header))])
        if not self._replace_if_unchanged(version, version.csv.encode(text)):
            raise SheetBusy(f"the sheet {self.path} changed while a row was added to it; try again.")


@contextlib.contextmanager
def _temporary_beside(target: Path):
    """A temporary file's path in the target's folder (named as pipeline.io.atomic names
    its own, so a stale one is cleared the same way), removed on leaving."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two names atomically (Linux renameat2 RENAME_EXCHANGE); False where the
    system or the file system cannot (NFS, SMB, old kernels)."""
    if _renameat2 is None:
        return False
    at_fdcwd = -100
    if _renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))
