# Shared helpers: the configuration, the working directory, the registry, input functions.

import json
import os
import shlex
import sys
from functools import lru_cache
from pathlib import Path

from pipeline import layout
from pipeline.channels import CHANNEL_MAP_FILE, ChannelMap
from pipeline.config import load_config
from pipeline.dsp.lfp_emg import usable_band
from pipeline.errors import ConfigError
from pipeline.io.recording_info import RecordingInfo
from pipeline.io.registry import Registry
from pipeline.provenance import ANALYSIS_STAGES, stage_settings
from pipeline.sleep.models import model_version, recording_model

# The configuration is the one file given with --configfile (else ./config.yaml), read
# and checked by the pipeline itself: nothing else is merged into it.
if len(workflow.configfiles) > 1:
    sys.exit("ERROR: give one configuration file (--configfile FILE); it is read alone.\n")
if getattr(workflow.config_settings, "config", None):  # values given with --config
    sys.exit("ERROR: --config KEY=VALUE is not read by this workflow; change the configuration file "
             "(or give another with --configfile FILE).\n")
try:
    CFG = load_config(workflow.configfiles[0] if workflow.configfiles else "config.yaml", flag="--configfile")
except ConfigError as e:
    sys.exit(f"ERROR: {e}\n")


# Everything (results/, logs/, state/) lives in the configuration file's folder.
workdir: CFG["base_dir"]


# Jobs run the `ephys` command of the Python environment running Snakemake, and read
# from this configuration file what changes no output (data_roots: which folders raw
# files may lie in). Passed in the environment, not the rules' commands: a changed
# command would make Snakemake process every recording again.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
os.environ.update(EPHYS_CONFIG=CFG["config_file"])


envvars:
    "PATH",
    "EPHYS_CONFIG",

OUT = layout.OUTPUTS
LOG = layout.LOGS
RECORDINGS = Registry(Path(CFG["base_dir"]) / layout.STATE_DIR).read()
try:
    # The configuration values of each stage, by stage: the rules' params are taken from
    # here, and the figures record all of them (and their hash) as the provenance.
    SETTINGS = stage_settings(CFG, model_version=model_version(CFG["sleep"]["model"]))
except ConfigError as e:
    sys.exit(f"ERROR: {e}\n")


# An LFP rate too low for the muscle tone from the LFP (pipeline.dsp.lfp_emg): the convert
# jobs estimate it from the raw data, and the spectrogram jobs take it from them. Only
# then do the rules name that output, so a sufficient rate changes nothing.
EMG_AT_CONVERT = usable_band(SETTINGS["inspect"]["lfp_rate"]) is None


wildcard_constraints:
    rec=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    k=r"\d+",


def all_targets():
    """Every registered recording's publication, but for published recordings whose raw
    folder is gone (archived): those are left as they are, not inspected again."""
    targets = []
    for rec_id, rec in RECORDINGS.items():
        published = OUT["published"].format(rec=rec_id)
        if not Path(rec.raw_path).is_dir() and Path(published).exists():
            print(f"{rec_id}: its raw folder {rec.raw_path} is gone; its published results are kept as they are.",
                  file=sys.stderr)
            continue
        targets.append(published)
    return targets


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
    return range(len(RecordingInfo.load(checkpoints.inspect.get(rec=rec).output[0]).segments))


def segment_outputs(name):
    def inputs(wildcards):
        return [OUT[name].format(rec=wildcards.rec, k=k) for k in segment_indices(wildcards.rec)]

    return inputs


def channel_map_param(wildcards):
    """The channel map inspect will apply: the raw folder's own, else channel_maps.default.
    (So that editing the default re-inspects only the recordings that use it.)"""
    from pipeline.io.raw import lies_inside

    own = Path(registered(wildcards.rec).raw_path) / CHANNEL_MAP_FILE
    if not own.is_file():
        return json_param(CFG["channel_maps"]["default"])
    if not lies_inside(own, CFG["data_roots"]):
        # A link out of the data roots, not to be read: inspect refuses the folder and says why.
        return UNREADABLE_MAP
    try:
        return json_param(ChannelMap.from_file(own).to_dict())
    except (OSError, ValueError):
        return UNREADABLE_MAP  # inspect reports what is wrong with it


