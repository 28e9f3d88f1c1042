"""Neuralynx continuously sampled channel (.ncs) files: read and write.

The converter reads raw recordings through `NcsFile`, which memory-maps the records
and never changes the file. The synthetic-recording generator writes files through
`write_ncs_header` and `NCS_RECORD_DTYPE`, in exactly the layout Cheetah/Pegasus use:
a 16 KiB latin-1 text header padded with NUL bytes, then 1044-byte records of
(uint64 timestamp in microseconds, uint32 channel number, uint32 sampling rate,
uint32 valid-sample count, 512 x int16 samples).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import RawDataError

HEADER_SIZE = 16384
SAMPLES_PER_RECORD = 512
NCS_RECORD_DTYPE = np.dtype(
    [
        ("timestamp", "<u8"),
        ("channel", "<u4"),
        ("sampling_rate", "<u4"),
        ("n_valid", "<u4"),
        ("samples", "<i2", (SAMPLES_PER_RECORD,)),
    ]
)
RECORD_SIZE = NCS_RECORD_DTYPE.itemsize  # 1044

_HEADER_LINE = re.compile(r"^-(\S+)\s*(.*)$")


def parse_ncs_header(text: str) -> dict[str, str]:
    """Return the `-Key value` pairs of a Neuralynx header (values as written, unquoted)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _HEADER_LINE.match(line.strip())
        if match:
            key, value = match.groups()
            values[key] = value.strip().strip('"').strip()
    return values


