"""A recording's own video tracking: the sheet's optional `tracking` cell names a
DeepLabCut CSV anywhere inside the data roots, is checked as the untrusted text it is,
kept in the registry, and given to that recording's head_speed job alone. The poller's
side is in test_poller_runs.py."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from pipeline.errors import RowError
from pipeline.io.registry import Recording, Registry, resolve_tracking_file, tracking_cell_path
from pipeline.sheets.local_csv import LocalCsvSheet
from test_tracking import track, write_dlc


@pytest.fixture
def roots(tmp_path):
    """A data root with a raw folder and, beside it, a videos folder holding a DLC CSV;
    and a folder outside the root holding another."""
    root = tmp_path / "data"
    (root / "rec1").mkdir(parents=True)
    (root / "videos").mkdir()
    (tmp_path / "elsewhere").mkdir()
    frames = {"nose": track(np.arange(5), np.arange(5))}
    write_dlc(root / "videos" / "m1DLC_resnet50.csv", frames)
    write_dlc(tmp_path / "elsewhere" / "m1DLC_resnet50.csv", frames)
    return root, [str(root)]


def test_an_empty_cell_means_the_raw_folder_s_own_tracking(roots):
    root, data_roots = roots
    assert resolve_tracking_file("", root / "rec1", data_roots) == ""
    assert resolve_tracking_file("  ", root / "rec1", data_roots) == ""


def test_a_cell_names_a_csv_absolute_or_relative_to_the_raw_folder(roots):
    root, data_roots = roots
    csv = str(root / "videos" / "m1DLC_resnet50.csv")
    assert resolve_tracking_file(f" {csv} ", root / "rec1", data_roots) == csv
    assert resolve_tracking_file("../videos/m1DLC_resnet50.csv", root / "rec1", data_roots) == csv
    (root / "rec1" / "video.csv").symlink_to(csv)  # a link inside the roots: its target is kept
    assert resolve_tracking_file("video.csv", root / "rec1", data_roots) == csv
    # `ephys add` (a maintainer in a terminal): relative to where they are first.
    assert resolve_tracking_file("videos/m1DLC_resnet50.csv", root / "rec1", data_roots, cwd=root) == csv


@pytest.mark.parametrize("cell", ["{outside}", "../../elsewhere/m1DLC_resnet50.csv", "link.csv", "/etc/passwd"])
def test_a_file_outside_the_data_roots_is_refused_whatever_the_way_there(roots, cell):
    root, data_roots = roots
    outside = root.parent / "elsewhere" / "m1DLC_resnet50.csv"
    (root / "rec1" / "link.csv").symlink_to(outside)
    cell = cell.format(outside=outside)
    with pytest.raises(RowError) as e:
        resolve_tracking_file(cell, root / "rec1", data_roots)
    assert str(e.value) == (f"The tracking file '{cell}' is outside the folders the pipeline may read ({root}). "
                            "Please copy it into one of them and give that path.")


def test_a_missing_file_is_told_with_where_it_was_looked_for(roots):
    root, data_roots = roots
    with pytest.raises(RowError) as e:
        resolve_tracking_file(str(root / "videos" / "m2.csv"), root / "rec1", data_roots)
    assert str(e.value) == (f"The tracking file '{root}/videos/m2.csv' was not found. Please check the spelling and "
                            "that the file has been copied.")
    with pytest.raises(RowError) as e:
        resolve_tracking_file("m2.csv", root / "rec1", data_roots)
    assert str(e.value) == (f"The tracking file 'm2.csv' was not found (looked for it in the raw folder {root}/rec1). "
                            "Please check the spelling and that the file has been copied.")


@pytest.mark.parametrize("name, says", [
    ("m1DLC_resnet50.h5", "is not a .csv file; please give the CSV that DeepLabCut wrote for the video"),
    ("notes.txt", "is not a .csv file"),
    ("folder.csv", "is a folder; please give the DeepLabCut .csv file in it."),
    ("pipe.csv", "is not a regular file"),
    ("x\x00y.csv", "contains an invalid character"),
])
def test_anything_but_a_csv_file_is_refused(roots, name, says):
    root, data_roots = roots
    videos = root / "videos"
    (videos / "m1DLC_resnet50.h5").write_bytes(b"\x89HDF\r\n")
    (videos / "notes.txt").write_text("scorer,x\n")
    (videos / "folder.csv").mkdir()
    os.mkfifo(videos / "pipe.csv")  # opening it to read would wait for a writer for ever
    with pytest.raises(RowError, match=re.escape(says)):
        resolve_tracking_file(str(videos / name), root / "rec1", data_roots)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_file_the_pipeline_may_not_read_is_refused(roots):
    root, data_roots = roots
    csv = root / "videos" / "m1DLC_resnet50.csv"
    csv.chmod(0)
    try:
        with pytest.raises(RowError, match=r"cannot be read \(Permission denied\)"):
            resolve_tracking_file(str(csv), root / "rec1", data_roots)
    finally:
        csv.chmod(0o644)


def test_a_cell_is_compared_with_the_registered_file_by_where_it_leads(roots):
    root, data_roots = roots
    csv = resolve_tracking_file("../videos/m1DLC_resnet50.csv", root / "rec1", data_roots)
    assert tracking_cell_path(str(root / "videos" / "m1DLC_resnet50.csv"), root / "rec1") == csv
    assert tracking_cell_path("../videos/./m1DLC_resnet50.csv", root / "rec1") == csv
    assert tracking_cell_path("", root / "rec1") == ""
    assert tracking_cell_path("x\x00", root / "rec1") is None


def test_the_file_survives_the_registry_and_an_old_registry_reads_as_none(tmp_path):
    reg = Registry(tmp_path)
    reg.add(Recording("r1", "m1", "/data/r1", tracking="/data/videos/r1DLC.csv"))
    reg.add(Recording("r2", "m1", "/data/r2"))
    assert reg.read()["r1"].tracking == "/data/videos/r1DLC.csv" and reg.read()["r2"].tracking == ""
    # Registering the same data again takes its new file, and keeps the rest.
    first = reg.read()["r1"]
    reg.add(Recording("r1", "m1", "/data/r1", tracking=""))
    again = reg.read()["r1"]
    assert again.tracking == "" and again.registered_at == first.registered_at
    # A registry written before the column existed.
    (tmp_path / "recordings.tsv").write_text("recording_id\tanimal\traw_path\tnotes\trun_id\tregistered_at\tsource"
                                             "\tsleep_model\nold\tm1\t/data/old\t\t\t2026-01-01T00:00:00+00:00\tsheet\t\n")
    assert reg.read()["old"].tracking == ""


def test_a_sheet_without_the_column_reads_it_empty_and_a_lab_label_is_matched(tmp_path):
    path = tmp_path / "sheet.csv"
    path.write_text("recording_id,animal,raw_path\r\nr1,m1,p1\r\n")
    assert LocalCsvSheet(path).read_rows()[0]["tracking"] == ""
    path.write_text("Recording ID,Animal,Raw path,Tracking\r\nr1,m1,p1,../videos/m1.csv\r\n")
    assert LocalCsvSheet(path).read_rows()[0]["tracking"] == "../videos/m1.csv"


def head_speed_job(dry_stdout: str, rec: str) -> str | None:
    m = re.search(rf"rule head_speed:\n(?:\s+.*\n)*?\s+wildcards: rec={rec}\n(?:.*\n)*?Shell command: (.*)", dry_stdout)
    return m.group(0) if m else None


def test_each_recording_s_head_speed_job_reads_its_own_tracking_file(project):
    """A dry run (no data needed: inspect is still to do): the head_speed job of a
    recording registered with a tracking file has it, and the tracking.yaml beside it,
    as inputs and passes it to `ephys head-speed`; a recording without one has none."""
    videos = project.raw / "videos"
    for folder in ("rec1", "rec2", "videos"):
        (project.raw / folder).mkdir()
    csv = write_dlc(videos / "m1 night DLC_resnet50.csv", {"nose": track(np.arange(5), np.arange(5))})
    (videos / "tracking.yaml").write_text("fps: 25\n")
    project.ephys("add", "rec1", "m1", "raw/rec1", "--tracking", "raw/videos/m1 night DLC_resnet50.csv", check=True)
    project.ephys("add", "rec2", "m1", "raw/rec2", check=True)
    refused = project.ephys("add", "rec3", "m1", "raw/rec2", "--tracking", "../../../etc/passwd")
    assert refused.returncode == 2 and "is outside the folders the pipeline may read" in refused.stderr
    assert Registry(project.dir / "state").read()["rec1"].tracking == str(csv)
    dry = project.snakemake("-n", "-p", "--cores", "1")
    assert dry.returncode == 0, dry.stderr
    job = head_speed_job(dry.stdout, "rec1")
    assert job and f"input: results/rec1/recording.json, {csv}, {videos / 'tracking.yaml'}" in job, dry.stdout
    # The path is one quoted argument of the command, whatever it holds.
    assert f"ephys head-speed results/rec1/recording.json '{csv}' results/rec1/tracking/head_speed.tsv" in job
    assert re.search(r"rule classify:\n(?:\s+.*\n)*?\s+input: results/rec1/recording.json, <TBD>, "
                     r"results/rec1/tracking/head_speed.tsv", dry.stdout)
    assert head_speed_job(dry.stdout, "rec2") is None
    # A file removed after it was named: one sentence, which the run's log (and row) shows.
    csv.unlink()
    dry = project.snakemake("-n", "--cores", "1")
    assert dry.returncode != 0
    assert f"ERROR: the tracking file {csv} named for rec1 is no longer there; " in dry.stderr


def test_a_new_tracking_file_computes_head_speed_and_scores_again_and_nothing_before(project):
    """Snakemake's own bookkeeping, without running a stage: a recording's outputs are
    stand-ins marked complete (`--touch`, which records what each job was given), then
    its tracking file is changed as a rerun of its row would register it."""
    from test_workflow import planned_rules
    from pipeline.io.recording_info import RecordingInfo, Segment

    (project.raw / "rec1").mkdir()
    (project.raw / "videos").mkdir()
    for name in ("m1DLC.csv", "m1DLC_filtered.csv"):
        write_dlc(project.raw / "videos" / name, {"nose": track(np.arange(5), np.arange(5))})
    project.ephys("add", "rec1", "m1", "raw/rec1", "--tracking", "raw/videos/m1DLC.csv", check=True)
    RecordingInfo(
        recording_id="rec1", animal=None, format="fake", raw_path="", pipeline_version="", inspected_at="",
        start_time="2026-01-05T07:00:00+00:00", first_timestamp_us=0, sampling_rate=2000.0, n_samples=4000,
        duration_s=2.0, lfp_rate=1000.0, n_lfp_samples=2000, decimator={}, segment_samples=1000,
        segments=[Segment(k, float(k), 1.0) for k in range(2)], channel_map_source="", channel_map={},
        channels=[], unmapped_channels=[], gaps=[], channels_ending_early={}, files=[],
    ).save(project.dir / "results" / "rec1" / "recording.json")
    dry = project.snakemake("-n", "--cores", "1")
    outputs = re.findall(r"^\s+output: (.*)$", dry.stdout, re.M)
    assert "results/rec1/tracking/head_speed.tsv" in ", ".join(outputs), dry.stdout
    # Marked complete before they exist, Snakemake records each job's inputs and params
    # (it does not for outputs that are there already and look up to date).
    assert project.snakemake("--touch", "--cores", "1").returncode == 0
    for path in (p for line in outputs for p in line.split(", ")):
        (project.dir / path).parent.mkdir(parents=True, exist_ok=True)
        (project.dir / path).touch()
    assert project.snakemake("--touch", "--cores", "1").returncode == 0
    assert "Nothing to be done" in project.snakemake("-n", "--cores", "1").stdout

    project.ephys("add", "rec1", "m1", "raw/rec1", "--tracking", "raw/videos/m1DLC_filtered.csv", check=True)
    dry = project.snakemake("-n", "--cores", "1")
    assert planned_rules(dry.stdout) == {"head_speed": 1, "classify": 1, "figures": 1, "publish": 1, "all": 1}, \
        dry.stdout
    # No tracking any more (the raw folder has none): scored again without head speed.
    project.ephys("add", "rec1", "m1", "raw/rec1", check=True)
    dry = project.snakemake("-n", "--cores", "1")
    assert planned_rules(dry.stdout) == {"classify": 1, "figures": 1, "publish": 1, "all": 1}, dry.stdout
