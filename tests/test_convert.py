"""Inspect and convert through the `ephys` command: what they write, and how they fail."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone

import mne
import numpy as np
import pytest

from conftest import real_data, tree_checksums
from pipeline.dsp.decimate import design_decimator
from pipeline.io.lfp import read_lfp
from pipeline.io.ncs import HEADER_SIZE, RECORD_SIZE
from pipeline.io.raw import open_recording


def test_segments_join_into_the_whole_recording(project, recording_in):
    raw = recording_in("rec1")
    before = tree_checksums(raw)
    out = project.dir / "out"
    proc = project.ephys("convert", str(raw), str(out), "--recording-id", "rec1")
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "recording.json").read_text())
    assert len(info["segments"]) == 3  # 180 s in 60 s segments
    segs = [out / "lfp" / f"seg{k}.fif" for k in range(3)]
    lfp = read_lfp(segs)
    rec = open_recording(raw)
    names = [c["name"] for c in info["channels"] if not c["ignored"]]
    assert lfp.ch_names == names
    dec = design_decimator(rec.sampling_rate, 1000.0)
    whole = dec.decimate_range(lambda a, b: rec.read(a, b, names), rec.n_samples, 0, dec.n_output(rec.n_samples))
    # The converter filters ADC units and scales afterwards; the reference scales first:
    # equal within float32 rounding.
    np.testing.assert_allclose(lfp.get_data(), whole, rtol=0, atol=1e-6 * np.max(np.abs(whole)))
    assert lfp.info["sfreq"] == 1000.0
    assert lfp.info["meas_date"] == datetime(2026, 1, 5, 7, 0, tzinfo=timezone.utc)
    single = mne.io.read_raw_fif(segs[1], verbose=False)
    assert single.first_samp == 60000 and single.get_data().dtype == np.float64
    types = dict(zip(single.ch_names, single.get_channel_types()))
    assert types["CSC11"] == "emg" and types["CSC1"] == "seeg"
    truth = (raw / "ground_truth" / "truth.yaml").read_text()
    flagged = {c["name"]: c["qc"]["flag"] for c in info["channels"] if "qc" in c and c["qc"]["flag"] != "ok"}
    assert set(single.info["bads"]) == set(flagged)
    for name, flag in flagged.items():
        assert f"{flag}_channel: {name}" in truth, (name, flag, truth)
    sidecar = json.loads((out / "lfp" / "seg1.json").read_text())
    assert sidecar["start_s"] == 60.0 and len(sidecar["channels"]) == len(names)
    assert tree_checksums(raw) == before


def test_a_rational_rate_ratio_converts_through_the_cli(project):
    """Cheetah's 32556 Hz (and any rate not a whole multiple of the LFP rate): integer
    stages, then an up/down stage; the segments join and sit on the recording's clock."""
    from pipeline.synth import write_synthetic_recording

    raw = project.raw / "odd"
    write_synthetic_recording(raw, duration_s=130, n_channels=5, sampling_rate=32556.0, seed=2)
    out = project.dir / "out"
    proc = project.ephys("convert", str(raw), str(out), "--recording-id", "odd")
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "recording.json").read_text())
    assert info["decimator"]["rational"]["up"] == 8000 and info["decimator"]["rational"]["down"] == 8139
    segs = [out / "lfp" / f"seg{k}.fif" for k in range(len(info["segments"]))]
    assert len(segs) == 3  # 130 s in 60 s segments: 60, 60, 10
    lfp = read_lfp(segs)
    rec = open_recording(raw)
    dec = design_decimator(rec.sampling_rate, 1000.0)
    n = dec.n_output(rec.n_samples)
    assert lfp.info["sfreq"] == 1000.0 and lfp.n_times == n == info["n_lfp_samples"]
    names = lfp.ch_names
    whole = dec.decimate_range(lambda a, b: rec.read(a, b, names), rec.n_samples, 0, n)
    np.testing.assert_allclose(lfp.get_data(), whole, rtol=0, atol=1e-6 * np.max(np.abs(whole)))


