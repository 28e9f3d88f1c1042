"""The poller through the real `ephys poll` and the real Snakemake, on the local sheet.

(The poller's bookkeeping with a stand-in workflow is in test_poller_runs.py.)"""

from __future__ import annotations

import csv
import json
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import tree_checksums
from pipeline.io.lfp import read_lfp

pytestmark = pytest.mark.slow


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["recording_id"]: r for r in rows}


def test_sheet_row_to_published_figures_with_bad_rows_beside_it(project, recording_in, tmp_path):
    raw = recording_in("rec1")
    before = tree_checksums(raw)
    outside = tmp_path / "outside"
    outside.mkdir()
    (project.raw / "escape").symlink_to(outside)
    (project.raw / "a-file.txt").write_text("not a folder")
    project.write_sheet([
        {"recording_id": "rec1", "animal": "m1", "raw_path": str(raw), "notes": "keep this note"},
        {"recording_id": "", "animal": "m1", "raw_path": str(raw), "notes": "no id"},
        {"recording_id": "noraw", "animal": "m1", "raw_path": ""},
        {"recording_id": "bad/id", "animal": "m1", "raw_path": str(raw)},
        {"recording_id": "missing", "animal": "m1", "raw_path": "does-not-exist"},
        {"recording_id": "etc", "animal": "m1", "raw_path": "/etc"},
        {"recording_id": "dots", "animal": "m1", "raw_path": "rec1/../../.."},
        {"recording_id": "link", "animal": "m1", "raw_path": "escape"},
        {"recording_id": "file", "animal": "m1", "raw_path": "a-file.txt"},
        {"recording_id": "twice", "animal": "m1", "raw_path": "rec1"},
        {"recording_id": "twice", "animal": "m2", "raw_path": "rec1"},
    ])
    proc = project.ephys("poll", "--until-done", "--every", "0.5", timeout=900)
    assert proc.returncode == 0, proc.stderr
    rows = project.read_sheet()
    assert [r["recording_id"] for r in rows] == ["rec1", "", "noraw", "bad/id", "missing", "etc", "dots",
                                                 "link", "file", "twice", "twice"], "rows must keep their order"
    good = rows[0]
    assert good["status"] == "done", good
    assert good["notes"] == "keep this note"
    assert good["progress"] == "100%"
    assert "published" in good["message"] and "rem" in good["message"]
    folder = project.dir / "published" / "m1" / "rec1"
    assert good["results_link"] == folder.resolve().as_uri()
    for name in ("overview.png", "channel_qc.png", "report.pdf", "hypnogram.tsv"):
        assert (folder / name).stat().st_size > 1000 or name == "hypnogram.tsv"
    assert (folder / "report.pdf").read_bytes().startswith(b"%PDF")
    assert good["run_id"]

    expected = {
        1: "recording id is empty",
        2: "raw_path is empty",
        3: "can only use letters, digits",
        4: "does not exist",
        5: "outside the folders the pipeline may read",
        6: "outside the folders the pipeline may read",
        7: "outside the folders the pipeline may read",
        8: "is a file",
        9: "used by more than one row",
        10: "used by more than one row",
    }
    for i, phrase in expected.items():
        assert rows[i]["status"] == "invalid", rows[i]
        assert phrase in rows[i]["message"], (i, rows[i]["message"])
        assert "Traceback" not in rows[i]["message"]
    assert tree_checksums(raw) == before, "raw data must never change"
    assert list(outside.iterdir()) == []

    # A second poll does nothing new: no run, and the sheet is byte for byte the same.
    sheet_before = project.sheet.read_bytes()
    logs_before = sorted((project.dir / "logs" / "runs").iterdir())
    proc = project.ephys("poll", "--once")
    assert proc.returncode == 0, proc.stderr
    assert "registered: 0" in proc.stdout
    assert project.sheet.read_bytes() == sheet_before
    assert sorted((project.dir / "logs" / "runs").iterdir()) == logs_before

    status = project.ephys("status", check=True)
    assert "rec1" in status.stdout and "done" in status.stdout


