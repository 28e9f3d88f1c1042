"""Plain .dat recordings: interleaved int16 frames described by a small sidecar.

`pipeline.io.raw.open_recording` opens a folder with a .dat file or a sidecar as a
`DatRecording` (format 'dat'), read without neo through a read-only np.memmap, so
memory stays bounded. The file holds interleaved little-endian int16 frames
(sample0: ch0 ch1 ... chN-1, sample1: ...); a sidecar `recording.yaml` (or
`recording.yml` / `recording.json`) in the same folder describes it:

  sampling_rate: 20000          # Hz (required)
  n_channels: 32                # channels per frame (required)
  volts_per_bit: 1.95e-7        # V per count (required, or uv_per_bit: 0.195);
                                #   a number, or a list with one value per channel
  channel_names: [CH1, ...]     # optional, in file order; default CH1..CHn
  start_time: 2026-01-05T07:00:00+00:00   # optional ISO 8601; naive = UTC
  file: rec.dat                 # optional; needed when the folder holds several .dat
  header_bytes: 0               # optional bytes to skip at the start of the file

The sidecar is checked against dat_sidecar.schema.yaml beside this module; other keys
are refused (to catch typos). A trailing partial frame is ignored with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path

import jsonschema
import numpy as np
import yaml

from pipeline.errors import RawDataError
from pipeline.io.grid import GridRecording
from pipeline.io.recording import file_facts, start_from_mtime

log = logging.getLogger(__name__)

SIDECAR_NAMES = ("recording.yaml", "recording.yml", "recording.json")
SIDECAR_HELP = (
    "sampling_rate (Hz), n_channels, volts_per_bit (or uv_per_bit), and optionally channel_names, "
    "start_time (ISO 8601), file (the .dat name) and header_bytes"
)
SCHEMA_PATH = Path(__file__).with_name("dat_sidecar.schema.yaml")


class _SidecarLoader(yaml.SafeLoader):
    """YAML as people write numbers: 1e-7 and JSON's 1e-06 are floats (YAML 1.1 wants a dot)."""


_SidecarLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


@lru_cache(maxsize=1)
def _schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def find_sidecar(folder: Path) -> Path | None:
    for name in SIDECAR_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def check_sidecar(spec, sidecar: Path) -> None:
    """Raise RawDataError with one sentence naming the sidecar, the key and what it
    must be if `spec` (the loaded sidecar) does not follow the schema."""
    if not isinstance(spec, dict):
        raise RawDataError(f"{sidecar}: expected a mapping with {SIDECAR_HELP}.")
    schema = _schema()
    # YAML reads an unquoted date and time as a datetime: that is a valid start_time too.
    checked = {k: v.isoformat() if isinstance(v, (date, datetime)) else v for k, v in spec.items()}
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(checked))
    if not errors:
        return
    unknown = sorted({str(k) for e in errors if e.validator == "additionalProperties" for k in e.instance}
                     - set(schema["properties"]))
    if unknown:
        raise RawDataError(f"{sidecar}: unknown key(s) {', '.join(unknown)}; the keys are {SIDECAR_HELP}.")
    missing = [k for e in errors if e.validator == "required" and not e.path for k in e.validator_value
               if k not in spec]
    scales = [k for k in ("volts_per_bit", "uv_per_bit") if k in spec]
    if not scales:
        missing.append("volts_per_bit (or uv_per_bit)")
    if missing:
        raise RawDataError(f"{sidecar}: missing {', '.join(missing)}; the keys are {SIDECAR_HELP}.")
    if len(scales) > 1:
        raise RawDataError(f"{sidecar}: give volts_per_bit or uv_per_bit, not both.")
    located = [e for e in errors if e.path and e.path[0] in schema["properties"]]
    if not located:
        reason = jsonschema.exceptions.best_match(errors).message
        raise RawDataError(f"{sidecar}: {reason}; the keys are {SIDECAR_HELP}.")
    key = str(min(located, key=lambda e: list(schema["properties"]).index(e.path[0])).path[0])
    raise RawDataError(f"{sidecar}: {key} {schema['properties'][key]['description']} (got {spec[key]!r}).")


