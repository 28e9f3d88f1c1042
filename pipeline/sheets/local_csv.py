"""The local sheet: a CSV file that people edit by hand while the poller runs.

Rows are found by who they are (recording_id, animal, raw_path), never by their
position, because people sort and insert rows. Only the pipeline columns of a row are
ever written. A write re-reads the file, applies the changes, and replaces it only if
nobody saved it in between (otherwise it tries again), so no edit is lost.
"""

from __future__ import annotations

import csv
import hashlib
import io
import time
from pathlib import Path

from pipeline.io.atomic import write_text_atomic
from pipeline.sheets import COLUMNS, Row, SheetBusy, Update, check_writable, row_key


def open_sheet(config: dict) -> "LocalCsvSheet":
    return LocalCsvSheet(config["sheet"]["path"])


class LocalCsvSheet:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def ensure_exists(self) -> None:
        if not self.path.exists():
            write_text_atomic(self.path, ",".join(COLUMNS) + "\r\n")

    def _read_text(self) -> str:
        with open(self.path, newline="", encoding="utf-8-sig") as f:
            return f.read()

    @staticmethod
    def _parse(text: str) -> tuple[list[str], list[dict]]:
        reader = csv.DictReader(io.StringIO(text))
        header = list(reader.fieldnames or [])
        rows = [{k: (v if v is not None else "") for k, v in r.items() if k is not None} for r in reader]
        return header, rows

    def read_rows(self) -> list[Row]:
        """All rows, with every known column present (empty where absent)."""
        self.ensure_exists()
        _, rows = self._parse(self._read_text())
        return [{c: (r.get(c) or "") for c in COLUMNS} | r for r in rows
                if any((v or "").strip() for v in r.values())]

    def apply_updates(self, updates: list[Update], *, attempts: int = 20) -> int:
        """Write pipeline-column changes to the rows with the given keys; one write.

        Returns the number of rows changed. Keys with no matching row (the person
        deleted or retyped it) are skipped.
        """
        if not updates:
            return 0
        for _, values in updates:
            check_writable(values)
        self.ensure_exists()
        for _ in range(attempts):
            text = self._read_text()
            digest = hashlib.sha256(text.encode()).digest()
            header, rows = self._parse(text)
            for col in COLUMNS:
                if col not in header:
                    header.append(col)
            changed = 0
            for key, values in updates:
                for row in rows:
                    if row_key(row) == key:
                        row.update(values)
                        changed += 1
            out = io.StringIO()
            w = csv.DictWriter(out, fieldnames=header, extrasaction="ignore", lineterminator="\r\n")
            w.writeheader()
            for row in rows:
                w.writerow({c: row.get(c, "") for c in header})
            # Replace the file only if nobody saved it since we read it.
            if hashlib.sha256(self._read_text().encode()).digest() != digest:
                time.sleep(0.05)
                continue
            write_text_atomic(self.path, out.getvalue())
            return changed
        raise SheetBusy(f"the sheet {self.path} kept changing while the pipeline tried to write to it; "
                        "it will try again at the next poll.")

    def append_row(self, values: Row) -> None:
        """Add a row at the end, as a person saving the sheet would."""
        self.ensure_exists()
        text = self._read_text()
        header, _ = self._parse(text)
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerow([values.get(c, "") for c in header])
        sep = "" if not text or text.endswith(("\n", "\r")) else "\r\n"
        write_text_atomic(self.path, text + sep + out.getvalue())