def tracking_inputs(wildcards):
    """The recording's video tracking: the DeepLabCut CSV its sheet row (or `ephys add
    --tracking`) names, else the raw folder's *DLC*.csv or tracking.csv; and the
    tracking.yaml beside it. The head-speed job's inputs, so that a new, another or a
    re-tracked video computes it again. Read from the registry and the folder, not
    recording.json, so adding a video re-inspects and re-converts nothing."""
    from pipeline.io.tracking import TRACKING_SETTINGS, tracking_candidates

    rec = registered(wildcards.rec)
    if rec.tracking:
        own = Path(rec.tracking)
        if not own.is_file():
            # Moved or removed since the row named it: one line in the run's log, which the row shows.
            sys.exit(f"ERROR: the tracking file {own} named for {wildcards.rec} is no longer there; put it back, "
                     "or give its new place in the row's tracking cell and tick rerun.\n")
        found, folder = [str(own)], own.parent
    else:
        folder = Path(rec.raw_path)
        found = [str(p) for p in tracking_candidates(folder)]
    if found and (folder / TRACKING_SETTINGS).is_file():
        found.append(str(folder / TRACKING_SETTINGS))
    return found


def head_speed_source(wildcards):
    """What `ephys head-speed` reads the tracking from: the recording's own CSV, else its
    raw folder (a path given as a quoted param, never spliced into the command)."""
    rec = registered(wildcards.rec)
    return rec.tracking or rec.raw_path


def head_speed_outputs(wildcards):
    """Head speed per epoch for classify and the figures, when the recording has tracking."""
    if not tracking_inputs(wildcards):
        return []
    return [OUT["head_speed"].format(rec=wildcards.rec), OUT["head_speed_json"].format(rec=wildcards.rec)]


def head_speed_option(wildcards, input):
    """`--head-speed TSV` for a recording with tracking, else nothing."""
    given = getattr(input, "head_speed", [])
    paths = [p for p in ([given] if isinstance(given, str) else given) if str(p).endswith(".tsv")]
    return f"--head-speed {shlex.quote(paths[0])}" if paths else ""


def grows(amount):
    """A resource that grows with each attempt: a job that ran out of memory or time on
    a cluster is tried again (profile: retries) with twice, then three times as much."""
    return lambda wildcards, attempt: amount * attempt


def json_param(value):
    """A configuration value as one compact, stable string (a param, and a CLI option)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# The param for a folder's own map that cannot be read: a valid map (inspect parses its
# --channel-map before it reads the folder), marked so that no other helper takes it
# for the map in use.
UNREADABLE_MAP = json_param({"regions": {"unreadable channel_map.yaml": []}})


def sleep_model_of(rec):
    """The sleep model of a recording: the one its sheet row (or `ephys add --sleep-model`)
    chose, as registered, else sleep.model. None: the label-free scorer; else a model file."""
    return recording_model(registered(rec).sleep_model, CFG)


@lru_cache(maxsize=None)
def _model_version(spec):
    try:
        return model_version(spec)
    except ConfigError as e:  # a file that is gone since it was chosen, or is no model
        sys.exit(f"ERROR: {e}\n")


def sleep_model_input(wildcards):
    """A trained model file is an input of classify: a new or another model re-runs
    classification (and what follows it), nothing before it."""
    spec = sleep_model_of(wildcards.rec)
    if spec and not Path(spec).is_file():
        # Removed since the row chose it: one line in the run's log, which the row shows.
        sys.exit(f"ERROR: the sleep model {Path(spec).name} chosen for {wildcards.rec} is no longer in "
                 f"{Path(spec).parent}; a maintainer can put it back, or choose another in its row and tick rerun.\n")
    return [spec] if spec else []


def sleep_model_param(wildcards):
    return sleep_model_of(wildcards.rec) or "label-free"


def classify_settings(rec):
    """The classify stage's values for one recording: the configured ones, with the
    version of the recording's own sleep model."""
    return {**SETTINGS["classify"], "model": _model_version(sleep_model_of(rec))}


def analysis_settings(wildcards):
    """The values every analysis stage of a recording was given, as one JSON param of the
    figures (its provenance): a changed value re-runs the figures anyway, through their inputs."""
    settings = {stage: SETTINGS[stage] for stage in ANALYSIS_STAGES}
    settings["classify"] = classify_settings(wildcards.rec)
    if tracking_inputs(wildcards):
        settings["tracking"] = SETTINGS["tracking"]
    own_map = channel_map_param(wildcards)
    if own_map != UNREADABLE_MAP:
        settings["inspect"] = stage_settings(CFG, model_version=SETTINGS["classify"]["model"],
                                             channel_map=json.loads(own_map))["inspect"]
    return json_param(settings)
