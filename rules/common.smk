# Shared helpers: the validated configuration, the registry, input functions.

import json
import shlex
import sys
from pathlib import Path

from pipeline.config import validate_config
from pipeline.errors import ConfigError
from pipeline.io.registry import Registry

# The configuration file the jobs read (the one given to snakemake, else ./config.yaml).
CONFIG_FILE = str(Path(workflow.configfiles[-1] if workflow.configfiles else "config.yaml").resolve())

try:
    CFG = validate_config(config, base_dir=Path.cwd(), source=Path(CONFIG_FILE).name)
except ConfigError as e:
    sys.exit(f"ERROR: {e}\n")

EPHYS = f"{shlex.quote(sys.executable)} -m pipeline --config {shlex.quote(CONFIG_FILE)}"
RECORDINGS = Registry("state").read()


wildcard_constraints:
    rec=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    k=r"\d+",


def all_targets():
    return [f"results/{r}/published.json" for r in RECORDINGS]


def registered(rec):
    if rec not in RECORDINGS:
        raise ValueError(f"recording {rec!r} is not registered (state/recordings.tsv); add it with `ephys add`")
    return RECORDINGS[rec]


RAW_SUFFIXES = {".ncs", ".rhd", ".oebin", ".dat", ".continuous", ".npy"}


def raw_files(wildcards):
    """The raw data files of a recording (any format, Open Ephys's nested folders
    included), so Snakemake notices when they change."""
    folder = Path(registered(wildcards.rec).raw_path)
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in RAW_SUFFIXES)


def segment_indices(rec):
    info = checkpoints.inspect.get(rec=rec).output[0]
    with open(info) as f:
        return range(len(json.load(f)["segments"]))


def segment_outputs(pattern):
    def inputs(wildcards):
        return [pattern.format(rec=wildcards.rec, k=k) for k in segment_indices(wildcards.rec)]

    return inputs
