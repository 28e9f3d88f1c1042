"""Raw formats read through neo: Intan and Open Ephys (binary and legacy).

`pipeline.io.raw.open_recording` opens these; each reader offers the interface of
`pipeline.io.recording.RawRecording` as a `pipeline.io.grid.GridRecording`.

Vendor formats go through neo's rawio layer (`NeoRecording`, a thin adapter over one
neo rawio object and ONE of its signal streams):

* Intan `.rhd` (`open_intan`): the 'RHD2000 amplifier channel' stream. One .rhd file per
  recording folder (Intan's "traditional" file; `info.rhd` with its .dat files works as
  neo reads it). Several .rhd files (Intan's split files) are refused for now.
  neo 0.14.6 fails on RHD files with temperature-sensor channels (e.g. v1.5 files) with
  KeyError 'custom_channel_name': the header parse is retried once with those channels'
  missing names filled in (see `_intan_temperature_names`); if that fails too, the
  error names the file and neo's reason.
* Open Ephys binary (`open_openephys_binary`): any folder with a `structure.oebin` below
  it (the top folder, a Record Node, an experiment or a recording folder). Of the
  continuous streams, the one with the most channels is read; on a tie the FIRST in
  neo's order (sorted by stream name, e.g. 'Record Node 118#File_Reader-106.0' before
  '...-114.0'); pass `stream=` (index, name or id) to choose another. One experiment
  (neo block) per recording: point raw_path at an experimentN folder otherwise.
* Open Ephys legacy `.continuous` (`open_openephys_legacy`): the folder holding the
  files, or any folder with exactly one such folder below it; the 'CH' stream.

Units: neo states each channel's units (uV for amplifier channels, V for auxiliary
inputs, ...); they are converted to volts. `volts_per_bit` = neo gain x unit factor and
ADC units (`read(..., scaled=False)`) are neo's raw integers plus offset/gain, i.e. the
signed int16 counts (Intan stores uint16 with offset -32768 counts: its ADC units are
raw - 32768), so that volts = ADC x volts_per_bit.

Recording segments (Open Ephys recordings 1, 2, ... in one experiment; legacy `_2`
files) are placed on one grid by each segment's signal t_start. The stretches between
them are gaps (`gaps()`), filled as the Neuralynx reader does: linearly between the last
sample before and the first sample after, so that any slicing gives the same values.
Segments that overlap on the clock are refused. Gaps INSIDE a segment are refused too
(Open Ephys binary: sample numbers that jump; legacy: records missing, which neo would
fill with zeros): the error says so.

Start time (tz-aware; the vendor's wall-clock time labelled UTC, as the Neuralynx
reader does with TimeCreated): Intan: `_YYMMDD_HHMMSS` at the end of the file name
(Intan's default naming); Open Ephys binary: <DATE> of the Record Node's settings.xml
(settings_N.xml for experimentN); legacy: the files' `date_created` header. Failing
that: the data file's modification time minus the duration (a warning is logged).
"""

from __future__ import annotations

import json
import logging
import re
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pipeline.errors import RawDataError
from pipeline.io.grid import GridRecording
from pipeline.io.recording import file_facts, start_from_mtime

log = logging.getLogger(__name__)

UNIT_TO_VOLTS = {"V": 1.0, "mV": 1e-3, "uV": 1e-6, "µV": 1e-6, "μV": 1e-6, "nV": 1e-9}


# -- start times ------------------------------------------------------------------------
def _parse_clock(text: str, formats: tuple[str, ...]) -> datetime | None:
    text = text.strip().strip("'\"")
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


# -- neo ---------------------------------------------------------------------------------
def _neo_failure(source, what: str, e: Exception) -> RawDataError:
    import neo

    reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return RawDataError(f"{source}: neo {neo.__version__} cannot read this {what} ({reason}).")


