"""A recording's own sleep model: the sheet's optional `sleep model` cell, checked as the
untrusted text it is, kept in the registry, and given to that recording's classify job
(and its provenance) alone. The poller's side is in test_poller_runs.py."""

from __future__ import annotations

import csv
import json
import re

import pytest

from conftest import write_tiny_model
from pipeline.config import load_config
from pipeline.errors import RowError
from pipeline.io.registry import Recording, Registry
from pipeline.sheets.local_csv import LocalCsvSheet
from pipeline.sleep.model import LABEL_FREE_VERSION
from pipeline.sleep.models import available_models, check_model_cell, model_version, recording_model


@pytest.fixture
def cfg(project):
    """The project's configuration, with two trained models and a file that is not one."""
    models = project.dir / "models"
    write_tiny_model(models / "lab-2026.json", name="lab-2026")
    write_tiny_model(models / "Night_v2.json", name="night")
    (models / "broken.json").write_text('{"not": "a model"}\n')
    (models / "README.txt").write_text("models trained by the lab\n")
    return load_config(project.config_path)


@pytest.mark.parametrize("cell, choice", [
    ("", ""), ("  ", ""),
    ("label-free", "label-free"), ("Label free", "label-free"), ("LABEL_FREE", "label-free"),
    ("lab-2026", "lab-2026"), ("lab-2026.json", "lab-2026"), (" lab-2026 ", "lab-2026"),
    ("night_v2", "Night_v2"),  # case aside, as column labels
])
def test_a_cell_chooses_the_default_the_label_free_scorer_or_a_model_in_the_folder(cfg, cell, choice):
    assert check_model_cell(cell, cfg) == choice


def test_the_choice_selects_a_model_file_in_the_folder_or_the_configured_model(cfg, project):
    models = project.dir / "models"
    assert recording_model("lab-2026", cfg) == str(models / "lab-2026.json")
    assert recording_model("label-free", cfg) is None
    assert recording_model("", cfg) is None  # sleep.model: null
    assert recording_model("", {**cfg, "sleep": {**cfg["sleep"], "model": "/lab/m.json"}}) == "/lab/m.json"
    assert model_version(recording_model("lab-2026", cfg)).startswith("xgboost-lab-2026-")


def test_an_unknown_model_is_told_with_the_models_there_are(cfg):
    with pytest.raises(RowError) as e:
        check_model_cell("lab-2025", cfg)
    assert str(e.value) == ("The sleep model 'lab-2025' was not found in models/; available: broken, lab-2026, "
                            "Night_v2, label-free. Please write one of these, or leave the cell empty for the lab's "
                            "default.")


def test_a_file_that_is_not_a_model_is_told_and_not_offered(cfg):
    with pytest.raises(RowError) as e:
        check_model_cell("broken", cfg)
    message = str(e.value)
    assert message.startswith("The sleep model 'broken' in models/ cannot be read: it was not made by `ephys train`")
    assert "available: lab-2026, Night_v2, label-free." in message


@pytest.mark.parametrize("cell", ["../x", "../models/lab-2026", "/etc/passwd", "a/b", "models/lab-2026",
                                  "..", ".", ".hidden", "~/lab-2026", "lab-2026\\x", "$(rm -rf ~)", "lab 2026",
                                  "x\x00y", "l" * 101])
def test_a_cell_never_names_a_path_or_anything_but_a_file_in_the_folder(cfg, cell):
    with pytest.raises(RowError, match=r"^The sleep model '.*' (must be the name of a model in models/, not a "
                                       r"path|was not found in models/); available: "):
        check_model_cell(cell, cfg)


def test_a_missing_models_folder_offers_the_label_free_scorer(project):
    cfg = load_config(project.config_path)
    assert available_models(cfg["sleep"]["models_dir"]) == []
    with pytest.raises(RowError, match=r"not found in models/; available: label-free\. "):
        check_model_cell("lab-2026", cfg)


def test_the_choice_survives_the_registry_and_an_old_registry_reads_as_the_default(tmp_path):
    reg = Registry(tmp_path)
    reg.add(Recording("r1", "m1", "/data/r1", sleep_model="lab-2026"))
    reg.add(Recording("r2", "m1", "/data/r2"))
    assert reg.read()["r1"].sleep_model == "lab-2026" and reg.read()["r2"].sleep_model == ""
    # Registering the same data again takes its new choice, and keeps the rest.
    first = reg.read()["r1"]
    reg.add(Recording("r1", "m1", "/data/r1", sleep_model="label-free"))
    again = reg.read()["r1"]
    assert again.sleep_model == "label-free" and again.registered_at == first.registered_at
    # A registry written before the column existed.
    (tmp_path / "recordings.tsv").write_text("recording_id\tanimal\traw_path\tnotes\trun_id\tregistered_at\tsource\n"
                                             "old\tm1\t/data/old\t\t\t2026-01-01T00:00:00+00:00\tsheet\n")
    assert reg.read()["old"].sleep_model == ""


