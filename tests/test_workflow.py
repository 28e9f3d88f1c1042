"""The Snakemake workflow and the demo, end to end on a small recording."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, write_tiny_model
from test_other_formats import raw_for
from pipeline import layout

pytestmark = pytest.mark.slow


def planned_rules(output: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    # Jobs of a group (a cluster job for several rules) are listed indented under it.
    for m in re.finditer(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):", output, re.M):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def test_dry_run_lists_every_stage_and_a_registered_recording_runs_by_hand(project, recording_in):
    raw = recording_in("rec1")
    added = project.ephys("add", "rec1", "m1", str(raw), check=True)
    assert "registered rec1" in added.stdout
    dry = project.snakemake("-n", "--cores", "1")
    assert dry.returncode == 0, dry.stderr
    assert planned_rules(dry.stdout) == {"inspect": 1, "classify": 1, "figures": 1, "publish": 1, "all": 1}
    assert project.snakemake("--cores", "1", "results/rec1/recording.json").returncode == 0
    dry = project.snakemake("-n", "--cores", "1")
    assert planned_rules(dry.stdout) == {"convert": 3, "spectrogram": 3, "features": 3, "classify": 1,
                                         "figures": 1, "publish": 1, "all": 1}
    run = project.snakemake("--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    assert (project.dir / "published" / "m1" / "rec1" / "overview.png").exists()
    for name in layout.PUBLISHED:  # what the PI gets, and the animal's summary beside it
        assert (project.dir / "published" / "m1" / "rec1" / Path(layout.OUTPUTS[name]).name).exists(), name
    assert (project.dir / "published" / "m1" / "animal_summary.png").exists()
    for log in ("inspect.log", "classify.log", "figures.log", "publish.log", "convert/seg2.log"):
        assert (project.dir / "logs" / "rec1" / log).exists(), log
    again = project.snakemake("-n", "--cores", "1")
    assert "Nothing to be done" in again.stdout + again.stderr

    # A changed configuration value re-runs exactly the outputs it affects.
    project.set_config(spectrogram={"time_bandwidth": 3.0})
    dry = project.snakemake("-n", "--cores", "1")
    assert planned_rules(dry.stdout) == {"spectrogram": 3, "features": 3, "classify": 1, "figures": 1,
                                         "publish": 1, "all": 1}, dry.stdout
    project.set_config(spectrogram={"time_bandwidth": 2.0}, lfp={"rate": 500})
    dry = project.snakemake("-n", "--cores", "1")
    assert planned_rules(dry.stdout) == {"inspect": 1, "classify": 1, "figures": 1, "publish": 1, "all": 1}
    # The raw folder's own channel map is an input of inspect: editing it inspects again.
    project.set_config(lfp={"rate": 1000})
    assert "Nothing to be done" in project.snakemake("-n", "--cores", "1").stdout
    # A figure setting re-draws and re-publishes; a new sleep model (as when the scorer's
    # code changes and its version is bumped) scores again; the epoch length is a sleep
    # parameter the spectrograms use too.
    project.set_config(figures={"lights_on": 8})
    dry = project.snakemake("-n", "--cores", "1")
    assert planned_rules(dry.stdout) == {"figures": 1, "publish": 1, "all": 1}, dry.stdout
    project.set_config(figures={"lights_on": 7})
    new_model = subprocess.run(
        [sys.executable, "-c", "import sys, pipeline.sleep.models as m; m.LABEL_FREE_VERSION = 'label-free-99'; "
         "from snakemake.cli import main; sys.argv[0] = 'snakemake'; main()",
         "--snakefile", str(REPO / "Snakefile"), "-n", "--cores", "1"],
        cwd=project.dir, capture_output=True, text=True, timeout=300)
    assert planned_rules(new_model.stdout) == {"classify": 1, "figures": 1, "publish": 1, "all": 1}, new_model.stdout
    project.set_config(sleep={"epoch_s": 5})
    dry = project.snakemake("-n", "--cores", "1")
    assert planned_rules(dry.stdout) == {"spectrogram": 3, "features": 3, "classify": 1, "figures": 1, "publish": 1,
                                         "all": 1}, dry.stdout
    project.set_config(sleep={"epoch_s": 4})
    # A trained model file is an input of classify: choosing one, or replacing it,
    # scores again and computes nothing before.
    model = project.dir / "models" / "lab.json"
    write_tiny_model(model, name="lab")
    project.set_config(sleep={"model": "models/lab.json"})
    dry = project.snakemake("-n", "--cores", "1")
    assert planned_rules(dry.stdout) == {"classify": 1, "figures": 1, "publish": 1, "all": 1}, dry.stdout
    project.set_config(sleep={"model": None})
    # So does one recording's own choice (a sheet's `sleep model` cell: a model's name in
    # sleep.models_dir); back to the default, there is nothing to do.
    project.ephys("add", "rec1", "m1", str(raw), "--sleep-model", "lab", check=True)
    dry = project.snakemake("-n", "--cores", "1")
    assert planned_rules(dry.stdout) == {"classify": 1, "figures": 1, "publish": 1, "all": 1}, dry.stdout
    project.ephys("add", "rec1", "m1", str(raw), check=True)
    assert "Nothing to be done" in project.snakemake("-n", "--cores", "1").stdout
    cmap = raw / "channel_map.yaml"
    cmap.write_text(cmap.read_text() + "# checked again by the lab\n")
    dry = project.snakemake("-n", "--cores", "1")
    assert planned_rules(dry.stdout) == {"inspect": 1, "classify": 1, "figures": 1, "publish": 1, "all": 1}


def test_editing_the_sidecar_of_a_dat_folder_inspects_again(project, tmp_path):
    """The .dat sidecar says what the samples are (rate, scale, names): it is an input
    of inspect like the data, so a corrected sidecar is read again. A dry run only."""
    raw = raw_for("dat", project, tmp_path)
    project.ephys("add", "rec1", "m1", str(raw), check=True)
    target = layout.OUTPUTS["recording_json"].format(rec="rec1")
    project.ephys("inspect", str(raw), target, check=True)  # what the rule runs, without Snakemake's start-up
    sidecar = raw / "recording.yaml"
    sidecar.write_text(sidecar.read_text() + "# uv_per_bit checked against the amplifier's manual\n")
    dry = project.snakemake("-n", "--cores", "1", target)
    assert planned_rules(dry.stdout) == {"inspect": 1}, dry.stdout
    assert re.search(r"reason: Updated input files: .*recording\.yaml", dry.stdout), dry.stdout


def test_a_raw_folder_with_a_deeplabcut_csv_gets_head_speed_as_a_feature_and_a_trace(project, recording_in):
    import json

    from pipeline.io.tracking import read_head_speed
    from pipeline.synth.tracking import write_synthetic_tracking

    raw = recording_in("rec1")
    made = write_synthetic_tracking(raw, duration_s=180, sampling_rate=2000.0, seed=3)
    (raw / "tracking.yaml").write_text("px_per_cm: 10\n")
    project.ephys("add", "rec1", "m1", str(raw), check=True)
    run = project.snakemake("--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    results, logs = project.dir / "results" / "rec1", project.dir / "logs" / "rec1"
    assert json.loads((results / "recording.json").read_text())["tracking_file"] == Path(made["path"]).name
    hs = read_head_speed(results / "tracking" / "head_speed.tsv")
    assert hs.unit == "cm/s" and len(hs.speed) == 45 and np.isfinite(hs.speed).all()
    assert "features from the video tracking: head_speed, head_log_speed" in (logs / "classify.log").read_text()
    assert "head speed (cm/s) is drawn under the muscle trace" in (logs / "figures.log").read_text()
    prov = json.loads((results / "provenance.json").read_text())
    assert prov["settings"]["tracking"]["min_likelihood"] == 0.9
    assert "Nothing to be done" in project.snakemake("-n", "--cores", "1").stdout
    # A changed tracking.yaml (or a new tracking of the video) computes head speed and
    # scores again; nothing before.
    (raw / "tracking.yaml").write_text("px_per_cm: 12\n")
    dry = project.snakemake("-n", "--cores", "1")
    assert planned_rules(dry.stdout) == {"head_speed": 1, "classify": 1, "figures": 1, "publish": 1, "all": 1}, \
        dry.stdout


def test_a_config_file_given_to_snakemake_is_read_alone(project, recording_in):
    raw = recording_in("rec1")
    project.ephys("add", "rec1", "m1", str(raw), check=True)
    alt = project.dir / "alt.yaml"
    alt.write_text(project.config_path.read_text())
    # The default config.yaml beside it is broken: with --configfile, it must not be read.
    project.config_path.write_text(project.config_path.read_text().replace("segment_s:", "segment_seconds:"))
    dry = project.snakemake("-n", "--cores", "1", "--configfile", str(alt))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert planned_rules(dry.stdout)["inspect"] == 1
    # Values given on the command line would be ignored: refused, in words.
    dry = project.snakemake("-n", "--cores", "1", "--configfile", str(alt), "--config", "lfp=1")
    assert dry.returncode != 0 and "--config KEY=VALUE is not read by this workflow" in dry.stderr
    # And from another folder: paths are the configuration file's folder's, not the current one's.
    elsewhere = project.dir.parent / "elsewhere"
    elsewhere.mkdir()
    import subprocess
    import sys

    from conftest import REPO

    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile",
                           str(alt), "--cores", "1", "results/rec1/recording.json"], cwd=elsewhere,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (project.dir / "results" / "rec1" / "recording.json").exists()
    assert not (elsewhere / "results").exists()


def test_adding_a_recording_by_hand_checks_it_like_a_sheet_row(project, tmp_path):
    proc = project.ephys("add", "rec/1", "m1", str(project.raw))
    assert proc.returncode == 2 and "can only use letters, digits" in proc.stderr
    proc = project.ephys("add", "rec1", "m1", str(tmp_path))
    assert proc.returncode == 2 and "outside the folders the pipeline may read" in proc.stderr
    assert not (project.dir / "state" / "recordings.tsv").exists()


def test_demo_goes_from_a_sheet_row_to_published_figures(project):
    proc = project.ephys("demo", "--duration", "3m", "--channels", "12", "--rate", "2000", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = project.dir / "published" / "demo-mouse" / "demo-rec1"
    assert f"figures: {folder / 'overview.png'}" in proc.stdout
    assert (folder / "report.pdf").read_bytes()[:4] == b"%PDF"
    with open(project.sheet, newline="") as f:
        row = next(csv.DictReader(f))
    assert row["recording_id"] == "demo-rec1" and row["status"] == "done"
    # Running the demo again reuses the recording and the row: nothing new happens.
    again = project.ephys("demo", "--duration", "3m", "--channels", "12", "--rate", "2000")
    assert again.returncode == 0
    assert "writing a" not in again.stderr and "running snakemake" not in again.stderr


def test_a_low_lfp_rate_has_the_convert_jobs_estimate_the_muscle_tone_for_the_spectrogram_jobs(project, recording_in):
    raw = recording_in("rec1")
    project.ephys("add", "rec1", "m1", str(raw), check=True)
    for rate, named in ((1000, False), (250, True)):
        project.set_config(lfp={"rate": rate})
        assert project.snakemake("--cores", "1", "results/rec1/recording.json").returncode == 0
        dry = project.snakemake("-n", "-p", "--cores", "1", "results/rec1/spectrogram/seg0.npz")
        assert dry.returncode == 0, dry.stderr
        emg = layout.OUTPUTS["lfp_emg"].format(rec="rec1", k=0)
        commands = [line for line in (dry.stdout + dry.stderr).splitlines() if "ephys " in line]
        assert commands, dry.stdout + dry.stderr
        convert = next(c for c in commands if " convert-segment " in c)
        spectrogram = next(c for c in commands if " spectrogram " in c)
        assert (f"--lfp-emg {emg} --epoch-s 4" in convert) is named, convert
        assert (f"--lfp-emg {emg}" in spectrogram) is named, spectrogram