def test_truncated_file_fails_with_its_name_and_leaves_nothing_complete(project, recording_in):
    raw = recording_in("cut")
    victim = raw / "CSC3.ncs"
    size = victim.stat().st_size
    with open(victim, "r+b") as f:
        f.truncate(size - 300)  # the last record is cut short, as in a copy made too early
    before = tree_checksums(raw)
    project.write_sheet([{"recording_id": "cut", "animal": "m1", "raw_path": "cut"}])
    proc = project.ephys("poll", "--until-done", "--every", "0.5", timeout=600)
    assert proc.returncode == 1
    row = project.read_sheet()[0]
    assert row["status"] == "failed"
    assert "CSC3.ncs" in row["message"] and "truncated" in row["message"], row["message"]
    assert row["message"].startswith("Checking the raw files failed:")
    assert "Once the raw files are fixed, tick rerun to process the recording again." in row["message"], row["message"]
    res = project.dir / "results" / "cut"
    assert not (res / "recording.json").exists()
    assert not (res / "published.json").exists()
    assert not (project.dir / "published" / "m1" / "cut").exists()
    assert tree_checksums(raw) == before


def test_a_poll_returns_while_a_recording_converts_the_next_starts_a_row_added_meanwhile_and_a_killed_poller_loses_nothing(
        project, synthetic_recording):
    from pipeline.synth import write_synthetic_recording

    long = project.raw / "long"  # long enough that conversion is still going when we look
    write_synthetic_recording(long, duration_s=360, n_channels=12, sampling_rate=2000.0, seed=5)
    shutil.copytree(synthetic_recording, project.raw / "rec1")
    project.write_sheet([
        {"recording_id": "first", "animal": "m1", "raw_path": "does-not-exist"},
        {"recording_id": "long", "animal": "m1", "raw_path": "long", "notes": "original"},
    ])
    t0 = time.monotonic()
    proc = project.ephys("poll", "--once")
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 10, "a poll must not wait for the run"
    lfp = project.dir / "results" / "long" / "lfp"
    deadline = time.time() + 300
    while time.time() < deadline and not list(lfp.glob("seg*.fif")):
        time.sleep(0.1)
    # While it converts, a person moves the row, edits a note and adds a row at the top.
    rows = project.read_sheet()
    long_row = next(r for r in rows if r["recording_id"] == "long")
    long_row["notes"] = "edited while running"
    others = [r for r in rows if r["recording_id"] != "long"]
    added = {"recording_id": "added-later", "animal": "m2", "raw_path": "rec1", "notes": "new"}
    project.write_sheet([added] + others + [long_row])
    t0 = time.monotonic()
    proc = project.ephys("poll", "--once")
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert took < 10, f"a poll took {took:.1f} s while a recording converts"
    rows = by_id(project.read_sheet())
    assert rows["long"]["status"] == "running", rows["long"]
    assert "Converting to LFP (" in rows["long"]["progress"] and "/6 segments)" in rows["long"]["progress"]
    assert rows["added-later"]["status"] == "running", "a row added meanwhile is started by the next poll"

    # A poller killed while it waits for them (power loss of the poller alone, the OOM
    # killer ...) loses nothing: the runs go on, and the next poll finds them.
    poller = subprocess.Popen([sys.executable, "-m", "pipeline", "--config", str(project.config_path), "poll",
                               "--until-done", "--every", "0.5"], cwd=project.dir,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    poller.send_signal(signal.SIGKILL)
    poller.wait()
    runs = {p.stem: json.loads(p.read_text()) for p in (project.dir / "state" / "runs").glob("*.json")}
    assert len(runs) == 2
    again = project.ephys("poll", "--once")
    assert again.returncode == 0, again.stderr
    assert "registered: 0" in again.stdout, "the runs must not be started a second time"
    proc = project.ephys("poll", "--until-done", "--every", "0.5", timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert {p.stem for p in (project.dir / "state" / "runs").glob("*.json")} == set(runs)
    rows = project.read_sheet()
    assert [r["recording_id"] for r in rows] == ["added-later", "first", "long"]
    assert rows[2]["status"] == "done" and rows[2]["notes"] == "edited while running"
    assert rows[0]["status"] == "done" and rows[0]["notes"] == "new"
    assert rows[1]["status"] == "invalid"
    info = json.loads((project.dir / "results" / "long" / "recording.json").read_text())
    lfp_all = read_lfp([lfp / f"seg{k}.fif" for k in range(len(info["segments"]))])
    assert lfp_all.n_times == info["n_lfp_samples"] and not list(lfp.glob(".*tmp*"))


def test_second_poller_refuses_to_start(project):
    from pipeline.errors import PipelineError
    from pipeline.poller import poller_lock

    with poller_lock(project.dir):
        proc = project.ephys("poll", "--once")
        assert proc.returncode == 2
        assert "another poller is already running" in proc.stderr
        assert "Traceback" not in proc.stderr
        with pytest.raises(PipelineError):
            with poller_lock(project.dir):
                pass
    # Released: a poll on an empty sheet now runs and does nothing.
    proc = project.ephys("poll", "--once")
    assert proc.returncode == 0, proc.stderr


def test_continuous_poller_picks_up_a_new_row_and_stops_cleanly_on_sigterm(project):
    """The service loop of the real command. (That a row it picks up runs to the end is
    shown with the stand-in workflow in test_poller_runs.py, and through the real
    workflow by the other tests here.)"""
    (project.raw / "rec1").mkdir()
    project.set_config(poller={"interval_s": 1})
    project.write_sheet([])
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "--config", str(project.config_path), "poll"],
                            cwd=project.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)  # the poller is idle, polling an empty sheet
        project.write_sheet([{"recording_id": "rec 1", "animal": "m1", "raw_path": "rec1"}])
        deadline = time.time() + 60
        while time.time() < deadline and project.read_sheet()[0]["status"] == "":
            time.sleep(0.2)
        row = project.read_sheet()[0]
        assert row["status"] == "invalid" and "can only use letters, digits" in row["message"]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert took < 5, f"the poller took {took:.1f} s to stop after SIGTERM"
    assert "stopping after this poll" in err