@contextmanager
def _intan_temperature_names():
    """neo 0.14.6's read_rhd lists temperature-sensor channels (RHD files from v1.1 on
    with num_temp_sensor_channels > 0, e.g. v1.5) without 'custom_channel_name' and
    'native_order', and IntanRawIO._parse_header then fails with KeyError. Fill both in
    (the channel's native name; no digital bit order) while the header is parsed."""
    from neo.rawio import intanrawio

    original = intanrawio.read_rhd

    def read_rhd(*args, **kwargs):
        result = original(*args, **kwargs)
        for info in result[1]:
            info.setdefault("custom_channel_name", info["native_channel_name"])
            info.setdefault("native_order", -1)
        return result

    intanrawio.read_rhd = read_rhd
    try:
        yield
    finally:
        intanrawio.read_rhd = original


def _parse_neo(rawio_class, rawio_kwargs: dict, source, what: str):
    try:
        io = rawio_class(**rawio_kwargs)
        io.parse_header()
        return io
    except Exception as e:  # noqa: BLE001 - neo raises anything from KeyError to struct.error
        first = e
    if rawio_class.__name__ == "IntanRawIO" and isinstance(first, KeyError) \
            and first.args and first.args[0] in ("custom_channel_name", "native_order"):
        try:
            with _intan_temperature_names():
                io = rawio_class(**rawio_kwargs)
                io.parse_header()
            log.info("%s: read with the workaround for neo's temperature-sensor channel bug", source)
            return io
        except Exception as e:  # noqa: BLE001
            raise _neo_failure(source, what, e) from e
    raise _neo_failure(source, what, first) from first


def _choose_stream(io, stream, source) -> int:
    streams = io.header["signal_streams"]
    chans = io.header["signal_channels"]
    if len(streams) == 0:
        raise RawDataError(f"{source}: no continuous signals in it.")
    listing = ", ".join(f"{i}: {s['name'] or s['id']} ({int(np.sum(chans['stream_id'] == s['id']))} channels)"
                        for i, s in enumerate(streams))
    if stream is not None:
        if isinstance(stream, (int, np.integer)):
            found = [int(stream)] if 0 <= int(stream) < len(streams) else []
        else:
            found = [i for i, s in enumerate(streams) if str(stream) in (s["name"], s["id"])]
        if len(found) != 1:
            raise RawDataError(f"{source}: no signal stream {stream!r} (streams: {listing}).")
        return found[0]
    counts, volts = [], []
    for s in streams:
        units = set(chans[chans["stream_id"] == s["id"]]["units"])
        counts.append(int(np.sum(chans["stream_id"] == s["id"])))
        volts.append(bool(units) and units <= set(UNIT_TO_VOLTS))
    pool = [i for i in range(len(streams)) if volts[i]]
    amplifier = [i for i in pool if "amplifier" in streams[i]["name"].lower()]
    pool = amplifier or pool
    if not pool:
        raise RawDataError(f"{source}: no stream of voltage channels (streams: {listing}).")
    best = max(pool, key=lambda i: (counts[i], -i))
    ties = [i for i in pool if counts[i] == counts[best] and i != best]
    if ties:
        log.info("%s: reading stream %s; also present with as many channels: %s", source,
                 streams[best]["name"], ", ".join(streams[i]["name"] for i in ties))
    return best


