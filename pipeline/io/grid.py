"""Recordings stored as runs of samples on one clock, all channels together.

The readers of Intan and Open Ephys (pipeline.io.neo_formats) and of plain .dat
(pipeline.io.dat) build on `GridRecording`: each says where its runs lie and how to
read one; this places them on the recording's grid and fills what lies between.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

import numpy as np

from pipeline.errors import RawDataError
from pipeline.io.recording import RecordingBase, RecordingGap


class GridRecording(RecordingBase):
    """Runs of samples on one grid; what lies between runs is a gap, filled linearly.

    Subclasses set channel_names (through `_set_channels`), sampling_rate, n_samples,
    `_runs` [(grid_start, length)] sorted and disjoint, `_vpb` (float64 per channel, in
    channel_names order) and implement `_read_run(r, i0, i1, idx)` -> samples i0..i1 of
    run r as (len(idx), i1 - i0) float32 ADC units.
    """

    folder: Path
    _runs: list[tuple[int, int]]
    _vpb: np.ndarray

    def _set_channels(self, names: list[str], where) -> None:
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise RawDataError(f"{where}: several channels are named {dupes[0]}; channels are identified by name.")
        self.channel_names = list(names)
        self._pos = {n: i for i, n in enumerate(names)}

    @abstractmethod
    def _read_run(self, r: int, i0: int, i1: int, idx: np.ndarray) -> np.ndarray: ...

    def _indexes(self, channels: list[str] | None) -> np.ndarray:
        if channels is None:
            return np.arange(len(self.channel_names))
        try:
            return np.array([self._pos[c] for c in channels], dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"{self.folder}: no channel named {e.args[0]}") from None

    def read(self, start: int, stop: int, channels: list[str] | None = None, *,
             scaled: bool = True) -> np.ndarray:
        """Grid samples [start, stop) as (channels, samples) float32, in volts, or in ADC
        units if not `scaled` (see `volts_per_bit`)."""
        start, stop = int(start), int(stop)
        if not 0 <= start < stop <= self.n_samples:
            raise ValueError(f"{self.folder}: samples [{start}, {stop}) are not inside [0, {self.n_samples})")
        idx = self._indexes(channels)
        out = np.empty((len(idx), stop - start), dtype=np.float32)
        filled = np.zeros(stop - start, dtype=bool)
        for r, (s, n) in enumerate(self._runs):
            lo, hi = max(s, start), min(s + n, stop)
            if hi > lo:
                out[:, lo - start:hi - start] = self._read_run(r, lo - s, hi - s, idx)
                filled[lo - start:hi - start] = True
        if not filled.all():
            self._fill_gaps(out, start, stop, idx)
        if scaled:
            out *= self._vpb[idx].astype(np.float32)[:, None]
        return out

    def _fill_gaps(self, out: np.ndarray, start: int, stop: int, idx: np.ndarray) -> None:
        """Linear between the samples either side of each gap; held beyond the ends.

        Depends only on the file, never on the requested range."""
        runs = self._runs
        for k in range(len(runs) + 1):
            prev_r = k - 1 if k > 0 else None
            next_r = k if k < len(runs) else None
            g0 = runs[prev_r][0] + runs[prev_r][1] if prev_r is not None else 0
            g1 = runs[next_r][0] if next_r is not None else self.n_samples
            lo, hi = max(g0, start), min(g1, stop)
            if hi <= lo:
                continue
            pos = np.arange(lo, hi)
            prev = None if prev_r is None else self._read_run(prev_r, runs[prev_r][1] - 1,
                                                              runs[prev_r][1], idx)[:, 0].astype(np.float64)
            nxt = None if next_r is None else self._read_run(next_r, 0, 1, idx)[:, 0].astype(np.float64)
            if prev is None:
                out[:, lo - start:hi - start] = nxt[:, None]
            elif nxt is None:
                out[:, lo - start:hi - start] = prev[:, None]
            else:
                frac = (pos - (g0 - 1)) / float(g1 - (g0 - 1))
                out[:, lo - start:hi - start] = prev[:, None] + frac[None, :] * (nxt - prev)[:, None]

    def volts_per_bit(self, channels: list[str] | None = None) -> np.ndarray:
        return self._vpb[self._indexes(channels)].astype(np.float64)

    def gaps(self) -> list[RecordingGap]:
        """Stretches of the grid between runs (all channels at once)."""
        out, cursor = [], 0
        for s, n in self._runs:
            if s > cursor:
                out.append(RecordingGap(cursor, s - cursor, tuple(self.channel_names)))
            cursor = s + n
        if self.n_samples > cursor:
            out.append(RecordingGap(cursor, self.n_samples - cursor, tuple(self.channel_names)))
        return out