def test_a_file_linked_from_outside_the_data_roots_is_refused_and_never_published(project, recording_in, tmp_path):
    """The raw folder is inside a root, but one of its files is a link to a file
    outside every root: nothing of it is read, converted or published."""
    raw = recording_in("linked")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(raw / "CSC3.ncs", outside / "CSC3.ncs")  # a channel anyone may not read through the pipeline
    (raw / "CSC3.ncs").symlink_to(outside / "CSC3.ncs")
    mapped = recording_in("map-linked")  # the folder's own channel map is a link out
    shutil.move(mapped / "channel_map.yaml", outside / "channel_map.yaml")
    (mapped / "channel_map.yaml").symlink_to(outside / "channel_map.yaml")
    before = tree_checksums(outside)
    project.write_sheet([{"recording_id": "linked", "animal": "m1", "raw_path": "linked"},
                         {"recording_id": "map-linked", "animal": "m1", "raw_path": "map-linked"}])
    proc = project.ephys("poll", "--until-done", "--every", "0.5", timeout=600)
    assert proc.returncode == 1, proc.stderr
    row, map_row = project.read_sheet()
    assert map_row["status"] == "failed" and map_row["message"].startswith(
        "Checking the raw files failed: channel_map.yaml in the raw data folder "), map_row["message"]
    assert row["status"] == "failed", row
    assert row["message"].startswith("Checking the raw files failed: CSC3.ncs in the raw data folder "), row["message"]
    assert "is a link to a place outside the folders the pipeline may read" in row["message"]
    assert "put the file itself into the folder instead of a link to it" in row["message"]
    assert str(outside) not in row["message"], "where the link points is not shown"
    res = project.dir / "results" / "linked"
    assert not (res / "recording.json").exists() and not (res / "published.json").exists()
    assert not (project.dir / "published" / "m1").exists()
    assert tree_checksums(outside) == before