def test_an_lfp_rate_equal_to_the_raw_rate_gives_the_raw_samples(project, recording_in):
    """No filter at all: the converter's one path hands the read blocks on, in volts."""
    raw = recording_in("same")
    project.set_config(lfp={"rate": 2000.0})
    out = project.dir / "out"
    proc = project.ephys("convert", str(raw), str(out))
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "recording.json").read_text())
    assert info["decimator"]["stages"] == [] and info["decimator"]["rational"] is None
    lfp = read_lfp([out / "lfp" / f"seg{k}.fif" for k in range(len(info["segments"]))])
    rec = open_recording(raw)
    assert lfp.info["sfreq"] == 2000.0 and lfp.n_times == rec.n_samples
    assert np.array_equal(lfp.get_data(), rec.read(0, rec.n_samples, lfp.ch_names).astype(np.float64))


def test_gap_is_kept_on_the_time_axis_and_annotated(project, tmp_path):
    from pipeline.synth import write_synthetic_recording

    raw = project.raw / "gappy"
    write_synthetic_recording(raw, duration_s=120, n_channels=6, sampling_rate=2000.0, seed=5, gap=(50.0, 10.0))
    out = project.dir / "out"
    proc = project.ephys("convert", str(raw), str(out))
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "recording.json").read_text())
    assert info["duration_s"] == pytest.approx(120, abs=0.3)
    assert len(info["gaps"]) == 1
    gap = info["gaps"][0]
    assert gap["start_s"] == pytest.approx(50, abs=0.3) and gap["duration_s"] == pytest.approx(10, abs=0.6)
    assert gap["channels"] == "all"
    # The gap straddles the boundary of the first two segments: each annotates its part.
    parts = []
    for k in (0, 1):
        seg = read_lfp(out / "lfp" / f"seg{k}.fif")
        parts += [(a["onset"], a["duration"]) for a in seg.annotations if a["description"] == "BAD_ACQ_SKIP"]
    assert len(parts) == 2
    assert parts[0][0] == pytest.approx(gap["start_s"], abs=1e-3)
    assert parts[0][0] + parts[0][1] == pytest.approx(60.0, abs=1e-3) == parts[1][0]
    assert parts[0][1] + parts[1][1] == pytest.approx(gap["duration_s"], abs=2e-3)
    lfp = read_lfp([out / "lfp" / f"seg{k}.fif" for k in (0, 1)])
    # The time axis is the recording clock: the sample after the gap is where its timestamp says.
    assert lfp.n_times == info["n_lfp_samples"] == 469 * 512 // 2  # 469 records of 512 samples at 2 kHz


def test_gap_files_from_the_vendor_are_converted(project):
    src = real_data("neuralynx-mne-testing-data")
    raw = project.raw / "nlx"
    raw.mkdir()
    for name in ("LAHC1_3_gaps.ncs", "LAHC2_3_gaps.ncs"):
        shutil.copy(src / name, raw / name)
    (raw / "channel_map.yaml").write_text("regions:\n  hippocampus: [LAHC1, LAHC2]\n")
    out = project.dir / "out"
    proc = project.ephys("convert", str(raw), str(out))
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "recording.json").read_text())
    assert [round(g["duration_s"] * 2000) for g in info["gaps"]] == [100, 7, 23]
    assert info["start_time"].startswith("2023-11-02T13:39:27")
    lfp = read_lfp(out / "lfp" / "seg0.fif")
    assert len([a for a in lfp.annotations if a["description"] == "BAD_ACQ_SKIP"]) == 3


def test_a_channel_that_ends_early_is_reported(project, synthetic_recording):
    raw = project.raw / "short"
    shutil.copytree(synthetic_recording, raw)
    victim = raw / "CSC2.ncs"
    n_records = (victim.stat().st_size - HEADER_SIZE) // RECORD_SIZE
    with open(victim, "r+b") as f:
        f.truncate(HEADER_SIZE + RECORD_SIZE * (n_records - 40))  # whole records: a clean early stop
    out = project.dir / "out"
    proc = project.ephys("convert", str(raw), str(out))
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "recording.json").read_text())
    assert set(info["channels_ending_early"]) == {"CSC2"}
    assert info["channels_ending_early"]["CSC2"] == pytest.approx((n_records - 40) * 512 / 2000, abs=1e-6)
    assert info["duration_s"] == pytest.approx(180, abs=0.3)
    assert any(g["channels"] == ["CSC2"] for g in info["gaps"])
    assert "ending before the others: CSC2" in proc.stderr


