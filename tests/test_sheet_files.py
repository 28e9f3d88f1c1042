"""The local sheet as spreadsheet programs leave it, through `ephys poll` with the
stand-in workflow (tests/fake_workflow.py): files saved by LibreOffice in other
delimiters and encodings, files caught half written, status words people type. What a
person sees (the row's cells, the command's one line) and that nothing of theirs is lost,
byte for byte."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.io.registry import Registry

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "data" / "sheets"
PIPELINE = ["Status", "Progress", "Message", "Results link", "Updated", "Run ID"]

# `ephys poll ARGS` in its own process, the stand-in workflow as its executor.
POLL = (
    "import sys\n"
    f"sys.path.insert(0, {str(TESTS)!r})\n"
    "import pipeline.poller\n"
    "from fake_workflow import FakeWorkflowExecutor\n"
    "pipeline.poller.make_executor = FakeWorkflowExecutor\n"
    "from pipeline.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def ephys_poll(project, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", POLL, "--config", str(project.config_path), "poll", *args],
                          cwd=project.dir, capture_output=True, text=True, timeout=120)


@pytest.fixture
def raw(project):
    for name in ("rec1", "rec2"):
        (project.raw / name).mkdir()
    return project


def registered(project) -> set[str]:
    return set(Registry(project.dir / "state").read())


def read_csv(data: bytes, encoding: str, delimiter: str) -> list[list[str]]:
    text = data.decode(encoding)
    return list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), delimiter=delimiter))


def lines(data: bytes, ending: bytes) -> list[bytes]:
    assert data.endswith(ending)
    parts = data[:-len(ending)].split(ending)
    assert all(b"\r" not in p and b"\n" not in p for p in parts), "one kind of line ending throughout"
    return parts


# name, encoding, delimiter, line ending, a byte-order mark
SAVED = [
    ("libreoffice-semicolon-utf8.csv", "utf-8", ";", b"\n", False),
    ("libreoffice-comma-cp1252-quoted.csv", "cp1252", ",", b"\n", False),
    ("libreoffice-tab-utf8-quoted.csv", "utf-8", "\t", b"\n", False),
]


@pytest.mark.parametrize("name, encoding, delimiter, ending, bom", SAVED)
def test_a_file_libreoffice_saved_is_used_and_only_pipeline_cells_change(raw, name, encoding, delimiter, ending, bom):
    project = raw
    original = (FIXTURES / name).read_bytes()
    project.sheet.write_bytes(original)
    proc = ephys_poll(project, "--until-done", "--every", "0.2")
    assert proc.returncode == 0, proc.stderr
    after = project.sheet.read_bytes()

    # The person sees: both recordings done (`new` typed in status was taken as a
    # request), the wrong path answered in words.
    rows = read_csv(after, encoding, delimiter)
    header = rows[0]
    col = {label: header.index(label) for label in header}
    assert header == read_csv(original, encoding, delimiter)[0], "no column is added when all are found"
    by_id = {r[0]: r for r in rows[1:]}
    assert by_id["m1-day1"][col["Status"]] == "done"
    assert by_id["m1-day1"][col["Message"]].startswith("Finished: ")
    assert by_id["m2-day1"][col["Status"]] == "done"
    assert by_id["m3-day1"][col["Status"]] == "invalid"
    assert by_id["m3-day1"][col["Message"]] == ("The raw_path 'does-not-exist' does not exist. Please check the "
                                                "spelling and that the data has been copied.")
    assert registered(project) == {"m1-day1", "m2-day1"}

    # Nothing else changed: same encoding and line endings, and on every line the bytes
    # before the pipeline's cells and after them (the lab's Kommentar) are as they were.
    assert after.startswith(b"\xef\xbb\xbf") == bom
    assert after.decode(encoding).count("\N{REPLACEMENT CHARACTER}") == 0
    old_lines, new_lines = lines(original, ending), lines(after, ending)
    assert len(new_lines) == len(old_lines) == 4
    assert new_lines[0] == old_lines[0]
    d = delimiter.encode()
    for old, new in zip(old_lines[1:], new_lines[1:]):
        # Neither the last cell (Kommentar) nor Status holds a delimiter; the other
        # pipeline cells are empty before the first poll.
        head, tail = old.rsplit(d, 1)
        assert head.endswith(d * (len(PIPELINE) - 1))
        head = head[:-(len(PIPELINE) - 1)].rsplit(d, 1)[0]
        assert new.startswith(head + d) and new.endswith(d + tail), (old, new)
    for old, new in zip(read_csv(original, encoding, delimiter), rows):
        assert [c for c, label in zip(old, header) if label not in PIPELINE] == \
               [c for c, label in zip(new, header) if label not in PIPELINE]


def test_a_header_typed_by_hand_cells_beyond_it_a_bom_and_crlf_survive(raw):
    project = raw
    original = (FIXTURES / "handmade-bom-crlf-beyond-header.csv").read_bytes()
    project.sheet.write_bytes(original)
    proc = ephys_poll(project, "--until-done", "--every", "0.2")
    assert proc.returncode == 0, proc.stderr
    after = project.sheet.read_bytes()
    assert after.startswith(b"\xef\xbb\xbf")
    old_lines, new_lines = lines(original, b"\r\n"), lines(after, b"\r\n")
    assert len(new_lines) == len(old_lines)
    # The pipeline's columns come after the widest line: every cell a person typed stays
    # where it was, under no pipeline label.
    assert new_lines[0] == old_lines[0] + b",,,," + b",".join(
        c.encode() for c in ["status", "progress", "message", "results_link", "updated", "run_id"])
    for old, new in zip(old_lines, new_lines):
        old = old.replace(b",ja", b",")  # the rerun tick, cleared when the run starts
        assert new.startswith(old), (old, new)
    assert new_lines[3] == old_lines[3], "a blank line stays as it is"
    rows = read_csv(after, "utf-8", ",")
    assert rows[1][5:8] == ["beyond 1", "beyond, 2", ""] and rows[4][7] == "x"
    assert rows[1][8] == "done" and rows[2][8] == "done", "'Recording-ID' is recording_id, 'ja' is a yes"
    assert rows[2][4] == "", "the rerun tick is cleared"
    assert rows[4][8] == "invalid"
    assert len(rows[0]) == 14 and all(len(r) <= 14 for r in rows)


def test_a_column_that_cannot_be_found_is_named_once_and_the_sheet_is_left_alone(raw):
    project = raw
    original = b"Rec,Animal,raw path,notes\r\nm1-day1,m1,rec1,\r\n"
    project.sheet.write_bytes(original)
    proc = ephys_poll(project, "--once")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"ERROR: the sheet {project.sheet} has no column 'recording_id' in its first line (the labels found are "
        "'Rec', 'Animal', 'raw path', 'notes'); name a column 'recording_id' (case, spaces, '_' and '-' do not "
        "matter) and the next poll uses the sheet.")
    assert "Traceback" not in proc.stderr
    assert project.sheet.read_bytes() == original and not registered(project)


def test_a_message_the_file_s_code_page_cannot_hold_is_written_with_question_marks(raw):
    from pipeline.sheets.local_csv import LocalCsvSheet

    project = raw
    project.sheet.write_bytes("recording_id;animal;raw_path;notes\r\nm1;m1;rec1;Grüße\r\n".encode("cp1252"))
    sheet = LocalCsvSheet(project.sheet)
    assert sheet.read_rows()[0]["notes"] == "Grüße"
    sheet.apply_updates([(("m1", "m1", "rec1"), {"message": "Tag → Nacht ✓ (Grüße)"})])
    assert project.sheet.read_bytes() == (
        "recording_id;animal;raw_path;notes;status;progress;message;results_link;updated;run_id\r\n"
        "m1;m1;rec1;Grüße;;;Tag ? Nacht ? (Grüße)\r\n").encode("cp1252")


# -- a file caught while it is being written --------------------------------------------
HEADER = "recording_id,animal,raw_path,notes\r\n"


@pytest.mark.parametrize("half, why", [
    ("m2,m1,re", "ends in the middle of a line"),
    ('m2,m1,rec2,"a note that goes\r\non and', "ends inside a quoted cell (a quoted cell opened on line 3 is "
                                               "never closed)"),
    ("", None),  # the file was cut to nothing before a program writes it again
])
def test_a_file_caught_half_written_is_left_alone_until_it_is_complete(raw, half, why):
    project = raw
    if half:
        project.sheet.write_bytes((HEADER + "m1,m1,rec1,first\r\n" + half).encode())
    else:
        project.sheet.write_bytes(b"")
    before = project.sheet.read_bytes()
    proc = ephys_poll(project, "--once")
    assert proc.returncode == 2, proc.stderr
    why = why or "is empty"
    assert proc.stderr.strip().splitlines()[-1] == (
        f"ERROR: (temporary) the sheet {project.sheet} {why}; it looks like it is being saved, so this poll leaves "
        "it alone and the next one tries again.")
    assert project.sheet.read_bytes() == before, "nothing written"
    assert not registered(project), "nothing registered, not even the complete first line"

    # The save completes; the next poll uses the whole file.
    project.sheet.write_bytes((HEADER + "m1,m1,rec1,first\r\nm2,m1,rec2,\"a note that goes\r\non\"\r\n").encode())
    proc = ephys_poll(project, "--until-done", "--every", "0.2")
    assert proc.returncode == 0, proc.stderr
    assert registered(project) == {"m1", "m2"}
    rows = project.read_sheet()
    assert [(r["recording_id"], r["status"], r["notes"]) for r in rows] == [
        ("m1", "done", "first"), ("m2", "done", "a note that goes\r\non")]


def test_a_file_whose_author_left_out_the_last_newline_is_used_once_it_is_old(raw):
    project = raw
    project.sheet.write_bytes((HEADER + "m1,m1,rec1,no newline at the end").encode())
    long_ago = time.time() - 60
    os.utime(project.sheet, (long_ago, long_ago))
    proc = ephys_poll(project, "--until-done", "--every", "0.2")
    assert proc.returncode == 0, proc.stderr
    assert project.read_sheet()[0]["status"] == "done"
    assert project.sheet.read_bytes().startswith((HEADER.rstrip() + ",status").encode())


# -- status words people type -------------------------------------------------------------
def test_words_people_type_in_status_and_rerun_are_taken_or_answered(raw):
    project = raw
    (project.raw / "rec3").mkdir()
    project.write_sheet([
        {"recording_id": "new-word", "animal": "m1", "raw_path": "rec1", "status": "new"},
        {"recording_id": "todo", "animal": "m1", "raw_path": "rec2", "status": "please run"},
        {"recording_id": "copied", "animal": "m1", "raw_path": "rec3", "status": "done", "progress": "100%"},
    ])
    proc = ephys_poll(project, "--until-done", "--every", "0.2")
    assert proc.returncode == 0, proc.stderr
    rows = {r["recording_id"]: r for r in project.read_sheet()}
    assert rows["new-word"]["status"] == rows["todo"]["status"] == "done"
    # A row copied with its status: the pipeline never processed it, and says so.
    assert rows["copied"]["message"] == (
        "This row says 'done', but the pipeline has no record of processing it (copied from another row?). To "
        "process it, write yes (or x, ja, oui, sí, TRUE, a ticked box) in rerun, or empty the status cell.")
    assert registered(project) == {"new-word", "todo"}

    # On processed rows: `ja` is a yes; a word nobody could guess is answered; a status
    # typed over a processed row is answered, not taken as a request.
    project.edit_row(0, rerun="ja")
    project.edit_row(1, rerun="vielleicht")
    project.edit_row(2, rerun="Oui")
    first_run = rows["new-word"]["run_id"]
    proc = ephys_poll(project, "--until-done", "--every", "0.2")
    assert proc.returncode == 0, proc.stderr
    rows = {r["recording_id"]: r for r in project.read_sheet()}
    assert rows["new-word"]["status"] == "done" and rows["new-word"]["run_id"] != first_run
    assert rows["new-word"]["rerun"] == ""
    assert rows["todo"]["message"] == (
        "The rerun cell says 'vielleicht', which the pipeline does not understand: to process this row again, "
        "write yes (or x, ja, oui, sí, TRUE, a ticked box) in rerun; otherwise leave it empty.")
    assert rows["copied"]["status"] == "done" and "copied" in registered(project)

    project.edit_row(1, rerun="", status="todo")
    proc = ephys_poll(project, "--once")
    assert proc.returncode == 0, proc.stderr
    row = project.read_sheet()[1]
    assert row["status"] == "todo" and row["message"] == (
        "The status 'todo' was typed by hand; the pipeline fills in status itself. To process this row again, "
        "write yes (or x, ja, oui, sí, TRUE, a ticked box) in rerun.")
    sheet = project.sheet.read_bytes()
    assert ephys_poll(project, "--once").returncode == 0
    assert project.sheet.read_bytes() == sheet, "an answer is written once, not at every poll"


# A program saves the sheet while the pipeline reads it: the hook fires right after the
# pipeline's read of the file's bytes, before it looks at the file's size and time again.
SAVED_DURING_READ = {
    # it writes on at the end (a save in place, not finished when the read began)
    "grows": "with builtins.open(SHEET, 'ab') as g:\n        g.write(LINE)\n",
    # same bytes, a new time: a program rewrote the file in place with what was there
    "touched": "st = os.stat(SHEET)\n    os.utime(SHEET, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))\n",
    # saved as a new file renamed over the old one, as most programs save
    "replaced": ("data = builtins.open(SHEET, 'rb').read() + LINE\n    builtins.open(SHEET + '.new', 'wb').write(data)\n"
                 "    os.replace(SHEET + '.new', SHEET)\n"),
}


def poll_while_saved(project, how: str) -> subprocess.CompletedProcess:
    """`ephys poll --once`, with every read of the sheet followed by a save of it."""
    hook = (
        "import builtins, os\n"
        "import pipeline.sheets.local_csv as local_csv\n"
        f"SHEET, LINE = {str(project.sheet)!r}, b'm2,m1,rec2,\\r\\n'\n"
        "class SavedWhileRead:\n"
        "    def __init__(self, f):\n        self.f = f\n"
        "    def __enter__(self):\n        return self\n"
        "    def __exit__(self, *exc):\n        return self.f.__exit__(*exc)\n"
        "    def fileno(self):\n        return self.f.fileno()\n"
        "    def read(self, *args):\n"
        "        data = self.f.read(*args)\n"
        "        save()\n"
        "        return data\n"
        "def save():\n"
        f"    {SAVED_DURING_READ[how]}"
        "def sheet_open(path, mode='r', *args, **kwargs):\n"
        "    f = builtins.open(path, mode, *args, **kwargs)\n"
        "    return SavedWhileRead(f) if 'r' in mode and os.path.abspath(path) == SHEET else f\n"
        "local_csv.open = sheet_open\n"
    )
    script = POLL.replace("from pipeline.cli import main\n", hook + "from pipeline.cli import main\n")
    return subprocess.run([sys.executable, "-c", script, "--config", str(project.config_path), "poll", "--once"],
                          cwd=project.dir, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("how", list(SAVED_DURING_READ))
def test_a_file_that_changes_while_it_is_read_is_left_alone(raw, how):
    project = raw
    project.sheet.write_bytes((HEADER + "m1,m1,rec1,first\r\n").encode())
    long_ago = time.time() - 60  # old enough that only the change can stop the poll
    os.utime(project.sheet, (long_ago, long_ago))
    before = project.sheet.read_bytes()
    proc = poll_while_saved(project, how)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"ERROR: (temporary) the sheet {project.sheet} changed while the pipeline read it; it looks like it is "
        "being saved, so this poll leaves it alone and the next one tries again.")
    saved = before + (b"" if how == "touched" else b"m2,m1,rec2,\r\n")
    assert project.sheet.read_bytes() == saved, "the save is what stays: the pipeline wrote nothing"
    assert not registered(project), "nothing registered, not even the line read before the save"