class NeoRecording(GridRecording):
    """One signal stream of a neo rawio reader, on the recording clock.

    `rawio_class` (e.g. neo.rawio.IntanRawIO) is built with `rawio_kwargs`; `source` is
    the file or folder named in error messages; `stream` chooses the signal stream
    (index, name or id; default: the amplifier stream, else the voltage stream with the
    most channels, the first on a tie). `files` lists (path, channel or "all") for
    `describe_files`.
    """

    def __init__(self, folder: str | Path, rawio_class, rawio_kwargs: dict, *, format: str,
                 source: str | Path | None = None, stream: int | str | None = None,
                 files: list[tuple[Path, str]] | None = None):
        self.folder = Path(folder)
        self.format = format
        self.source = Path(source) if source is not None else self.folder
        what = {"intan": "Intan file", "openephys-binary": "Open Ephys recording",
                "openephys-legacy": "Open Ephys recording"}.get(format, "recording")
        io = self._io = _parse_neo(rawio_class, rawio_kwargs, self.source, what)
        n_blocks = io.block_count()
        if n_blocks != 1:
            raise RawDataError(
                f"{self.source} holds {n_blocks} experiments (acquisition restarted); "
                "point raw_path at one of them (e.g. the experiment1 folder)."
            )
        si = self._stream_index = _choose_stream(io, stream, self.source)
        sid = io.header["signal_streams"][si]["id"]
        self.stream_name = str(io.header["signal_streams"][si]["name"] or sid)
        chans = io.header["signal_channels"][io.header["signal_channels"]["stream_id"] == sid]
        self._set_channels([str(n) for n in chans["name"]], self.source)
        rates = np.unique(chans["sampling_rate"])
        if rates.size != 1:
            raise RawDataError(f"{self.source}: stream {self.stream_name} mixes sampling rates {list(rates)}.")
        self.sampling_rate = float(rates[0])
        if not np.issubdtype(np.dtype(str(chans["dtype"][0])), np.integer):
            raise RawDataError(f"{self.source}: stream {self.stream_name} stores {chans['dtype'][0]} samples, "
                               "not integer ADC counts; not supported.")
        units = sorted({str(u) for u in chans["units"]} - set(UNIT_TO_VOLTS))
        if units:
            raise RawDataError(f"{self.source}: stream {self.stream_name} is in {', '.join(units)}, not volts.")
        factor = np.array([UNIT_TO_VOLTS[str(u)] for u in chans["units"]])
        gain = chans["gain"].astype(np.float64)
        if np.any(gain == 0):
            raise RawDataError(f"{self.source}: stream {self.stream_name} has channels with gain 0.")
        self._vpb = gain * factor
        adc_offset = chans["offset"].astype(np.float64) / gain
        whole = np.round(adc_offset)
        self._adc_offset = np.where(np.abs(adc_offset - whole) < 1e-6, whole, adc_offset).astype(np.float32)

        runs, self._segments = [], []
        t_first = None
        for seg in range(io.segment_count(0)):
            size = int(io.get_signal_size(0, seg, si))
            if size == 0:
                continue
            t = float(io.get_signal_t_start(0, seg, si))
            if t_first is None:
                t_first = t
            g = int(round((t - t_first) * self.sampling_rate))
            if runs and g < runs[-1][0] + runs[-1][1]:
                raise RawDataError(
                    f"{self.source}: recording segment {seg + 1} starts at {t:.6f} s, before segment "
                    f"{self._segments[-1] + 1} ends; overlapping segments are not supported (convert them separately)."
                )
            runs.append((g, size))
            self._segments.append(seg)
        if not runs:
            raise RawDataError(f"{self.source}: stream {self.stream_name} holds no samples.")
        self._runs = runs
        self.n_samples = runs[-1][0] + runs[-1][1]
        self.t0_us = int(round(t_first * 1e6))
        self.files = files if files is not None else [(self.source, "all")] if self.source.is_file() else []
        self._start_time: datetime | None = None  # the vendor's, set by the opener (see _finish)

    def _finish(self, start_time: datetime | None, data_file: Path | None = None) -> "NeoRecording":
        self._start_time = start_time
        if data_file is not None:
            self._time_file = data_file
        return self

    @property
    def start_time(self) -> datetime:
        """The vendor's start time, else the data file's modification time minus the duration."""
        if self._start_time is None:
            data_file = getattr(self, "_time_file", None) or (self.files[0][0] if self.files else self.source)
            self._start_time = start_from_mtime(data_file, self.duration_s)
        return self._start_time

    def _read_run(self, r: int, i0: int, i1: int, idx: np.ndarray) -> np.ndarray:
        all_in_order = len(idx) == len(self.channel_names) and np.array_equal(idx, np.arange(len(idx)))
        raw = self._io.get_analogsignal_chunk(block_index=0, seg_index=self._segments[r], i_start=i0, i_stop=i1,
                                              stream_index=self._stream_index,
                                              channel_indexes=None if all_in_order else idx)
        out = raw.T.astype(np.float32)
        off = self._adc_offset[idx]
        if np.any(off != 0):
            out += off[:, None]
        return out

    def describe_files(self) -> list[dict]:
        return [{"channel": ch, **file_facts(p, self.folder), "stream": self.stream_name}
                for p, ch in self.files]


