"""Neuralynx continuously sampled channel (.ncs) files: read and write.

The folder reader (pipeline.io.neuralynx) opens each channel as an `NcsFile`, which
scans the record headers once and reads samples with ordinary reads; the converter's
blocks of whole records the folder reader reads itself, with preadv. Neither changes
the file. The synthetic-recording generator writes files through `format_ncs_header`
and `NCS_RECORD_DTYPE`, in exactly the layout Cheetah/Pegasus use: a 16 KiB latin-1
text header padded with NUL bytes, then 1044-byte records of (uint64 timestamp in
microseconds, uint32 channel number, uint32 sampling rate, uint32 valid-sample count,
512 x int16 samples).
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


SCAN_CHUNK_RECORDS = 32768  # ~34 MB per read while scanning record headers


class NcsFile:
    """One .ncs channel, read-only, its samples placed on a time grid.

    The grid is the recording clock sampled at the nominal rate, starting at `t0_us`
    (by default this file's first timestamp). Each run of records whose timestamps
    follow on from the previous record's valid samples is a block; a block starts at
    the grid position its first timestamp gives. Samples missing between blocks
    (missing records, partial records, a channel that stops early) are gaps.

    Opening a file scans every record header once, in chunks, and keeps only a compact
    index (the blocks and the rare partial records). `index()` returns it; passing it
    back (`NcsFile(path, index=...)`) skips the scan, so a job converting one time
    segment reads only that segment's records, in bounded memory.
    """

    def __init__(self, path: str | os.PathLike, *, gap_tolerance_us: float | None = None,
                 index: dict | None = None):
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
        self.n_records = n_records
        period_us = 1e6 / self.sampling_rate
        # Timestamps jitter by a microsecond; anything under half a sample is not a gap.
        self.gap_tolerance_us = period_us / 2 + 1 if gap_tolerance_us is None else gap_tolerance_us
        self._records = None
        self._timestamps = None
        self._n_valid = None
        if index is None:
            self._scan()
        else:
            self._load_index(index)
        self.t0_us = int(self._blocks[0, 2])

    # -- reading record headers ---------------------------------------------------
    def _read_records(self, r0: int, r1: int) -> np.ndarray:
        """Records r0..r1 as a structured array (an ordinary read: nothing stays mapped)."""
        with open(self.path, "rb") as f:
            f.seek(HEADER_SIZE + r0 * RECORD_SIZE)
            return np.fromfile(f, dtype=NCS_RECORD_DTYPE, count=r1 - r0)

    def _chunks(self):
        for r0 in range(0, self.n_records, SCAN_CHUNK_RECORDS):
            yield r0, self._read_records(r0, min(self.n_records, r0 + SCAN_CHUNK_RECORDS))

    def _scan(self) -> None:
        """Check every record header and build the index, one chunk at a time."""
        period_us = 1e6 / self.sampling_rate
        rate = round(self.sampling_rate)
        block_starts: list[tuple[int, int]] = []  # (record, timestamp)
        partial: list[tuple[int, int]] = []
        first_channel = None
        prev_ts = prev_nv = None
        for r0, rec in self._chunks():
            ts = rec["timestamp"].astype(np.int64)
            nv = rec["n_valid"].astype(np.int64)
            ch = rec["channel"]
            if first_channel is None:
                first_channel = int(ch[0])
            bad = np.flatnonzero(ch != first_channel)
            if bad.size:
                raise RawDataError(
                    f"{self.path}: record {r0 + bad[0]} has channel number {ch[bad[0]]} but the "
                    f"file's first record has {first_channel}: records of two channels are mixed."
                )
            bad = np.flatnonzero(rec["sampling_rate"] != rate)
            if bad.size:
                raise RawDataError(
                    f"{self.path}: record {r0 + bad[0]} says {rec['sampling_rate'][bad[0]]} Hz but the header "
                    f"says -SamplingFrequency {self.sampling_rate:g}."
                )
            bad = np.flatnonzero(nv > SAMPLES_PER_RECORD)
            if bad.size:
                raise RawDataError(
                    f"{self.path}: record {r0 + bad[0]} claims {nv[bad[0]]} valid samples, "
                    f"more than the {SAMPLES_PER_RECORD} a record holds: the file is corrupt."
                )
            # Differences to the previous record, across the chunk boundary too.
            all_ts = ts if prev_ts is None else np.concatenate([[prev_ts], ts])
            all_nv = nv if prev_nv is None else np.concatenate([[prev_nv], nv])
            offset = r0 if prev_ts is None else r0 - 1
            back = np.flatnonzero(np.diff(all_ts) <= 0)
            if back.size:
                i = offset + back[0] + 1
                raise RawDataError(
                    f"{self.path}: the timestamp of record {i} ({all_ts[back[0] + 1]} us) is not "
                    f"after that of record {i - 1} ({all_ts[back[0]]} us): time goes backwards."
                )
            jump = all_ts[1:] - (all_ts[:-1] + all_nv[:-1] * period_us)
            overlap = np.flatnonzero(jump < -self.gap_tolerance_us - period_us)
            if overlap.size:
                raise RawDataError(
                    f"{self.path}: record {offset + overlap[0] + 1} starts {-jump[overlap[0]]:.0f} us before "
                    "the previous record's samples end: records overlap in time."
                )
            if prev_ts is None:
                block_starts.append((0, int(ts[0])))
            for b in np.flatnonzero(jump > self.gap_tolerance_us) + 1:
                block_starts.append((offset + int(b), int(all_ts[b])))
            for i in np.flatnonzero(nv != SAMPLES_PER_RECORD):
                partial.append((r0 + int(i), int(nv[i])))
            prev_ts, prev_nv = int(ts[-1]), int(nv[-1])
        self.channel_number = first_channel
        starts = [b[0] for b in block_starts]
        stops = starts[1:] + [self.n_records]
        blocks = [[a, b, t] for (a, t), b in zip(block_starts, stops)]
        self._set_index(blocks, partial)

    def _load_index(self, index: dict) -> None:
        if index.get("n_records") != self.n_records:
            raise RawDataError(
                f"{self.path} has {self.n_records} records, not the {index.get('n_records')} it had when "
                "it was inspected: the file changed. Inspect the recording again (tick rerun)."
            )
        self.channel_number = int(index["channel_number"])
        self._set_index(index["blocks"], index.get("partial", []))

    def _set_index(self, blocks: list, partial: list) -> None:
        partial = sorted((int(r), int(n)) for r, n in partial)
        self._partial_idx = np.array([p[0] for p in partial], dtype=np.int64)
        self._missing_cum = np.concatenate(
            [[0], np.cumsum([SAMPLES_PER_RECORD - p[1] for p in partial])]).astype(np.int64)
        blocks = np.array(blocks, dtype=np.int64).reshape(-1, 3)
        length = self._stream_offset(blocks[:, 1]) - self._stream_offset(blocks[:, 0])
        # Records with no valid sample carry no data; a block of them has no place on the grid.
        blocks = blocks[length > 0]
        if len(blocks) == 0:
            raise RawDataError(
                f"{self.path}: none of its {self.n_records} records holds a valid sample "
                "(NumberOfValidSamples is 0 in all of them)."
            )
        self._blocks = blocks
        self.block_records = blocks[:, :2]
        self.block_stream_start = self._stream_offset(blocks[:, 0])
        self.block_length = self._stream_offset(blocks[:, 1]) - self.block_stream_start
        self._n_stream = int(self._stream_offset(self.n_records))

    def index(self) -> dict:
        """What a later open needs instead of a scan (small: blocks and partial records)."""
        partial = [[int(r), SAMPLES_PER_RECORD - int(self._missing_cum[i + 1] - self._missing_cum[i])]
                   for i, r in enumerate(self._partial_idx)]
        return {"n_records": self.n_records, "channel_number": self.channel_number,
                "blocks": self._blocks.tolist(), "partial": partial}

    def _stream_offset(self, r):
        """Valid samples before record r (r may be an array)."""
        k = np.searchsorted(self._partial_idx, r, side="left")
        return SAMPLES_PER_RECORD * np.asarray(r, dtype=np.int64) - self._missing_cum[k]

    def _record_containing(self, s: int) -> int:
        """The record holding stream sample s (records without samples are skipped)."""
        if len(self._partial_idx) == 0:
            return min(s // SAMPLES_PER_RECORD, self.n_records - 1)
        lo, hi = 0, self.n_records  # largest r with offset(r) <= s
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if int(self._stream_offset(mid)) <= s:
                lo = mid
            else:
                hi = mid - 1
        return lo

    # -- whole-file views, for diagnostics and tests ---------------------------------
    @property
    def records(self) -> np.memmap:
        """All records, memory-mapped read-only (touching them all maps the whole file)."""
        if self._records is None:
            self._records = np.memmap(self.path, dtype=NCS_RECORD_DTYPE, mode="r", offset=HEADER_SIZE)
        return self._records

    @property
    def timestamps(self) -> np.ndarray:
        if self._timestamps is None:
            self._timestamps = np.concatenate([c["timestamp"] for _, c in self._chunks()])
        return self._timestamps

    @property
    def n_valid(self) -> np.ndarray:
        if self._n_valid is None:
            self._n_valid = np.concatenate([c["n_valid"] for _, c in self._chunks()]).astype(np.int64)
        return self._n_valid

    # -- the grid -----------------------------------------------------------------
    def block_grid_starts(self, t0_us: int) -> np.ndarray:
        """Grid position of every block's first sample, for a grid starting at t0_us."""
        return np.round((self._blocks[:, 2] - t0_us) * self.sampling_rate / 1e6).astype(np.int64)

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
        start, stop = max(start, 0), min(stop, self._n_stream)
        if stop <= start:
            return np.empty(0, dtype=np.int16)
        r0 = self._record_containing(start)
        r1 = self._record_containing(stop - 1) + 1
        samples = self._read_records(r0, r1)["samples"]
        k0, k1 = np.searchsorted(self._partial_idx, [r0, r1])
        if k0 == k1:
            flat = samples.reshape(-1)
        else:
            valid = np.full(r1 - r0, SAMPLES_PER_RECORD)
            for k in range(k0, k1):
                valid[self._partial_idx[k] - r0] = SAMPLES_PER_RECORD - (self._missing_cum[k + 1] - self._missing_cum[k])
            flat = samples[np.arange(SAMPLES_PER_RECORD)[None, :] < valid[:, None]]
        offset = start - int(self._stream_offset(r0))
        return np.ascontiguousarray(flat[offset : offset + (stop - start)], dtype=np.int16)

    def record_run(self, start: int, stop: int, t0_us: int) -> tuple[int, int, int] | None:
        """Where grid samples [start, stop) lie, if they are one unbroken run of records.

        Returns (r0, r1, q0): the samples are records r0..r1's samples taken in order
        from sample q0 of record r0 (q0 < 512). None if the range touches a gap or a
        partial record (other than the last one read), or lies outside the file: then
        `read_grid` is the way to read it.
        """
        starts = self.block_grid_starts(t0_us)
        b = int(np.searchsorted(starts, start, side="right")) - 1
        if b < 0 or stop > starts[b] + self.block_length[b] or stop <= start:
            return None
        s0 = int(self.block_stream_start[b]) + (start - int(starts[b]))
        r0 = self._record_containing(s0)
        r1 = self._record_containing(s0 + (stop - start) - 1) + 1
        k0, k1 = np.searchsorted(self._partial_idx, [r0, r1 - 1])
        if k1 > k0:
            return None
        return r0, r1, s0 - int(self._stream_offset(r0))

    def read_grid(self, start: int, stop: int, *, t0_us: int | None = None,
                  out: np.ndarray | None = None, scaled: bool = True) -> np.ndarray:
        """Samples at grid positions [start, stop), float32, in volts (or ADC units if not `scaled`).

        Positions outside the file's blocks (gaps, before the start, after the end) are
        filled deterministically: linearly between the valid samples on either side of
        a gap, and by holding the first/last sample beyond the ends. The fill depends
        only on the file, never on the requested range, so that any slicing of the
        recording gives the same values. `out` (a float32 array of stop - start samples,
        e.g. one channel's row of a larger array) is filled in place.
        """
        t0 = self.t0_us if t0_us is None else t0_us
        if out is None:
            out = np.empty(stop - start, dtype=np.float32)
        starts = self.block_grid_starts(t0)
        ends = starts + self.block_length
        cursor = start  # the first position not written yet
        for b in range(int(np.searchsorted(ends, start, side="right")), len(starts)):
            s, e = int(starts[b]), int(ends[b])
            if s >= stop:
                break
            lo, hi = max(s, start), min(e, stop)
            if hi <= lo:
                continue
            if lo > cursor:
                self._fill_gap(out, cursor, lo, start, starts, ends)
            stream0 = int(self.block_stream_start[b]) + (lo - s)
            out[lo - start : hi - start] = self.read_stream(stream0, stream0 + (hi - lo))
            cursor = max(cursor, hi)
        if cursor < stop:
            self._fill_gap(out, cursor, stop, start, starts, ends)
        if scaled:
            out *= np.float32(self.volts_per_bit)
        return out

    def _fill_gap(self, out, g0: int, g1: int, start: int, starts, ends) -> None:
        """Fill grid positions [g0, g1) of `out` (raw units), which no block covers.

        They lie between block b-1 and block b (b = the first block starting after g0):
        linear between the last sample before and the first after; held beyond the ends.
        """
        b = int(np.searchsorted(starts, g0, side="right"))
        prev_pos = int(ends[b - 1]) - 1 if b > 0 else None
        next_pos = int(starts[b]) if b < len(starts) else None
        prev_val = self._sample_at(prev_pos, starts) if prev_pos is not None else None
        next_val = self._sample_at(next_pos, starts) if next_pos is not None else None
        target = out[g0 - start : g1 - start]
        if prev_val is None:
            target[:] = next_val
        elif next_val is None:
            target[:] = prev_val
        else:
            frac = (np.arange(g0, g1) - prev_pos) / (next_pos - prev_pos)
            target[:] = prev_val + frac * (next_val - prev_val)

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
