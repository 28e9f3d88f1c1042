"""What a row says when something unusual happens, through the real `ephys poll` and the
real Snakemake: cells of any length, recordings shorter than one epoch or with gaps,
runs killed outright, a full disk and a folder that cannot be written.

(The poller's bookkeeping with a stand-in workflow is in test_poller_runs.py.)"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from base64 import urlsafe_b64encode
from pathlib import Path

import pytest

from pipeline.io.lfp import read_lfp
from pipeline.synth import write_synthetic_recording

pytestmark = pytest.mark.slow

HUGE = 100 * 1024  # a cell pasted by mistake: a whole file, say


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["recording_id"]: r for r in rows}


def test_any_cell_of_any_length_is_its_row_s_problem_and_short_or_gapped_recordings_say_so(project):
    write_synthetic_recording(project.raw / "gappy", duration_s=120, n_channels=6, sampling_rate=2000.0, seed=4,
                              gap=(40.0, 20.0))
    write_synthetic_recording(project.raw / "short", duration_s=3, n_channels=6, sampling_rate=2000.0, seed=4)
    long_folder = "f" * 256  # one more than a file name may have on most file systems
    huge_id, huge_animal, huge_notes = "r" * HUGE, "m" * HUGE, "n" * HUGE
    project.write_sheet([
        {"recording_id": "long-folder", "animal": "m1", "raw_path": long_folder},
        {"recording_id": huge_id, "animal": "m1", "raw_path": "gappy"},
        {"recording_id": "huge-animal", "animal": huge_animal, "raw_path": "gappy"},
        {"recording_id": "gappy", "animal": "m1", "raw_path": "gappy", "notes": huge_notes},
        {"recording_id": "short", "animal": "m1", "raw_path": "short"},
    ])
    proc = project.ephys("poll", "--until-done", "--every", "0.5", timeout=900)
    assert "Traceback" not in proc.stderr
    rows = project.read_sheet()
    assert [r["recording_id"] for r in rows] == ["long-folder", huge_id, "huge-animal", "gappy", "short"]
    row = by_id(rows)
    for rid, prefix in (("long-folder", "The raw_path 'fff"), (huge_id, "The recording id 'rrr"),
                        ("huge-animal", "The animal 'mmm")):
        r = row[rid]
        assert r["status"] == "invalid", r["message"][:300]
        assert r["message"].startswith(prefix), r["message"][:300]
        assert len(r["message"]) < 400, "a message quotes a short prefix, never the whole cell"
    assert "File name too long" in row["long-folder"]["message"]

    gappy = row["gappy"]
    assert gappy["status"] == "done", gappy["message"][:500]
    assert gappy["notes"] == huge_notes, "a person's notes are kept as they are"
    summary = json.loads((project.dir / "results" / "gappy" / "sleep" / "summary.json").read_text())
    unclassified = summary["fractions"]["unclassified"]
    assert unclassified > 0, summary["fractions"]
    message = gappy["message"]
    assert f"unclassified {100 * unclassified:.0f}%" in message, message
    for note in summary["notes"]:
        assert note[1:] in message, (note, message)
    assert any("not in any epoch" in n or "touch a gap" in n for n in summary["notes"]), summary["notes"]

    short = row["short"]
    assert short["status"] == "failed", short
    assert "shorter than one sleep epoch" in short["message"], short["message"]
    assert "internal error" not in short["message"]
    assert proc.returncode == 1, "a failed row is reported in the exit status"


def test_a_workflow_and_poller_killed_outright_go_on_from_what_was_complete(project):
    """Power loss, or the OOM killer taking the poller and Snakemake: runs use --nolock,
    so no stale lock stops the next run; the next poll starts the run again, the killed
    jobs' outputs are made, and nothing complete is made again."""
    write_synthetic_recording(project.raw / "long", duration_s=360, n_channels=12, sampling_rate=2000.0, seed=5)
    project.write_sheet([{"recording_id": "long", "animal": "m1", "raw_path": "long"}])
    poller = subprocess.Popen([sys.executable, "-m", "pipeline", "--config", str(project.config_path), "poll",
                               "--until-done", "--every", "0.5"], cwd=project.dir,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lfp = project.dir / "results" / "long" / "lfp"
    markers = project.dir / ".snakemake" / "incomplete"

    def marked(path) -> bool:  # Snakemake's marker: a file named by the output's path in base64
        return (markers / urlsafe_b64encode(str(path.relative_to(project.dir)).encode()).decode()).exists()

    deadline = time.time() + 300
    while time.time() < deadline and not any(not marked(p) for p in lfp.glob("seg*.fif")):  # one segment done
        time.sleep(0.02)
    poller.send_signal(signal.SIGKILL)
    poller.wait()
    (run_file,) = (project.dir / "state" / "runs").glob("*.json")
    run = json.loads(run_file.read_text())
    os.killpg(run["pid"], signal.SIGKILL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            os.killpg(run["pid"], 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    # Snakemake marked the outputs of the jobs it had started. (9.27 does not look at the
    # marks of jobs behind a checkpoint, every segment's here, when it starts again: what
    # keeps a half-written file from counting as complete is that every stage writes to a
    # temporary name and renames when done.)
    assert list(markers.iterdir()), "the kill came too late to leave a job unfinished"
    done_jobs = [[lfp / f"seg{k}.fif", lfp / f"seg{k}.json"] for k in range(6)]  # a job's outputs, both there
    outputs = [project.dir / "results/long/recording.json", *(p for job in done_jobs if all(map(Path.exists, job))
                                                                for p in job)]
    complete = {p: p.stat().st_mtime_ns for p in outputs}
    assert len(list(lfp.glob("seg*.fif"))) < 6, "the kill came too late to leave a segment to do"

    proc = project.ephys("poll", "--once")
    assert proc.returncode == 0, proc.stderr
    row = project.read_sheet()[0]
    assert row["status"] == "running" and row["run_id"] != run["run_id"], row
    assert row["message"] == ("The workflow was killed before it finished (the machine stopped, out of memory, or "
                              "someone stopped it); what was complete is kept. Starting again.")
    proc = project.ephys("poll", "--until-done", "--every", "0.5", timeout=900)
    assert proc.returncode == 0, proc.stderr
    row = project.read_sheet()[0]
    assert row["status"] == "done", row
    assert {p: p.stat().st_mtime_ns for p in complete} == complete, "complete outputs are not made again"
    info = json.loads((project.dir / "results" / "long" / "recording.json").read_text())
    lfp_all = read_lfp([lfp / f"seg{k}.fif" for k in range(len(info["segments"]))])
    assert lfp_all.n_times == info["n_lfp_samples"] and not list(lfp.glob(".*tmp*"))


@contextlib.contextmanager
def small_file_system(folder: Path, size: str, *, read_only: bool = False):
    """A tmpfs of `size` mounted on `folder` (made read-only after mounting if asked);
    the test is skipped where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=False,
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small file system here ({done.stderr.strip() or 'mount failed'})")
    try:
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def test_a_full_results_disk_is_told_in_words_and_rerun_goes_on(project, recording_in):
    recording_in("rec1")
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    with small_file_system(project.dir / "results", "1m"):
        proc = project.ephys("poll", "--until-done", "--every", "0.5", timeout=600)
        assert proc.returncode == 1, proc.stderr
        row = project.read_sheet()[0]
    assert row["status"] == "failed", row
    message = row["message"]
    assert message.startswith("Converting to LFP failed: the results disk is full (no space left"), message
    assert "once a maintainer has made room, tick rerun to go on from where it stopped" in message, message
    assert "internal error" not in message
    # Room made (the small disk is gone): rerun goes on.
    project.edit_row(0, rerun="yes")
    proc = project.ephys("poll", "--until-done", "--every", "0.5", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert project.read_sheet()[0]["status"] == "done"


def test_a_published_folder_that_cannot_be_written_is_told_in_words(project, recording_in):
    recording_in("rec1")
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    with small_file_system(project.dir / "published", "4m", read_only=True):
        proc = project.ephys("poll", "--until-done", "--every", "0.5", timeout=600)
        assert proc.returncode == 1, proc.stderr
        row = project.read_sheet()[0]
    assert row["status"] == "failed", row
    message = row["message"]
    assert message.startswith("Publishing results failed: "), message
    assert "published/m1 could not be written or replaced (a read-only file system)" in message, message
    assert "once a maintainer has made the folder writable, tick rerun" in message, message
    assert "internal error" not in message
