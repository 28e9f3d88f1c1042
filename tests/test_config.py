"""config.yaml: the embedded defaults are valid, and every mistake gets one sentence."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from pipeline.config import load_config, validate_config
from pipeline.errors import ConfigError

DEFAULTS = yaml.safe_load((REPO / "config.yaml").read_text())


def test_embedded_defaults_are_valid_and_paths_resolved():
    cfg = load_config(REPO / "config.yaml")
    assert cfg["lfp"]["rate"] == 1000 and cfg["lfp"]["segment_s"] == 3600 and cfg["sleep"]["epoch_s"] == 4
    assert cfg["sheet"]["path"] == str(REPO / "sheet.csv")
    assert cfg["data_roots"] == [str(REPO / "raw")]
    assert cfg["sleep"]["model"] is None


def test_keys_left_out_take_the_schema_defaults_and_paths_the_config_folder(tmp_path):
    cfg = copy.deepcopy(DEFAULTS)
    del cfg["sheet"]["path"], cfg["executor"]["cores"], cfg["spectrogram"]["fmax"], cfg["poller"]["interval_s"]
    out = validate_config(cfg, base_dir=tmp_path)
    assert out["sheet"]["path"] == str(tmp_path / "sheet.csv")
    assert out["executor"]["cores"] == 2 and out["spectrogram"]["fmax"] == 200 and out["poller"]["interval_s"] == 60
    assert out["store"]["path"] == str(tmp_path / "published") and out["data_roots"] == [str(tmp_path / "raw")]
    assert cfg["sheet"] == {"backend": "local"}, "the caller's mapping is not changed"
    del cfg["spectrogram"], cfg["poller"]  # sections whose every key has a default
    out = validate_config(cfg, base_dir=tmp_path)
    assert out["spectrogram"] == {"time_bandwidth": 2.0, "fmax": 200, "per_channel": False} and out["poller"] == {"interval_s": 60}


def test_every_key_has_a_comment():
    """Each key of the defaults is documented on the line(s) above it."""
    lines = (REPO / "config.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- "):
            continue
        key = stripped.split(":")[0]
        indent = len(line) - len(line.lstrip())
        above = [l for l in lines[:i] if l.strip()]
        if not above:
            continue
        prev = above[-1]
        is_parent_of_block = stripped.endswith(":")
        documented = prev.strip().startswith("#") or is_parent_of_block or indent >= 6
        assert documented, f"config.yaml key {key!r} (line {i + 1}) has no comment above it"


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["lfp"].update(rat=1000), "unknown key 'rat' in lfp; allowed keys are: rate, segment_s."),
    (lambda c: c["lfp"].update(rate="fast"), "lfp.rate is 'fast', but it must be a number."),
    (lambda c: c["lfp"].update(rate=0), "lfp.rate is 0, but it must be greater than 0."),
    (lambda c: c["sheet"].update(backend="excel"), "sheet.backend is 'excel', but it must be one of: 'local', 'google'."),
    (lambda c: c.pop("sleep"), "the key sleep is missing."),
    (lambda c: c.update(colour="red"), "unknown key 'colour'"),
    (lambda c: c["executor"].update(cores=0), "executor.cores is 0, but it must be at least 1."),
    (lambda c: c["sleep"].update(epoch_s=7), "sleep.epoch_s is 7, but it must be one of: 2, 2.5, 4, 5, 10."),
    (lambda c: c["lfp"].update(segment_s=3602), "sleep.epoch_s (4) must divide lfp.segment_s (3602) exactly."),
    (lambda c: c["sleep"].update(min_confidence=2), "sleep.min_confidence is 2, but it must be at most 1."),
    (lambda c: c["channel_maps"]["default"].update(roles={"emg": "muscle"}),
     "roles.emg names the region 'muscle', which is not among the regions (cortex, hippocampus, thalamus, emg)"),
    (lambda c: c["channel_maps"]["default"].update(roles={"eeg": "cortex"}),
     "unknown key 'eeg' in channel_maps.default.roles; allowed keys are: emg, slow_wave, theta."),
    (lambda c: c["channel_maps"]["default"]["regions"].update(cortex="CSC9-CSC3"), "not a range like CSC1-CSC20"),
    (lambda c: c["channel_maps"]["default"]["regions"].update(thalamus="CSC5"), "channel CSC5 is in both cortex and thalamus"),
    (lambda c: c.update(data_roots=[]), "data_roots must not be empty."),
    (lambda c: c["sheet"].update(spreadsheet_id="abc"),
     "unknown key 'spreadsheet_id' in sheet; allowed keys are: backend, path."),
    (lambda c: c["executor"].update(backend="pbs"), "executor.backend is 'pbs', but it must be one of: 'local', 'slurm'."),
    (lambda c: c["store"].pop("backend"), "the key store.backend is missing."),
])
def test_a_wrong_value_gets_one_sentence_naming_the_key(mutate, expected):
    cfg = copy.deepcopy(DEFAULTS)
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, base_dir=REPO)
    message = str(err.value)
    assert expected in message
    assert message.count("\n") == 0


def test_cli_and_snakemake_stop_on_a_bad_config_without_a_traceback(project):
    text = project.config_path.read_text().replace("segment_s:", "segment_seconds:")
    project.config_path.write_text(text)
    proc = project.ephys("status")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("ERROR: " + str(project.config_path) +
                                   ": unknown key 'segment_seconds' in lfp; allowed keys are: rate, segment_s.")
    smk = project.snakemake("-n", "--cores", "1")
    assert smk.returncode != 0
    out = smk.stdout + smk.stderr
    assert "ERROR: config.yaml: unknown key 'segment_seconds' in lfp" in out
    assert "Traceback" not in out


def test_invalid_yaml_is_reported_with_its_line(tmp_path):
    bad = tmp_path / "config.yaml"
    bad.write_text("lfp:\n  rate: [1000\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML at line \d"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no configuration file"):
        load_config(tmp_path / "nope.yaml")


def test_a_sleep_model_file_that_is_missing_or_not_a_model_is_named(tmp_path):
    from pipeline.sleep.models import model_version

    cfg = copy.deepcopy(DEFAULTS)
    cfg["sleep"]["model"] = "models/sleep.json"
    cfg = validate_config(cfg, base_dir=tmp_path)
    assert cfg["sleep"]["model"] == str(tmp_path / "models" / "sleep.json")  # relative to the config's folder
    with pytest.raises(ConfigError, match="sleep.model names '.*models/sleep.json', which is not a file; make one "
                                          "with `ephys train`"):
        model_version(cfg["sleep"]["model"])
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "sleep.json").write_text('{"weights": [1, 2]}')
    with pytest.raises(ConfigError, match="sleep.json is not a sleep model file of this pipeline"):
        model_version(cfg["sleep"]["model"])


# Prepended to a command run with `python -c`: an audit hook counts every opening of the
# file named by the first argument, by whatever code, and the count is printed last.
COUNTING_OPENS = """
import atexit, os, sys
counted, opened = os.path.realpath(sys.argv.pop(1)), []
def count(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) and os.path.realpath(args[0]) == counted:
        opened.append(args[0])