def test_a_data_root_that_does_not_exist_stops_the_poller_not_every_row(project, recording_in):
    recording_in("rec1")
    project.set_config(data_roots=["raw", "/mnt/share-not-mounted"])
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"},
                         {"recording_id": "rec2", "animal": "m1", "raw_path": "/mnt/share-not-mounted/rec2"}])
    sheet_before = project.sheet.read_bytes()
    proc = project.ephys("poll", "--once")
    assert proc.returncode == 2
    expected = (f"ERROR: {project.config_path}: data_roots[1] is /mnt/share-not-mounted, which does not exist (a typo, "
                "or a share not mounted?); fix the path, or remove it from data_roots.")
    assert proc.stderr.strip().splitlines()[-1] == expected, proc.stderr
    assert project.sheet.read_bytes() == sheet_before, "no row is judged against a root that is not there"
    assert not (project.dir / "state" / "recordings.tsv").exists()
    add = project.ephys("add", "rec1", "m1", "rec1")
    assert add.returncode == 2 and add.stderr.strip().splitlines()[-1] == expected
    # Mounted (here: made), the same rows go through without anyone touching them.
    project.set_config(data_roots=["raw"])
    proc = project.ephys("poll", "--once")
    assert proc.returncode == 0, proc.stderr
    rows = by_id(project.read_sheet())
    assert rows["rec1"]["status"] in ("queued", "running"), rows["rec1"]
    assert rows["rec2"]["status"] == "invalid" and "outside the folders" in rows["rec2"]["message"]
    project.ephys("cancel", "rec1")


def test_missing_and_short_channels_are_told_in_the_row_and_the_rest_is_scored(project, recording_in):
    """A channel of the map with no file, one that ends early, and a region whose only
    good channel ends early (thalamus: CSC8 is dead and CSC9 noisy in this recording):
    the recording is scored, the row says what is missing from when, and only the
    epochs where a region has no channel at all are left unscored."""
    from pipeline.io.ncs import HEADER_SIZE, RECORD_SIZE

    raw = recording_in("gappy")
    (raw / "CSC7.ncs").unlink()  # hippocampus keeps CSC5 and CSC6
    for name, records in (("CSC2.ncs", 391), ("CSC10.ncs", 586)):  # 512 samples at 2 kHz: 100.1 s and 150.0 s
        with open(raw / name, "r+b") as f:
            f.truncate(HEADER_SIZE + RECORD_SIZE * records)
    before = tree_checksums(raw)
    project.write_sheet([{"recording_id": "gappy", "animal": "m1", "raw_path": "gappy"}])
    proc = project.ephys("poll", "--until-done", "--every", "0.5", timeout=900)
    assert proc.returncode == 0, proc.stderr
    row = project.read_sheet()[0]
    assert row["status"] == "done", row
    message = row["message"]
    assert message.startswith("Finished: 6 files published (wake "), message
    assert "Channel CSC7, named in the folder's channel_map.yaml, is missing from the raw folder; the rest was " \
           "analysed without it." in message
    assert "Channel CSC2 stops 0:01:40 into the recording, 0:01:20 before its end; from there the rest was " \
           "analysed without it." in message
    assert "Channel CSC10 stops 0:02:30 into the recording" in message
    assert "From 0:02:30 on, thalamus has no channel left: the epochs from there are not scored (unclassified)." \
        in message
    unclassified = re.search(r"unclassified (\d+)%\)", message)
    assert unclassified and 12 <= int(unclassified.group(1)) <= 25, message  # the last 30 s of 180, not more

    res = project.dir / "results" / "gappy"
    info = json.loads((res / "recording.json").read_text())
    assert info["missing_channels"] == ["CSC7"]
    assert set(info["channels_ending_early"]) == {"CSC2", "CSC10"}
    # CSC2's end leaves the epochs after it scored; only where thalamus has nothing are they not.
    valid = {}
    for k in range(3):
        with open(res / "features" / f"seg{k}.tsv", newline="") as f:
            valid |= {float(r["onset_s"]): r["valid"] == "1" for r in csv.DictReader(f, delimiter="\t")}
    assert all(v for t, v in valid.items() if t + 4 <= 150), "epochs before thalamus goes are scored"
    assert not any(v for t, v in valid.items() if t >= 150)
    lfp = read_lfp(res / "lfp" / "seg1.fif")
    flagged = [(round(a["onset"], 1), tuple(a["ch_names"])) for a in lfp.annotations]
    assert flagged == [(100.1, ("CSC2",))], "flagged for that channel alone, not as a gap of the recording"
    assert tree_checksums(raw) == before
