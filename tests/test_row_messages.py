"""What a row says when something unusual happens, through the real `ephys poll` and the
real Snakemake: cells of any length, recordings shorter than one epoch or with gaps,
runs killed outright, a full disk and a folder that cannot be written.

(The poller's bookkeeping with a stand-in workflow is in test_poller_runs.py.)"""

from __future__ import annotations

import json

import pytest

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