@pytest.mark.parametrize("damage, phrase", [
    ("empty", "holds no raw data this pipeline can read"),
    ("header", "does not start with a Neuralynx header"),
    ("rates", "different sampling rates"),
    ("truncated", "truncated"),
])
def test_unusable_raw_folder_stops_with_a_message_naming_the_file(project, synthetic_recording, damage, phrase):
    raw = project.raw / "bad"
    shutil.copytree(synthetic_recording, raw)
    named = None
    if damage == "empty":
        for p in raw.glob("*.ncs"):
            p.unlink()
    elif damage == "header":
        named = "CSC4.ncs"
        data = bytearray((raw / named).read_bytes())
        data[:64] = b"this is not a header".ljust(64, b" ")
        (raw / named).write_bytes(bytes(data))
    elif damage == "rates":
        from pipeline.synth import write_synthetic_recording

        other = project.dir / "other"
        write_synthetic_recording(other, duration_s=10, n_channels=13, sampling_rate=4000.0, seed=1)
        shutil.copy(other / "CSC13.ncs", raw / "CSC13.ncs")
    elif damage == "truncated":
        named = "CSC7.ncs"
        with open(raw / named, "r+b") as f:
            f.truncate((raw / named).stat().st_size - 100)
    before = tree_checksums(raw)
    out = project.dir / "out"
    proc = project.ephys("convert", str(raw), str(out))
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.startswith("ERROR: ")]
    assert len(lines) == 1 and phrase in lines[0], proc.stderr
    if named:
        assert named in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (out / "recording.json").exists()
    assert not list(out.rglob("*.fif")) if out.exists() else True
    assert tree_checksums(raw) == before


def test_killed_conversion_leaves_no_complete_looking_file(project, recording_in):
    """A segment job killed mid-write leaves only a hidden temporary file, never seg0.fif."""
    import signal
    import subprocess
    import sys
    import time

    raw = recording_in("rec1")
    out = project.dir / "out"
    assert project.ephys("inspect", str(raw), str(out / "recording.json")).returncode == 0
    proc = subprocess.Popen([sys.executable, "-c", (
        "import time, pipeline.io.lfp as l\n"
        "orig = l._ComputedRaw._read_segment_file\n"
        "def slow(self, *a):\n    time.sleep(0.3)\n    return orig(self, *a)\n"
        "l._ComputedRaw._read_segment_file = slow\n"
        "from pipeline.cli import main\n"
        f"main(['--config', {str(project.config_path)!r}, 'convert-segment', {str(out / 'recording.json')!r}, '0', "
        f"{str(out / 'lfp' / 'seg0.fif')!r}])\n")], cwd=project.dir)
    deadline = time.time() + 60
    while time.time() < deadline and not list((out / "lfp").glob(".seg0.fif.*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "lfp" / "seg0.fif").exists()


def test_a_recording_json_of_another_schema_is_refused_with_what_to_do(project, recording_in):
    """recording.json from an older pipeline (no schema version, no reading index): the
    job says to inspect again instead of guessing its way through."""
    raw = recording_in("rec1")
    out = project.dir / "out"
    assert project.ephys("inspect", str(raw), str(out / "recording.json")).returncode == 0
    info = json.loads((out / "recording.json").read_text())
    assert info["schema_version"] == 2 and all("index" in f for f in info["files"])
    del info["schema_version"]
    for f in info["files"]:
        del f["index"]
    (out / "old.json").write_text(json.dumps(info))
    proc = project.ephys("convert-segment", str(out / "old.json"), "1", str(out / "old.fif"))
    assert proc.returncode == 2, proc.stderr
    assert "old.json was written by another version of the pipeline" in proc.stderr
    assert "tick rerun to inspect the recording again" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "old.fif").exists()


def test_a_raw_file_changed_since_inspect_is_refused(project, recording_in):
    raw = recording_in("rec1")
    out = project.dir / "out"
    assert project.ephys("inspect", str(raw), str(out / "recording.json")).returncode == 0
    victim = raw / "CSC5.ncs"
    with open(victim, "r+b") as f:
        f.truncate(victim.stat().st_size - RECORD_SIZE)
    proc = project.ephys("convert-segment", str(out / "recording.json"), "0", str(out / "seg0.fif"))
    assert proc.returncode == 2
    assert "CSC5.ncs" in proc.stderr and "the file changed" in proc.stderr
    assert not (out / "seg0.fif").exists()


def test_a_link_out_of_the_data_roots_made_after_inspect_is_refused_by_the_segment_job(project, recording_in,
                                                                                       tmp_path):
    """Each job that opens raw files checks them again: a file replaced by a link
    between inspect and convert is not read."""
    raw = recording_in("rec1")
    out = project.dir / "out"
    assert project.ephys("inspect", str(raw), str(out / "recording.json")).returncode == 0
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.move(raw / "CSC5.ncs", outside / "CSC5.ncs")
    (raw / "CSC5.ncs").symlink_to(outside / "CSC5.ncs")
    proc = project.ephys("convert-segment", str(out / "recording.json"), "0", str(out / "seg0.fif"))
    assert proc.returncode == 2, proc.stderr
    assert (f"ERROR: CSC5.ncs in the raw data folder {raw} is a link to a place outside the folders the pipeline "
            f"may read ({project.raw}); put the file itself into the folder") in proc.stderr
    assert not (out / "seg0.fif").exists()
    # A link that stays inside the roots is followed as before.
    (raw / "CSC5.ncs").unlink()
    shutil.move(outside / "CSC5.ncs", project.raw / "CSC5-kept-here.ncs")
    (raw / "CSC5.ncs").symlink_to(project.raw / "CSC5-kept-here.ncs")
    proc = project.ephys("convert-segment", str(out / "recording.json"), "0", str(out / "seg0.fif"))
    assert proc.returncode == 0, proc.stderr


def convert_lahcu1(project, name: str, channel_map: str | None):
    """`ephys convert` of a folder holding a copy of the vendor's LAHCu1.ncs (and the map, if given)."""
    raw = project.raw / name
    raw.mkdir()
    shutil.copy(real_data("neuralynx-mne-testing-data/LAHCu1.ncs"), raw / "LAHCu1.ncs")
    if channel_map is not None:
        (raw / "channel_map.yaml").write_text(channel_map)
    out = project.dir / f"out-{name}"
    proc = project.ephys("convert", str(raw), str(out))
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "recording.json").read_text()), out