# -- Intan -------------------------------------------------------------------------------
def open_intan(folder: str | Path, *, stream: int | str | None = None) -> NeoRecording:
    from neo.rawio import IntanRawIO

    folder = Path(folder)
    rhd = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".rhd" and p.is_file())
    if not rhd:
        raise RawDataError(f"{folder} holds no Intan .rhd file.")
    if len(rhd) > 1:
        raise RawDataError(
            f"{folder} holds {len(rhd)} .rhd files ({rhd[0].name}, {rhd[1].name}{' ...' if len(rhd) > 2 else ''}); "
            "one .rhd file per recording folder is supported (Intan split files are not supported yet)."
        )
    path = rhd[0]
    files = [(path, "all")]
    if path.name == "info.rhd":  # header only; the samples are in .dat files beside it
        files += [(p, "all") for p in sorted(folder.glob("*.dat"))]
    rec = NeoRecording(folder, IntanRawIO, {"filename": str(path)}, format="intan", source=path,
                       stream=stream, files=files)
    m = re.search(r"_(\d{6})_(\d{6})$", path.stem)
    start = _parse_clock(m.group(1) + m.group(2), ("%y%m%d%H%M%S",)) if m else None
    return rec._finish(start, path)


# -- Open Ephys binary -------------------------------------------------------------------
def find_oebin(folder: Path) -> list[Path]:
    return sorted(folder.rglob("structure.oebin"))


def _number(name: str, prefix: str) -> int:
    m = re.fullmatch(prefix + r"(\d+)", name)
    return int(m.group(1)) if m else 0


