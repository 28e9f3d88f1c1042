# Shared helpers: the configuration, the working directory, the registry, input functions.

import json
import os
import sys
from pathlib import Path

from pipeline import layout
from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.io.registry import Registry

# The configuration is the one file given with --configfile (else ./config.yaml), read
# and checked by the pipeline itself: nothing else is merged into it.
if len(workflow.configfiles) > 1:
    sys.exit("ERROR: give one configuration file (--configfile FILE); it is read alone.\n")
try:
    CFG = load_config(workflow.configfiles[0] if workflow.configfiles else "config.yaml")
except ConfigError as e:
    sys.exit(f"ERROR: {e}\n")


# Everything (results/, logs/, state/) lives in the configuration file's folder.
workdir: CFG["base_dir"]


# Jobs run the `ephys` command of the Python environment running Snakemake.
envvars:
    "PATH",


os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")

OUT = layout.OUTPUTS
LOG = layout.LOGS
RECORDINGS = Registry(Path(CFG["base_dir"]) / layout.STATE_DIR).read()


wildcard_constraints:
    rec=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    k=r"\d+",


def all_targets():
    return [OUT["published"].format(rec=r) for r in RECORDINGS]


def registered(rec):
    if rec not in RECORDINGS:
        raise ValueError(f"recording {rec!r} is not registered (state/recordings.tsv); add it with `ephys add`")
    return RECORDINGS[rec]


def raw_inputs(wildcards):
    """Every file inspect reads (raw data, sidecars, the folder's channel map), so that
    Snakemake inspects again when one of them changes."""
    from pipeline.io.raw import raw_input_files

    folder = Path(registered(wildcards.rec).raw_path)
    return [str(p) for p in raw_input_files(folder)] if folder.is_dir() else []


def segment_indices(rec):
    with open(checkpoints.inspect.get(rec=rec).output[0]) as f:
        return range(len(json.load(f)["segments"]))


def segment_outputs(name):
    def inputs(wildcards):
        return [OUT[name].format(rec=wildcards.rec, k=k) for k in segment_indices(wildcards.rec)]

    return inputs


def json_param(value):
    """A configuration value as one compact, stable string (a param, and a CLI option)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