class DatRecording(GridRecording):
    """Interleaved int16 samples in one .dat file, described by recording.yaml."""

    format = "dat"

    def __init__(self, folder: str | Path, *, index=None):
        self.folder = folder = Path(folder)
        sidecar = find_sidecar(folder)
        dats = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".dat" and p.is_file())
        if sidecar is None:
            what = f"holds {dats[0].name}" if dats else "holds no .dat file"
            raise RawDataError(
                f"{folder} {what} but no sidecar describing it: write {SIDECAR_NAMES[0]} next to it with "
                f"{SIDECAR_HELP}."
            )
        self.sidecar = sidecar
        try:
            spec = yaml.load(sidecar.read_text(encoding="utf-8"), Loader=_SidecarLoader)
        except (OSError, yaml.YAMLError) as e:
            raise RawDataError(f"{sidecar}: unreadable ({e}).") from None
        check_sidecar(spec, sidecar)

        def bad(key, why):
            return RawDataError(f"{sidecar}: {key} {why} (got {spec.get(key)!r}).")

        # What the schema cannot say: values that must agree with n_channels, and finite numbers.
        rate = float(spec["sampling_rate"])
        if not np.isfinite(rate):
            raise bad("sampling_rate", "must be a finite number of Hz")
        n_ch = int(spec["n_channels"])
        key = "volts_per_bit" if "volts_per_bit" in spec else "uv_per_bit"
        try:
            vpb = np.broadcast_to(np.asarray(spec[key], dtype=np.float64), (n_ch,)).copy()
        except ValueError:
            raise bad(key, f"must be a number or a list of {n_ch} numbers (n_channels)") from None
        if not np.all(np.isfinite(vpb)):
            raise bad(key, "must be finite")
        self._vpb = vpb * (1e-6 if key == "uv_per_bit" else 1.0)
        names = spec.get("channel_names")
        if names is None:
            names = [f"CH{i + 1}" for i in range(n_ch)]
        elif len(names) != n_ch:
            raise bad("channel_names", f"must be a list of {n_ch} names (n_channels)")
        self._set_channels([str(n) for n in names], sidecar)
        header = int(spec.get("header_bytes", 0))

        if spec.get("file") is not None:
            path = folder / str(spec["file"])
            if path.parent != folder or not path.is_file():
                raise bad("file", f"must name a file in {folder}")
        elif len(dats) == 1:
            path = dats[0]
        elif not dats:
            raise RawDataError(f"{folder}: {sidecar.name} is there but no .dat file.")
        else:
            raise RawDataError(f"{sidecar}: {folder} holds {len(dats)} .dat files; say which with file: NAME.")
        self.path = path
        size = path.stat().st_size
        frame = 2 * n_ch
        n_frames, extra = divmod(max(size - header, 0), frame)
        if n_frames == 0:
            raise RawDataError(f"{path}: {size} bytes, not one whole frame of {n_ch} int16 samples after "
                               f"{header} header bytes.")
        if extra:
            log.warning("%s: ignoring %d trailing bytes (a partial frame of %d channels)", path, extra, n_ch)
        self._mm = np.memmap(path, dtype="<i2", mode="r", offset=header, shape=(n_frames, n_ch))
        self.sampling_rate = rate
        self.n_samples = int(n_frames)
        self._runs = [(0, self.n_samples)]
        self.t0_us = 0
        start = spec.get("start_time")
        if start is None:
            self.start_time = start_from_mtime(path, self.duration_s)
        else:
            if isinstance(start, datetime):
                t = start
            else:
                try:
                    t = datetime.fromisoformat(str(start).strip())
                except ValueError:
                    raise bad("start_time", "must be an ISO 8601 date and time like 2026-01-05T07:00:00") from None
            self.start_time = t if t.tzinfo else t.replace(tzinfo=timezone.utc)

    def _read_run(self, r: int, i0: int, i1: int, idx: np.ndarray) -> np.ndarray:
        rows = self._mm[i0:i1]
        if len(idx) != rows.shape[1] or not np.array_equal(idx, np.arange(rows.shape[1])):
            rows = rows[:, idx]
        return rows.T.astype(np.float32)

    def describe_files(self) -> list[dict]:
        return [{"channel": "all", **file_facts(self.path, self.folder), "sidecar": self.sidecar.name,
                 "sidecar_sha256": hashlib.sha256(self.sidecar.read_bytes()).hexdigest()}]
