"""recording.json: what inspect learnt about a raw recording, read and written through
one typed object (`RecordingInfo`) with a schema version.

inspect writes it once per recording; every later stage (convert, spectrogram,
classify, figures) and the progress shown in the sheet read it. A file written with
another schema version is refused with a sentence saying how to make it again,
rather than read half-right.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path

from pipeline.errors import DataError
from pipeline.io.atomic import write_json_atomic

SCHEMA_VERSION = 2  # 1: the untyped dict of pipeline 0.1 (no schema_version key)
# Fields added within a version have a default, so files written before them still
# load (they then say nothing of what those fields record); a pipeline older than a
# field refuses a file holding it by its unknown key, with how to make it again. A
# field without a default, or a change of meaning, needs a new SCHEMA_VERSION.


@dataclass
class ChannelQC:
    rms_uv: float
    flat_fraction: float
    saturated_fraction: float
    line_noise_ratio: float
    flag: str  # ok, dead (flat or far below its region), noisy (far above, or saturated)


@dataclass
class ChannelInfo:
    name: str
    region: str | None  # None: recorded and converted, but in no region of the channel map
    ignored: bool  # listed under `ignore` in the channel map: neither converted nor analysed
    qc: ChannelQC | None = None

    @property
    def bad(self) -> bool:
        return self.qc is not None and self.qc.flag != "ok"


@dataclass
class Segment:
    index: int
    start_s: float
    duration_s: float


@dataclass
class GapInfo:
    start_s: float
    duration_s: float
    channels: str | list[str]  # "all", or the channels missing samples there


@dataclass
class RecordingInfo:
    recording_id: str | None
    animal: str | None
    format: str
    raw_path: str
    pipeline_version: str
    inspected_at: str
    start_time: str  # ISO 8601 with its time zone
    first_timestamp_us: int
    sampling_rate: float
    n_samples: int
    duration_s: float
    lfp_rate: float
    n_lfp_samples: int
    decimator: dict  # the filters themselves (pipeline.dsp.decimate.Decimator.to_json)
    segment_samples: int
    segments: list[Segment]
    channel_map_source: str
    channel_map: dict
    channels: list[ChannelInfo]
    unmapped_channels: list[str]  # converted, but in no region of the channel map
    gaps: list[GapInfo]
    channels_ending_early: dict[str, float]  # channel -> seconds where its samples end
    files: list[dict]  # per-file facts of the format (size, quick checksum, reading index)
    schema_version: int = SCHEMA_VERSION
    notes: list[str] = field(default_factory=list)  # things inspect found worth saying
    # Named in the channel map (regions), but no file provides them. Added in 0.x within
    # schema 2: absent (empty) in files inspected before.
    missing_channels: list[str] = field(default_factory=list)
    # The video tracking file inspect found in the raw folder (pipeline.io.tracking), by
    # name; None: none (or inspected before this field). The tracking stage looks again.
    tracking_file: str | None = None

    # -- views -----------------------------------------------------------------------
    @property
    def start_datetime(self) -> datetime:
        return datetime.fromisoformat(self.start_time)

    @property
    def converted_channels(self) -> list[ChannelInfo]:
        """The channels the LFP holds: every recorded channel the map does not ignore."""
        return [c for c in self.channels if not c.ignored]

    # -- the file --------------------------------------------------------------------
    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict, *, source: str | Path = "recording.json") -> "RecordingInfo":
        version = d.get("schema_version", 1) if isinstance(d, dict) else None
        if version != SCHEMA_VERSION:
            raise DataError(
                f"{source} was written by another version of the pipeline (recording.json schema {version}, "
                f"this version reads {SCHEMA_VERSION}); tick rerun to inspect the recording again."
            )
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise DataError(f"{source}: unknown keys {', '.join(unknown)}; tick rerun to inspect the recording again.")
        kw = dict(d)
        kw["segments"] = [Segment(**s) for s in d["segments"]]
        kw["gaps"] = [GapInfo(**g) for g in d["gaps"]]
        kw["channels"] = [ChannelInfo(**{**c, "qc": ChannelQC(**c["qc"]) if c.get("qc") else None})
                          for c in d["channels"]]
        return cls(**kw)

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "RecordingInfo":
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise DataError(f"{path} does not exist: the recording has not been inspected yet.") from None
        except ValueError as e:
            raise DataError(f"{path} is not readable JSON ({e}); tick rerun to inspect the recording again.") from None
        try:
            return cls.from_json(d, source=path)
        except (KeyError, TypeError) as e:
            raise DataError(f"{path} is incomplete ({type(e).__name__}: {e}); "
                            "tick rerun to inspect the recording again.") from None
