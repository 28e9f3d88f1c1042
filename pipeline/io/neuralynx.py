"""Neuralynx recordings: a folder of .ncs files, one per channel, on one clock.

`pipeline.io.raw.open_recording` opens a folder holding .ncs files as a
`NeuralynxRecording` (the interface of pipeline.io.recording.RawRecording); each file is
read through pipeline.io.ncs.NcsFile. `read_block` hands the converter the raw records
themselves (a pipeline.io.block.RecordBlock), so that no sample is copied before the
first filter stage reads it.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pipeline.channels import natural_key
from pipeline.errors import RawDataError
from pipeline.io.block import SLACK, RecordBlock
from pipeline.io.ncs import HEADER_SIZE, NCS_RECORD_DTYPE, RECORD_SIZE, SAMPLES_PER_RECORD, NcsFile
from pipeline.io.recording import RecordingBase, RecordingGap, file_facts

_RECORD_HEADER_BYTES = NCS_RECORD_DTYPE.fields["samples"][1]  # timestamp, channel, rate, count


def _parse_time_created(value: str | None) -> datetime | None:
    if not value:
        return None
    for fmt in ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M:%S.%f", "%m/%d/%Y %H:%M:%S"):
        try:
            return datetime.strptime(value.strip(), fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


class NeuralynxRecording(RecordingBase):
    """A folder of .ncs files, one per channel, sharing one clock."""

    format = "neuralynx"

    def __init__(self, folder: str | Path, *, index: dict[str, dict] | None = None):
        """`index` (file name -> NcsFile.index(), as in recording.json) skips the header scan."""
        self.folder = Path(folder)
        paths = [p for p in self.folder.iterdir() if p.suffix.lower() == ".ncs" and p.is_file()]
        if not paths:
            raise RawDataError(f"{self.folder} holds no Neuralynx .ncs files.")
        if index is not None:
            missing = sorted(set(index) - {p.name for p in paths})
            if missing:
                raise RawDataError(f"{self.folder}: {', '.join(missing)} disappeared since the recording was inspected.")
            paths = [p for p in paths if p.name in index]
        files = [NcsFile(p, index=None if index is None else index[p.name]) for p in paths]
        files.sort(key=lambda f: natural_key(f.name))
        names = [f.name for f in files]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            clash = [str(f.path.name) for f in files if f.name == dupes[0]]
            raise RawDataError(f"{self.folder}: the files {', '.join(sorted(clash))} record the same channel {dupes[0]}.")
        rates = {f.sampling_rate for f in files}
        if len(rates) > 1:
            by_rate = {}
            for f in files:
                by_rate.setdefault(f.sampling_rate, []).append(f.path.name)
            detail = "; ".join(f"{r:g} Hz: {', '.join(v[:3])}{' ...' if len(v) > 3 else ''}" for r, v in sorted(by_rate.items()))
            raise RawDataError(
                f"{self.folder}: channels were recorded at different sampling rates ({detail}); "
                "convert them as separate recordings."
            )
        self.files = files
        self._by_name = {f.name: f for f in files}
        self.channel_names = names
        self.sampling_rate = files[0].sampling_rate
        self.t0_us = min(f.t0_us for f in files)
        self._ends = {f.name: f.grid_end(self.t0_us) for f in files}
        self.n_samples = max(self._ends.values())
        created = _parse_time_created(files[0].header.get("TimeCreated"))
        if created is None:
            created = datetime.fromtimestamp(self.t0_us / 1e6, tz=timezone.utc)
        self.start_time = created

    def read(self, start: int, stop: int, channels: list[str] | None = None, *,
             scaled: bool = True) -> np.ndarray:
        """Grid samples [start, stop) as (channels, samples) float32, in volts, or in ADC
        units if not `scaled` (see `volts_per_bit`)."""
        chosen = self.channel_names if channels is None else channels
        out = np.empty((len(chosen), stop - start), dtype=np.float32)
        for i, name in enumerate(chosen):
            self._by_name[name].read_grid(start, stop, t0_us=self.t0_us, out=out[i], scaled=scaled)
        return out

    def read_block(self, a: int, b: int, channels: list[str], buffer: np.ndarray | None = None,
                   pool=None) -> tuple[RecordBlock, np.ndarray]:
        """Grid samples [a, b) of `channels`, edges held, as raw records (ADC units).

        Channels whose samples in [a, b) are one unbroken run of records are read
        straight into `buffer` (uint8, grown and returned for reuse); the rest (a gap,
        a partial record, a channel that ended) go through `read_grid`. `pool` (an
        executor) reads several files at once, which keeps the disk busy.
        """
        lo, hi = max(a, 0), min(b, self.n_samples)
        slot_records = (hi - lo) // SAMPLES_PER_RECORD + 2
        slot_bytes = slot_records * RECORD_SIZE
        need = len(channels) * slot_bytes
        if buffer is None or buffer.size < need:
            buffer = np.empty(need, dtype=np.uint8)
        n = len(channels)
        start = np.zeros(n, dtype=np.int64)
        q0 = np.zeros(n, dtype=np.int64)
        row = np.full(n, -1, dtype=np.int64)
        jobs, fallback = [], []
        for i, name in enumerate(channels):
            f = self._by_name[name]
            run = f.record_run(lo, hi, self.t0_us)
            if run is None:
                row[i] = len(fallback)
                fallback.append(f)
            else:
                r0, r1, q0[i] = run
                at = len(jobs) * slot_bytes
                start[i] = (at + _RECORD_HEADER_BYTES) // 2
                jobs.append((f.path, HEADER_SIZE + r0 * RECORD_SIZE, (r1 - r0) * RECORD_SIZE, at))

        def read_one(job):
            path, offset, length, at = job
            view = memoryview(buffer)[at:at + length]
            fd = os.open(path, os.O_RDONLY)
            try:
                got = 0
                while got < length:
                    k = os.preadv(fd, [view[got:]], offset + got)
                    if k == 0:
                        raise RawDataError(f"{path} ended while being read: it was truncated after inspection.")
                    got += k
            finally:
                os.close(fd)

        if pool is not None and len(jobs) > 1:
            list(pool.map(read_one, jobs))
        else:
            for job in jobs:
                read_one(job)
        flat = np.frombuffer(buffer, dtype=np.int16, count=need // 2)
        rows = np.empty((len(fallback), b - a + SLACK), dtype=np.float32)
        for k, f in enumerate(fallback):
            x = f.read_grid(lo, hi, t0_us=self.t0_us, out=rows[k, lo - a:hi - a], scaled=False)
            rows[k, :lo - a] = x[0]
            rows[k, hi - a:b - a] = x[-1]
        return RecordBlock(flat, start, q0, lo - a, hi - lo, rows, row, samples_per_record=SAMPLES_PER_RECORD,
                           record_stride=RECORD_SIZE // 2), buffer

    def volts_per_bit(self, channels: list[str] | None = None) -> np.ndarray:
        chosen = self.channel_names if channels is None else channels
        return np.array([self._by_name[c].volts_per_bit for c in chosen], dtype=np.float64)

    def gaps(self) -> list[RecordingGap]:
        """Stretches where one or more channels have no samples, merged across channels."""
        per: dict[tuple[int, int], list[str]] = {}
        for f in self.files:
            for g in f.gaps(self.t0_us, self.n_samples):
                per.setdefault((g.start, g.length), []).append(f.name)
        return [RecordingGap(s, n, tuple(ch)) for (s, n), ch in sorted(per.items())]

    def channel_ends(self) -> dict[str, int]:
        return dict(self._ends)

    def describe_files(self) -> list[dict]:
        """Per-file facts for recording.json: the reading index and a quick checksum
        (see pipeline.io.recording.file_facts)."""
        out = []
        for f in self.files:
            out.append({
                "channel": f.name, **file_facts(f.path, self.folder), "records": f.n_records,
                "channel_number": f.channel_number, "ad_bit_volts": f.ad_bit_volts,
                "input_inverted": f.volts_per_bit < 0, "first_timestamp_us": f.t0_us, "index": f.index(),
            })
        return out
