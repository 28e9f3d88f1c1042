"""Provenance: which version of the analysis, with which configuration values and which
sleep model, made a recording's results.

The rules give every stage its configuration values as params; `stage_settings` says
which values each stage uses (the one place that knows it: the rules read their params
from it), and the figures stage records all of them in `provenance.json`, in the PDF's
metadata and in every PNG's metadata. The configuration hash is that of a canonical JSON
of exactly those values, so two recordings with the same hash were analysed alike.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime

from pipeline import __version__
from pipeline.channels import ChannelMap

# The stages whose configuration values made the inputs of the figures, in workflow order.
ANALYSIS_STAGES = ("inspect", "spectrogram", "classify")
# Stages that run for some recordings only (tracking: those with a video tracking file):
# the provenance holds their values where they ran.
OPTIONAL_STAGES = ("tracking",)
HASH_LENGTH = 12  # hex digits shown to people; 48 bits keep two configurations apart


def canonical_json(value) -> str:
    """One stable spelling of a JSON value: sorted keys, no spaces, floats as Python spells them."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_hash(value) -> str:
    """The configuration hash of `value` (a stage's settings, or all of them)."""
    return hashlib.sha256(canonical_json(value).encode("ascii")).hexdigest()[:HASH_LENGTH]


def stage_settings(config: dict, *, model_version: str, channel_map: dict | None = None) -> dict[str, dict]:
    """The configuration values each stage uses, by stage, as the rules pass them on.

    `channel_map` is the map inspect applies to this recording (the raw folder's own,
    else channel_maps.default); it is put in one canonical form, so a map written as a
    range and the same map written out channel by channel hash alike. `model_version` is
    the sleep model that sleep.model selects (pipeline.sleep.staging.model_version).
    """
    cmap = channel_map if channel_map is not None else config["channel_maps"]["default"]
    figures = config["figures"]
    return {
        "inspect": {"lfp_rate": config["lfp"]["rate"], "segment_s": config["lfp"]["segment_s"],
                    "channel_map": ChannelMap.from_dict(cmap).to_dict()},
        "spectrogram": {"epoch_s": config["sleep"]["epoch_s"],
                        "time_bandwidth": config["spectrogram"]["time_bandwidth"],
                        "fmax": config["spectrogram"]["fmax"],
                        "per_channel": config["spectrogram"]["per_channel"]},
        "classify": {"epoch_s": config["sleep"]["epoch_s"], "model": model_version,
                     "min_confidence": config["sleep"]["min_confidence"], "min_bout_s": config["sleep"]["min_bout_s"],
                     "n_review": config["sleep"]["n_review"]},
        "figures": {"lights_on": figures["lights_on"], "lights_off": figures["lights_off"],
                    "hours_per_page": figures["hours_per_page"]},
        "tracking": {"epoch_s": config["sleep"]["epoch_s"], **config["tracking"]},
    }


@dataclass
class Provenance:
    """What made a recording's results; written as provenance.json and into every figure."""

    recording_id: str
    animal: str
    pipeline_version: str
    config_hash: str  # of every stage's settings together
    stage_config_hashes: dict[str, str]
    settings: dict[str, dict]  # the values themselves, by stage
    model_version: str
    run_id: str
    made_at: str
    inspected_by: str = ""  # the pipeline version that wrote recording.json

    @classmethod
    def make(cls, *, recording_id: str, animal: str, settings: dict[str, dict], model_version: str,
             run_id: str | None, inspected_by: str = "") -> "Provenance":
        order = [s for s in (*ANALYSIS_STAGES, "figures") if s in settings] + sorted(
            s for s in settings if s not in (*ANALYSIS_STAGES, "figures"))
        settings = {stage: settings[stage] for stage in order}  # workflow order, for people to read
        return cls(recording_id=recording_id, animal=animal, pipeline_version=__version__,
                   config_hash=config_hash(settings),
                   stage_config_hashes={stage: config_hash(values) for stage, values in settings.items()},
                   settings=settings, model_version=model_version, run_id=run_id or "-",
                   made_at=datetime.now().astimezone().isoformat(timespec="seconds"), inspected_by=inspected_by)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Provenance":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def line(self) -> str:
        """The provenance in one line, as every figure and report page shows it."""
        return (f"ephys pipeline {self.pipeline_version}  ·  config {self.config_hash}  ·  "
                f"sleep model {self.model_version}  ·  run {self.run_id}")

    def png_metadata(self, title: str) -> dict[str, str]:
        """PNG text chunks: the usual Title and Software, and the provenance as keys and as JSON."""
        return {"Title": title, "Software": f"ephys pipeline {self.pipeline_version}",
                "ephys:pipeline_version": self.pipeline_version, "ephys:config_hash": self.config_hash,
                "ephys:model_version": self.model_version, "ephys:run_id": self.run_id,
                "ephys:provenance": canonical_json(self.to_json())}

    def pdf_metadata(self, title: str) -> dict[str, str]:
        """The PDF's document information (only the standard keys: readers show them)."""
        return {"Title": title, "Author": f"ephys pipeline {self.pipeline_version}",
                "Subject": f"{self.recording_id} (animal {self.animal})",
                "Keywords": (f"pipeline_version={self.pipeline_version} config_hash={self.config_hash} "
                             f"model_version={self.model_version} run_id={self.run_id}"),
                "Creator": f"ephys pipeline {self.pipeline_version}"}