def test_channels_in_no_region_are_converted_all_the_same(project):
    """The channel map decides regions, not which channels reach the LFP."""
    info, out = convert_lahcu1(project, "unmapped", None)  # the default map names CSC channels only
    assert [(c["name"], c["region"], c["ignored"]) for c in info["channels"]] == [("LAHCu1", None, False)]
    assert info["unmapped_channels"] == ["LAHCu1"] and info["channels"][0]["qc"]["flag"] == "ok"
    mapped_info, mapped_out = convert_lahcu1(project, "mapped", "regions:\n  hippocampus: [LAHCu1]\n")
    assert mapped_info["channels"][0]["region"] == "hippocampus"
    lfp = read_lfp(out / "lfp" / "seg0.fif")
    mapped = read_lfp(mapped_out / "lfp" / "seg0.fif")
    assert lfp.ch_names == mapped.ch_names == ["LAHCu1"]
    assert lfp.n_times == info["n_lfp_samples"] == mapped.n_times
    assert np.array_equal(lfp.get_data(), mapped.get_data())


def test_spectrogram_without_a_mapped_region_says_how_to_map_one(project):
    info, out = convert_lahcu1(project, "unmapped", None)
    proc = project.ephys("spectrogram", str(out / "recording.json"), str(out / "lfp" / "seg0.fif"),
                         str(out / "spec.npz"))
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.startswith("ERROR: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "no channel is mapped to a brain region" in lines[0]
    assert "channel_map.yaml" in lines[0] and "regions: {cortex: CSC1-CSC4}" in lines[0]
    assert "channel_maps.default" in lines[0]
    assert not (out / "spec.npz").exists()

    # A region whose every channel QC flagged: the other message.
    info, out = convert_lahcu1(project, "mapped", "regions:\n  hippocampus: [LAHCu1]\n")
    info["channels"][0]["qc"]["flag"] = "dead"
    (out / "flagged.json").write_text(json.dumps(info))
    assert project.ephys("convert-segment", str(out / "flagged.json"), "0", str(out / "flagged.fif"),
                         "--qc", str(out / "flagged-qc.json")).returncode == 0
    proc = project.ephys("spectrogram", str(out / "flagged.json"), str(out / "flagged.fif"), str(out / "spec.npz"))
    assert proc.returncode == 2
    assert "no good channel in any region" in proc.stderr and "no channel is mapped" not in proc.stderr