def read_ncs_header(path: str | os.PathLike) -> tuple[str, dict[str, str]]:
    """Read the text header of an .ncs file; return (raw text, parsed key/values)."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read(HEADER_SIZE)
    if len(raw) < HEADER_SIZE:
        raise RawDataError(
            f"{path} is {len(raw)} bytes long, shorter than the {HEADER_SIZE}-byte header "
            "every Neuralynx .ncs file starts with: the file is truncated or not an .ncs file."
        )
    text = raw.split(b"\x00", 1)[0].decode("latin-1")
    if not text.startswith("########") or "-SamplingFrequency" not in text:
        raise RawDataError(
            f"{path} does not start with a Neuralynx header (no '######## Neuralynx' "
            "line or no -SamplingFrequency key): it is not a Neuralynx .ncs file."
        )
    return text, parse_ncs_header(text)


def _header_float(path: Path, header: dict[str, str], key: str) -> float:
    if key not in header:
        raise RawDataError(f"{path}: the header has no -{key} line, so samples cannot be scaled.")
    try:
        value = float(header[key].split()[0])
    except (ValueError, IndexError):
        raise RawDataError(
            f"{path}: the header's -{key} value {header[key]!r} is not a number."
        ) from None
    if not np.isfinite(value) or value <= 0:
        raise RawDataError(f"{path}: the header's -{key} value {header[key]!r} must be positive.")
    return value


@dataclass(frozen=True)
class Gap:
    """Samples missing on the recording clock, in grid samples from the recording start."""

    start: int
    length: int


class NcsFile:
    """One .ncs channel, memory-mapped read-only, its samples placed on a time grid.

    The grid is the recording clock sampled at the nominal rate, starting at `t0_us`
    (by default this file's first timestamp). Each run of records whose timestamps
    follow on from the previous record's valid samples is a block; a block starts at
    the grid position its first timestamp gives. Samples missing between blocks
    (missing records, partial records, a channel that stops early) are gaps.
    """

    def __init__(self, path: str | os.PathLike, *, gap_tolerance_us: float | None = None):
        self.path = Path(path)
        self.header_text, self.header = read_ncs_header(self.path)
        self.name = self.header.get("AcqEntName") or self.path.stem
        self.sampling_rate = _header_float(self.path, self.header, "SamplingFrequency")
        self.ad_bit_volts = _header_float(self.path, self.header, "ADBitVolts")
        inverted = self.header.get("InputInverted", "False").lower() == "true"
        # Neuralynx stores the inverted signal when InputInverted is True; undo it.
        self.volts_per_bit = -self.ad_bit_volts if inverted else self.ad_bit_volts

        size = self.path.stat().st_size
        n_records, extra = divmod(size - HEADER_SIZE, RECORD_SIZE)
        if extra:
            raise RawDataError(
                f"{self.path} ends in the middle of a record ({n_records} whole records and "
                f"{extra} bytes of a partial one): the file is truncated, probably copied "
                "before the acquisition closed it. Copy it again from the acquisition machine."
            )
        if n_records == 0:
            raise RawDataError(f"{self.path} has a header but no data records.")
        self.records = np.memmap(self.path, dtype=NCS_RECORD_DTYPE, mode="r", offset=HEADER_SIZE)
        self.n_records = n_records
        self.timestamps = np.asarray(self.records["timestamp"])
        self.n_valid = np.asarray(self.records["n_valid"]).astype(np.int64)
        self._check_records()
        period_us = 1e6 / self.sampling_rate
        # Timestamps jitter by a microsecond; anything under half a sample is not a gap.
        self.gap_tolerance_us = period_us / 2 + 1 if gap_tolerance_us is None else gap_tolerance_us
        self.t0_us = int(self.timestamps[0])
        self._stream_offsets = np.concatenate([[0], np.cumsum(self.n_valid)])
        self._build_blocks()

    # -- validation ---------------------------------------------------------------
    def _check_records(self) -> None:
        channels = np.asarray(self.records["channel"])
        bad = np.flatnonzero(channels != channels[0])
        if bad.size:
            raise RawDataError(
                f"{self.path}: record {bad[0]} has channel number {channels[bad[0]]} but the "
                f"file's first record has {channels[0]}: records of two channels are mixed."
            )
        rates = np.asarray(self.records["sampling_rate"])
        bad = np.flatnonzero(rates != round(self.sampling_rate))
        if bad.size:
            raise RawDataError(
                f"{self.path}: record {bad[0]} says {rates[bad[0]]} Hz but the header says "
                f"-SamplingFrequency {self.sampling_rate:g}."
            )
        bad = np.flatnonzero(self.n_valid > SAMPLES_PER_RECORD)
        if bad.size:
            raise RawDataError(
                f"{self.path}: record {bad[0]} claims {self.n_valid[bad[0]]} valid samples, "
                f"more than the {SAMPLES_PER_RECORD} a record holds: the file is corrupt."
            )
        back = np.flatnonzero(np.diff(self.timestamps.astype(np.int64)) <= 0)
        if back.size:
            i = back[0] + 1
            raise RawDataError(
                f"{self.path}: the timestamp of record {i} ({self.timestamps[i]} us) is not "
                f"after that of record {i - 1} ({self.timestamps[i - 1]} us): time goes backwards."
            )
        self.channel_number = int(channels[0])

    def _build_blocks(self) -> None:
        ts = self.timestamps.astype(np.int64)
        expected_next = ts[:-1] + self.n_valid[:-1] * (1e6 / self.sampling_rate)
        jump = ts[1:] - expected_next
        overlap = np.flatnonzero(jump < -self.gap_tolerance_us - 1e6 / self.sampling_rate)
        if overlap.size:
            i = overlap[0] + 1
            raise RawDataError(
                f"{self.path}: record {i} starts {-jump[overlap[0]]:.0f} us before the previous "
                "record's samples end: records overlap in time."
            )
        breaks = np.flatnonzero(jump > self.gap_tolerance_us) + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [self.n_records]])
        self.block_records = np.stack([starts, stops], axis=1)
        self.block_stream_start = self._stream_offsets[starts]
        self.block_length = self._stream_offsets[stops] - self._stream_offsets[starts]
        # Records with no valid sample carry no data; a block of them has no place on the grid.
        nonempty = self.block_length > 0
        if not nonempty.any():
            raise RawDataError(
                f"{self.path}: none of its {self.n_records} records holds a valid sample "
                "(NumberOfValidSamples is 0 in all of them)."
            )
        self.block_records = self.block_records[nonempty]
        self.block_stream_start = self.block_stream_start[nonempty]
        self.block_length = self.block_length[nonempty]

    # -- the grid -----------------------------------------------------------------
    def block_grid_starts(self, t0_us: int) -> np.ndarray:
        """Grid position of every block's first sample, for a grid starting at t0_us."""
        first_ts = self.timestamps[self.block_records[:, 0]].astype(np.int64)
        return np.round((first_ts - t0_us) * self.sampling_rate / 1e6).astype(np.int64)

    def grid_end(self, t0_us: int) -> int:
        """Grid position one past this file's last sample."""
        return int(self.block_grid_starts(t0_us)[-1] + self.block_length[-1])

    def gaps(self, t0_us: int, grid_length: int) -> list[Gap]:
        """Stretches of the grid [0, grid_length) that this file has no samples for."""
        starts = self.block_grid_starts(t0_us)
        ends = starts + self.block_length
        gaps = []
        cursor = 0
        for s, e in zip(starts, ends):
            if s > cursor:
                gaps.append(Gap(int(cursor), int(s - cursor)))
            cursor = max(cursor, e)
        if grid_length > cursor:
            gaps.append(Gap(int(cursor), int(grid_length - cursor)))
        return gaps

    def read_stream(self, start: int, stop: int) -> np.ndarray:
        """Valid samples start..stop of the file, in file order, as int16."""
        start, stop = max(start, 0), min(stop, int(self._stream_offsets[-1]))
        if stop <= start:
            return np.empty(0, dtype=np.int16)
        r0 = int(np.searchsorted(self._stream_offsets, start, side="right") - 1)
        r1 = int(np.searchsorted(self._stream_offsets, stop, side="left"))
        samples = self.records["samples"][r0:r1]
        valid = self.n_valid[r0:r1]
        if np.all(valid == SAMPLES_PER_RECORD):
            flat = samples.reshape(-1)
        else:
            mask = np.arange(SAMPLES_PER_RECORD)[None, :] < valid[:, None]
            flat = samples[mask]
        offset = start - int(self._stream_offsets[r0])
        return np.array(flat[offset : offset + (stop - start)], dtype=np.int16)

    def read_grid(self, start: int, stop: int, *, t0_us: int | None = None) -> np.ndarray:
        """Samples at grid positions [start, stop) in volts, float32.

        Positions outside the file's blocks (gaps, before the start, after the end) are
        filled deterministically: linearly between the valid samples on either side of
        a gap, and by holding the first/last sample beyond the ends. The fill depends
        only on the file, never on the requested range, so that any slicing of the
        recording gives the same values.
        """
        t0 = self.t0_us if t0_us is None else t0_us
        out = np.empty(stop - start, dtype=np.float32)
        starts = self.block_grid_starts(t0)
        ends = starts + self.block_length
        filled = np.zeros(stop - start, dtype=bool)
        first_block = int(np.searchsorted(ends, start, side="right"))
        for b in range(first_block, len(starts)):
            s, e = int(starts[b]), int(ends[b])
            if s >= stop:
                break
            lo, hi = max(s, start), min(e, stop)
            if hi <= lo:
                continue
            stream0 = int(self.block_stream_start[b]) + (lo - s)
            out[lo - start : hi - start] = self.read_stream(stream0, stream0 + (hi - lo))
            filled[lo - start : hi - start] = True
        if not filled.all():
            self._fill_gaps(out, filled, start, starts, ends)
        out *= np.float32(self.volts_per_bit)
        return out

    def _fill_gaps(self, out, filled, start, starts, ends) -> None:
        """Fill unfilled positions of `out` (raw units) from the samples around each gap."""
        missing = np.flatnonzero(~filled)
        positions = missing + start
        # Every missing position lies between block b-1 and block b (b = first block
        # starting after it); all positions of one gap share that b.
        b_after = np.searchsorted(starts, positions, side="right")
        for b in np.unique(b_after):
            sel = b_after == b
            prev_pos = int(ends[b - 1]) - 1 if b > 0 else None
            next_pos = int(starts[b]) if b < len(starts) else None
            prev_val = self._sample_at(prev_pos, starts) if prev_pos is not None else None
            next_val = self._sample_at(next_pos, starts) if next_pos is not None else None
            if prev_val is None:
                out[missing[sel]] = next_val
            elif next_val is None:
                out[missing[sel]] = prev_val
            else:
                frac = (positions[sel] - prev_pos) / (next_pos - prev_pos)
                out[missing[sel]] = prev_val + frac * (next_val - prev_val)

    def _sample_at(self, position: int, starts) -> float:
        b = int(np.searchsorted(starts, position, side="right") - 1)
        stream = int(self.block_stream_start[b]) + (position - int(starts[b]))
        return float(self.read_stream(stream, stream + 1)[0])


def format_ncs_header(fields: dict[str, object]) -> bytes:
    """A 16 KiB Neuralynx header holding `fields` as `-Key value` lines, NUL-padded."""
    lines = ["######## Neuralynx Data File Header"]
    for key, value in fields.items():
        if isinstance(value, bool):
            value = "True" if value else "False"
        lines.append(f"-{key} {value}")
    text = "\r\n".join(lines) + "\r\n"
    raw = text.encode("latin-1")
    if len(raw) > HEADER_SIZE:
        raise ValueError("Neuralynx header text is longer than 16384 bytes")
    return raw + b"\x00" * (HEADER_SIZE - len(raw))