def _oebin_streams(folder: Path, stream_name: str) -> list[dict]:
    """The chosen stream's continuous data in each recording, from the structure.oebin files."""
    out = []
    for oebin in find_oebin(folder):
        node = oebin.parents[2] if len(oebin.parents) > 2 else oebin.parent
        node_name = node.name if node.name.startswith("Record") else ""
        try:
            structure = json.loads(oebin.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise RawDataError(f"{oebin}: unreadable ({e}).") from None
        for info in structure.get("continuous", []):
            oe_name = info["folder_name"].rstrip("/")
            name = f"{node_name}#{oe_name}" if node_name else oe_name
            if name != stream_name:
                continue
            d = oebin.parent / "continuous" / oe_name
            out.append({"oebin": oebin, "node": node, "experiment": oebin.parent.parent.name,
                        "recording": oebin.parent.name, "dir": d, "info": info})
    out.sort(key=lambda r: (_number(r["experiment"], "experiment"), _number(r["recording"], "recording")))
    return out


def open_openephys_binary(folder: str | Path, *, stream: int | str | None = None) -> NeoRecording:
    from neo.rawio import OpenEphysBinaryRawIO

    folder = Path(folder)
    if not find_oebin(folder):
        raise RawDataError(f"{folder} holds no Open Ephys structure.oebin.")
    rec = NeoRecording(folder, OpenEphysBinaryRawIO, {"dirname": str(folder)}, format="openephys-binary",
                       source=folder, stream=stream)
    parts = _oebin_streams(folder, rec.stream_name)
    files = []
    for p in parts:
        for fname in ("continuous.dat", "sample_numbers.npy", "timestamps.npy"):
            if (p["dir"] / fname).is_file():
                files.append((p["dir"] / fname, "all"))
        # neo does not check for dropped samples inside a recording: sample numbers must run on.
        numbers = p["dir"] / "sample_numbers.npy"
        if not numbers.is_file():
            numbers = p["dir"] / "timestamps.npy"
        if numbers.is_file():
            s = np.load(numbers, mmap_mode="r")
            if s.size and np.issubdtype(s.dtype, np.integer) and int(s[-1]) - int(s[0]) + 1 != s.size:
                raise RawDataError(
                    f"{numbers}: the sample numbers jump ({s.size} samples from {int(s[0])} to {int(s[-1])}): "
                    "samples were dropped inside the recording; gaps inside an Open Ephys recording "
                    "are not supported yet."
                )
    rec.files = files
    start = None
    if parts:
        p = parts[0]
        n = _number(p["experiment"], "experiment")
        settings = p["node"] / ("settings.xml" if n <= 1 else f"settings_{n}.xml")
        if settings.is_file():
            m = re.search(r"<DATE>([^<]+)</DATE>", settings.read_text(encoding="utf-8", errors="replace"))
            if m:
                start = _parse_clock(m.group(1), ("%d %b %Y %H:%M:%S",))
    data = files[0][0] if files else find_oebin(folder)[0]
    return rec._finish(start, data)


# -- Open Ephys legacy -------------------------------------------------------------------
def find_continuous_folders(folder: Path) -> list[Path]:
    return sorted({p.parent for p in folder.rglob("*.continuous") if p.is_file()})


def _legacy_channel(stem: str) -> str:
    """'100_CH1' / '100_example-data_CH1' / '..._CH1_2' -> 'CH1' (as neo names it)."""
    s = stem.split("_")
    if len(s) > 2 and s[-1].isdigit():  # the recording number of the 2nd, 3rd ... recording
        s = s[:-1]
    return s[1] if len(s) == 2 else s[2] if len(s) > 2 else stem


def open_openephys_legacy(folder: str | Path, *, stream: int | str | None = None) -> NeoRecording:
    from neo.rawio import OpenEphysRawIO

    folder = Path(folder)
    holders = find_continuous_folders(folder)
    if not holders:
        raise RawDataError(f"{folder} holds no Open Ephys .continuous files.")
    if len(holders) > 1:
        names = ", ".join(str(h.relative_to(folder)) or "." for h in holders[:3])
        raise RawDataError(
            f"{folder}: .continuous files are in {len(holders)} folders ({names}{' ...' if len(holders) > 3 else ''}); "
            "point raw_path at the one folder (Record Node) to convert."
        )
    where = holders[0]
    rec = NeoRecording(folder, OpenEphysRawIO, {"dirname": str(where)}, format="openephys-legacy",
                       source=where, stream=stream)
    with_gaps = [k for seg in getattr(rec._io, "_sig_has_gap", {}).values() for k, v in seg.items() if v]
    if with_gaps:
        names = sorted({str(rec._io.header["signal_channels"]["name"][k]) for k in with_gaps})
        raise RawDataError(
            f"{where}: records are missing inside the recording (timestamps jump) in "
            f"{', '.join(names[:4])}{' ...' if len(names) > 4 else ''}; "
            "gaps inside an Open Ephys legacy recording are not supported yet (neo would fill them with zeros)."
        )
    order = {name: i for i, name in enumerate(rec.channel_names)}
    rec.files = sorted(((p, _legacy_channel(p.stem)) for p in where.glob("*.continuous")
                        if _legacy_channel(p.stem) in order), key=lambda f: (order[f[1]], f[0].name))
    start = None
    seg = rec._io.raw_annotations["blocks"][0]["segments"][rec._segments[0]]
    if seg.get("date_created"):
        start = _parse_clock(str(seg["date_created"]), ("%d-%b-%Y %H%M%S", "%d-%b-%Y %H:%M:%S"))
    return rec._finish(start, rec.files[0][0] if rec.files else where)