def test_a_sheet_without_the_column_reads_it_empty_and_never_gets_it(tmp_path):
    path = tmp_path / "sheet.csv"
    path.write_text("recording_id,animal,raw_path\r\nr1,m1,p1\r\n")
    sheet = LocalCsvSheet(path)
    (row,) = sheet.read_rows()
    assert row["sleep_model"] == ""
    sheet.apply_updates([(("r1", "m1", "p1"), {"status": "done", "message": "ok", "rerun": ""})])
    header = next(csv.reader(path.open(newline="")))
    assert "sleep_model" not in header and "status" in header
    # A lab's own label for it, matched as every header label is.
    path.write_text("Recording ID,Animal,Raw path,Sleep model\r\nr1,m1,p1,lab-2026\r\n")
    assert LocalCsvSheet(path).read_rows()[0]["sleep_model"] == "lab-2026"


def test_each_recording_s_classify_job_takes_its_own_model_and_its_version(project, cfg):
    """A dry run (no data needed: inspect is still to do): the classify job of a recording
    whose row chose a model has the file as an input and passes it; the figures record
    its version; the other recording keeps the configured (label-free) scorer."""
    for rec in ("rec1", "rec2"):
        (project.raw / rec).mkdir()
    project.ephys("add", "rec1", "m1", "raw/rec1", "--sleep-model", "lab-2026", check=True)
    project.ephys("add", "rec2", "m1", "raw/rec2", check=True)
    refused = project.ephys("add", "rec3", "m1", "raw/rec1", "--sleep-model", "../models/lab-2026")
    assert refused.returncode == 2 and "not a path" in refused.stderr
    dry = project.snakemake("-n", "-p", "--cores", "1")
    assert dry.returncode == 0, dry.stderr
    model = project.dir / "models" / "lab-2026.json"
    version = model_version(model)

    def job(rule, rec):
        m = re.search(rf"rule {rule}:\n(?:\s+.*\n)*?\s+wildcards: rec={rec}\n(?:.*\n)*?Shell command: (.*)", dry.stdout)
        assert m, dry.stdout
        return m.group(0)

    rec1, rec2 = job("classify", "rec1"), job("classify", "rec2")
    assert f"input: results/rec1/recording.json, <TBD>, {model}" in rec1
    assert f"--model {model} " in rec1 and "--model label-free " in rec2
    assert str(model) not in rec2
    settings = {rec: json.loads(re.search(r"--analysis-settings '([^']*)'", job("figures", rec)).group(1))
                for rec in ("rec1", "rec2")}
    assert settings["rec1"]["classify"]["model"] == version
    assert settings["rec2"]["classify"]["model"] == LABEL_FREE_VERSION


def test_a_done_row_names_the_trained_model_that_scored_it(tmp_path):
    from pipeline.io.atomic import write_json_atomic
    from pipeline.layout import RecordingPaths
    from pipeline.progress import done_message

    summary = RecordingPaths("rec1", tmp_path).summary
    fractions = {"wake": 0.5, "nrem": 0.4, "rem": 0.1, "unclassified": 0.0}
    write_json_atomic(summary, {"fractions": fractions, "method": "xgboost", "model_version": "xgboost-lab-2026-abc"})
    assert done_message(tmp_path, "rec1", 6) == ("Finished: 6 files published (wake 50%, nrem 40%, rem 10%). Scored by "
                                                 "the sleep model xgboost-lab-2026-abc.")
    write_json_atomic(summary, {"fractions": fractions, "method": "label-free", "model_version": LABEL_FREE_VERSION})
    assert done_message(tmp_path, "rec1", 6) == "Finished: 6 files published (wake 50%, nrem 40%, rem 10%)."


def test_a_cell_is_compared_with_a_registered_choice_by_the_model_it_selects(cfg):
    from pipeline.sleep.models import same_model

    assert same_model("Label free", "", cfg), "sleep.model is null: the default is the label-free scorer"
    assert same_model("LAB-2026.json", "lab-2026", cfg)
    assert not same_model("lab-2026", "", cfg) and not same_model("", "lab-2026", cfg)
    configured = {**cfg, "sleep": {**cfg["sleep"], "model": "/lab/m.json"}}
    assert not same_model("label-free", "", configured)
