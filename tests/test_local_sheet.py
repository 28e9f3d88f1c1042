"""The local CSV sheet: rows found by who they are, people's edits never lost."""

from __future__ import annotations

import csv
import time

import pytest

from pipeline.sheets import COLUMNS, row_key
from pipeline.sheets.local_csv import LocalCsvSheet


def write(path, rows, header=COLUMNS):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=header, lineterminator="\r\n", extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)


def test_missing_sheet_is_created_with_the_documented_columns(tmp_path):
    sheet = LocalCsvSheet(tmp_path / "sheet.csv")
    assert sheet.read_rows() == []
    assert (tmp_path / "sheet.csv").read_text().strip() == ",".join(COLUMNS)


def test_updates_follow_rows_that_were_moved_and_keep_everything_else(tmp_path):
    path = tmp_path / "sheet.csv"
    rows = [{"recording_id": "a", "animal": "m1", "raw_path": "p/a", "notes": "x"},
            {"recording_id": "b", "animal": "m1", "raw_path": "p/b", "notes": "y"}]
    # A person's own extra column must survive.
    write(path, rows, header=COLUMNS + ["comments"])
    sheet = LocalCsvSheet(path)
    seen = sheet.read_rows()
    key_a = row_key(seen[0])
    # Between the poller's read and its write, the person sorts rows and adds one.
    moved = [{"recording_id": "new", "animal": "m2", "raw_path": "p/new", "comments": "mine"},
             {**rows[1], "comments": "keep"}, {**rows[0], "notes": "edited"}]
    write(path, moved, header=COLUMNS + ["comments"])
    assert sheet.apply_updates([(key_a, {"status": "done", "message": "ok"})]) == 1
    after = sheet.read_rows()
    assert [r["recording_id"] for r in after] == ["new", "b", "a"]
    assert after[2]["status"] == "done" and after[2]["notes"] == "edited"
    assert after[1]["status"] == "" and after[1]["comments"] == "keep"
    assert after[0]["comments"] == "mine"


def test_an_edit_saved_during_the_write_is_not_overwritten(tmp_path):
    """The file changes between the poller's re-read and its replace: it must try again."""
    path = tmp_path / "sheet.csv"
    write(path, [{"recording_id": "a", "animal": "m", "raw_path": "p"}])

    class EditedDuringWrite(LocalCsvSheet):
        edits = 0

        def _read_version(self):
            version = super()._read_version()
            if self.edits == 0:
                # Someone saves a new row right after our read.
                self.edits += 1
                with open(self.path, "a", newline="", encoding="utf-8") as f:
                    f.write("b,m,q,,,,,,,,\r\n")
            return version

    sheet = EditedDuringWrite(path)
    sheet.apply_updates([(("a", "m", "p"), {"status": "queued"})])
    rows = LocalCsvSheet(path).read_rows()
    assert [r["recording_id"] for r in rows] == ["a", "b"]
    assert rows[0]["status"] == "queued"


@pytest.mark.parametrize("how", ["replaces the file", "writes into the file"])
def test_a_save_between_the_last_check_and_the_swap_is_put_back(tmp_path, how):
    """The narrowest window: the check found the file unchanged, then a program saves
    before the new file takes its name. The person's version must be what stays."""
    path = tmp_path / "sheet.csv"
    write(path, [{"recording_id": "a", "animal": "m", "raw_path": "p"}])
    theirs = path.read_bytes() + b"b,m,q,,,,,,,,\r\n"

    class SavedAfterTheCheck(LocalCsvSheet):
        saves = 0

        def _is_version(self, p, version):
            same = super()._is_version(p, version)
            if same and p == self.path and self.saves == 0:
                self.saves += 1
                if how == "replaces the file":
                    (tmp_path / "saved.tmp").write_bytes(theirs)
                    (tmp_path / "saved.tmp").replace(path)
                else:
                    time.sleep(0.01)  # a later time stamp, as a real save has
                    with open(path, "r+b") as f:
                        f.write(theirs)
            return same

    sheet = SavedAfterTheCheck(path)
    assert sheet.apply_updates([(("a", "m", "p"), {"status": "queued"})]) == 1
    rows = LocalCsvSheet(path).read_rows()
    assert [r["recording_id"] for r in rows] == ["a", "b"], "the person's save was lost"
    assert rows[0]["status"] == "queued", "the pipeline writes again onto the saved version"
    assert not list(tmp_path.glob(".sheet.csv.*")), "no temporary file is left behind"


def test_the_pipeline_never_writes_user_columns(tmp_path):
    path = tmp_path / "sheet.csv"
    write(path, [{"recording_id": "a", "animal": "m", "raw_path": "p"}])
    with pytest.raises(ValueError, match="never writes the user column raw_path"):
        LocalCsvSheet(path).apply_updates([(("a", "m", "p"), {"raw_path": "/etc"})])
    assert LocalCsvSheet(path).read_rows()[0]["raw_path"] == "p"


def test_cells_with_commas_quotes_and_newlines_survive(tmp_path):
    path = tmp_path / "sheet.csv"
    note = 'said "hello", then\nleft'
    write(path, [{"recording_id": "a", "animal": "m", "raw_path": "p", "notes": note}])
    sheet = LocalCsvSheet(path)
    sheet.apply_updates([(("a", "m", "p"), {"message": 'The raw_path "x, y" is odd'})])
    row = sheet.read_rows()[0]
    assert row["notes"] == note and row["message"] == 'The raw_path "x, y" is odd'


def test_where_names_cannot_be_exchanged_the_checked_replace_still_writes(tmp_path, monkeypatch):
    """NFS or SMB: no atomic exchange of names; the check before the rename still holds."""
    import pipeline.sheets.local_csv as local_csv

    monkeypatch.setattr(local_csv, "_exchange", lambda a, b: False)
    path = tmp_path / "sheet.csv"
    write(path, [{"recording_id": "a", "animal": "m", "raw_path": "p", "notes": "x"}])
    sheet = LocalCsvSheet(path)
    assert sheet.apply_updates([(("a", "m", "p"), {"status": "done"})]) == 1
    assert sheet.read_rows()[0]["status"] == "done" and sheet.read_rows()[0]["notes"] == "x"
    assert not list(tmp_path.glob(".sheet.csv.*"))
