"""Where everything lives: the one module that knows output, log and state paths.

The Snakemake rules take their patterns from here (`{rec}` is the recording id, `{k}`
a segment index), and the CLI, the poller and the status code ask `RecordingPaths` for
the same files, so a path is written once. All paths are relative to the project folder
(the folder of config.yaml), which is the workflow's working directory.
"""

from __future__ import annotations

from pathlib import Path

# Outputs of one recording, by stage.
OUTPUTS = {
    "recording_json": "results/{rec}/recording.json",
    "lfp": "results/{rec}/lfp/seg{k}.fif",
    "lfp_qc": "results/{rec}/lfp/seg{k}.json",
    # Only when lfp.rate is too low for the spectrogram stage's muscle tone from the LFP:
    # the convert job estimates it from the raw data (pipeline.dsp.lfp_emg).
    "lfp_emg": "results/{rec}/lfp/seg{k}-emg.npz",
    "spectrogram": "results/{rec}/spectrogram/seg{k}.npz",
    "features": "results/{rec}/features/seg{k}.tsv",
    # Only for recordings whose raw folder holds video tracking (pipeline/tracking.py).
    "head_speed": "results/{rec}/tracking/head_speed.tsv",
    "head_speed_json": "results/{rec}/tracking/head_speed.json",
    "hypnogram": "results/{rec}/sleep/hypnogram.tsv",
    "probabilities": "results/{rec}/sleep/probabilities.tsv",
    "annotations": "results/{rec}/sleep/hypnogram-annot.fif",
    "summary": "results/{rec}/sleep/summary.json",
    "review": "results/{rec}/sleep/review.tsv",
    "overview": "results/{rec}/figures/overview.png",
    "architecture": "results/{rec}/figures/architecture.png",
    "channel_qc": "results/{rec}/figures/channel_qc.png",  # quality control, channels and all
    "report": "results/{rec}/figures/report.pdf",
    "provenance": "results/{rec}/provenance.json",
    "published": "results/{rec}/published.json",
}

# What the figures stage writes (one job: `ephys figures`).
FIGURE_OUTPUTS = ("overview", "architecture", "channel_qc", "report", "provenance")

# One log per job; the first line starting with "ERROR: " says why a job failed.
LOGS = {
    "inspect": "logs/{rec}/inspect.log",
    "convert": "logs/{rec}/convert/seg{k}.log",
    "spectrogram": "logs/{rec}/spectrogram/seg{k}.log",
    "features": "logs/{rec}/features/seg{k}.log",
    "head_speed": "logs/{rec}/head_speed.log",
    "classify": "logs/{rec}/classify.log",
    "figures": "logs/{rec}/figures.log",
    "publish": "logs/{rec}/publish.log",
}

# The files the PI gets, in the results store.
PUBLISHED = ("overview", "architecture", "channel_qc", "report", "hypnogram", "provenance")

# What spans an animal's recordings: remade whenever one of them is published, and
# published into the animal's folder of the store. Recording ids cannot start with "_",
# so this folder never meets a recording's.
ANIMAL_OUTPUTS = {
    "animal_summary_png": "results/_animals/{animal}/animal_summary.png",
    "animal_summary_csv": "results/_animals/{animal}/animal_summary.csv",
}
ANIMAL_LOCK = "results/_animals/{animal}/.lock"
STATE_DIR = "state"
REGISTRY = "state/recordings.tsv"
RUNS_DIR = "state/runs"
# Outputs and logs of a recording's earlier run, set aside when a rerun starts afresh
# (the latest one per recording is kept, for a maintainer to look at or restore).
SET_ASIDE_DIR = "state/set-aside/{rec}"
POLLER_LOCK = "state/poller.lock"
CORE_SLOTS_DIR = "state/cores"
RUN_LOGS_DIR = "logs/runs"
POLLER_LOG = "logs/poller.log"  # rotated: POLLER_LOG_BYTES each, POLLER_LOG_KEEP old ones kept
POLLER_LOG_BYTES = 5_000_000
POLLER_LOG_KEEP = 5


class RecordingPaths:
    """The outputs and logs of one recording, under the project folder `base`."""

    def __init__(self, recording_id: str, base: str | Path = "."):
        self.recording_id = recording_id
        self.base = Path(base)
        self.results = self.output("recording_json").parent
        self.logs = self.log("inspect").parent

    def output(self, name: str, k: int | None = None) -> Path:
        return self.base / OUTPUTS[name].format(rec=self.recording_id, k=k)

    def log(self, stage: str, k: int | None = None) -> Path:
        return self.base / LOGS[stage].format(rec=self.recording_id, k=k)

    def segment_outputs(self, name: str, n_segments: int) -> list[Path]:
        return [self.output(name, k) for k in range(n_segments)]

    def __getattr__(self, name: str) -> Path:
        # paths.recording_json, paths.published ...: the outputs that have no segment index.
        if name in OUTPUTS and "{k}" not in OUTPUTS[name]:
            return self.output(name)
        raise AttributeError(name)


def published_names() -> set[str]:
    """Names of the files the pipeline puts into a recording's folder of the store;
    anything else there was put by a person."""
    return {Path(OUTPUTS[name]).name for name in PUBLISHED}


def animal_output(name: str, animal: str, base: str | Path = ".") -> Path:
    """An output of an animal's summary (ANIMAL_OUTPUTS) under the project folder `base`."""
    return Path(base) / ANIMAL_OUTPUTS[name].format(animal=animal)


def output_in(folder: str | Path, name: str, k: int | None = None) -> Path:
    """Where an output goes in `folder` standing for results/REC/ (commands run by hand)."""
    return Path(folder) / Path(OUTPUTS[name].format(rec="_", k=k)).relative_to("results/_")


def stage_of_log(logs_dir: Path, log_file: Path) -> str:
    """The stage a job log belongs to (`convert` for logs/REC/convert/seg3.log)."""
    return log_file.relative_to(logs_dir).parts[0].removesuffix(".log")