sys.addaudithook(count)
atexit.register(lambda: print(f"opened {len(opened)} time(s)", file=sys.stderr))
"""


def test_the_configuration_is_read_once_by_a_stage_command_and_by_the_workflow(project):
    raw = project.raw / "rec1"
    raw.mkdir()
    (raw / "rec.dat").write_bytes(bytes(2 * 2 * 8000))
    (raw / "recording.yaml").write_text("sampling_rate: 2000\nn_channels: 2\nuv_per_bit: 0.195\n")
    # Every setting inspect uses comes from the configuration here (no options): the
    # LFP rate, the segment length, the default channel map and the data roots.
    stage = subprocess.run([sys.executable, "-c", COUNTING_OPENS + "from pipeline.cli import main; sys.exit(main())",
                            str(project.config_path), "--config", str(project.config_path), "inspect", str(raw),
                            "recording.json"], cwd=project.dir, capture_output=True, text=True, timeout=120)
    assert stage.returncode == 0, stage.stderr[-3000:]
    assert stage.stderr.splitlines()[-1] == "opened 1 time(s)", stage.stderr[-3000:]
    # The workflow's own reading, in a dry run that plans the recording's jobs. (Given with
    # --configfile, the file is opened once more by Snakemake itself, which parses it
    # into its `config`; the workflow leaves that unused: rules/common.smk.)
    project.ephys("add", "rec1", "m1", str(raw), check=True)
    dry = subprocess.run([sys.executable, "-c", COUNTING_OPENS + "from snakemake.cli import main; "
                          "sys.argv[0] = 'snakemake'; main()", str(project.config_path),
                          "--snakefile", str(REPO / "Snakefile"), "-n", "--cores", "1"],
                         cwd=project.dir, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0 and "rule classify" in dry.stdout, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert dry.stderr.splitlines()[-1] == "opened 1 time(s)", dry.stderr[-3000:]
