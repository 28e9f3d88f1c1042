"""The interface every raw-format reader offers, and what the readers share.

`pipeline.io.raw.open_recording` returns one of the format readers (neuralynx,
neo_formats, dat); inspect and convert see only this interface: channel names, one
sampling rate, the recording's start, its length on the recording clock (gaps
included), `read(start, stop)` of any slice on that clock, and `read_block` of the
converter's input, raw and with the recording's edges held.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from pipeline.io.block import RecordBlock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordingGap:
    start: int  # grid samples from the recording start
    length: int
    channels: tuple[str, ...]  # channels missing samples there


@runtime_checkable
class RawRecording(Protocol):
    """What inspect and convert use of a raw recording, whatever its format."""

    format: str  # "neuralynx", "intan", "openephys-binary", "openephys-legacy", "dat"
    channel_names: list[str]  # in the recording's natural order; channels are identified by name
    sampling_rate: float  # Hz, the same for every channel
    n_samples: int  # grid samples from the first sample of any channel to the last, gaps included
    t0_us: int  # the vendor's clock at grid sample 0, in microseconds
    start_time: datetime  # tz-aware wall-clock time of grid sample 0

    @property
    def duration_s(self) -> float: ...

    def read(self, start: int, stop: int, channels: list[str] | None = None, *,
             scaled: bool = True) -> np.ndarray:
        """Grid samples [start, stop) as (channels, samples) float32, in volts, or in
        ADC units if not `scaled` (volts = ADC units x volts_per_bit)."""

    def read_block(self, a: int, b: int, channels: list[str], buffer: np.ndarray | None = None,
                   pool=None) -> tuple[RecordBlock, np.ndarray | None]:
        """Grid samples [a, b) of `channels` in ADC units, the first and last samples of
        the recording held beyond its ends (a may be < 0, b > n_samples). `buffer` is
        the one this returned last time, for reuse; `pool` (an executor) may read
        several files at once."""

    def volts_per_bit(self, channels: list[str] | None = None) -> np.ndarray: ...

    def gaps(self) -> list[RecordingGap]:
        """Stretches where one or more channels have no samples (filled when read)."""

    def channel_ends(self) -> dict[str, int]:
        """Channel -> grid position one past its last sample."""

    def describe_files(self) -> list[dict]:
        """Per-file facts for recording.json (see file_facts)."""


class RecordingBase(ABC):
    """Defaults for the readers: a recording whose samples are reached through `read`."""

    format = "?"
    channel_names: list[str]
    sampling_rate: float
    n_samples: int
    t0_us: int
    start_time: datetime

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sampling_rate

    @abstractmethod
    def read(self, start: int, stop: int, channels: list[str] | None = None, *,
             scaled: bool = True) -> np.ndarray: ...

    def read_block(self, a: int, b: int, channels: list[str], buffer: np.ndarray | None = None,
                   pool=None) -> tuple[RecordBlock, np.ndarray | None]:
        """Grid samples [a, b) of `channels`, edges held, as float32 rows of ADC units
        (`read(..., scaled=False)`); `buffer` and `pool` are not needed and passed through."""
        lo, hi = max(a, 0), min(b, self.n_samples)
        x = self.read(lo, hi, channels, scaled=False)
        return RecordBlock.from_held_rows(x, lo - a, b - hi), buffer

    @abstractmethod
    def volts_per_bit(self, channels: list[str] | None = None) -> np.ndarray: ...

    @abstractmethod
    def gaps(self) -> list[RecordingGap]: ...

    def channel_ends(self) -> dict[str, int]:
        return {c: self.n_samples for c in self.channel_names}

    @abstractmethod
    def describe_files(self) -> list[dict]: ...


def head_tail_sha256(path: Path) -> str:
    """A quick checksum of a raw file: its first 16 KiB + 1 MiB, its last MiB and its size.

    Enough to notice a file that was replaced or is still growing, without reading a
    terabyte.
    """
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(16384 + (1 << 20)))
        fh.seek(max(0, size - (1 << 20)))
        h.update(fh.read())
    h.update(str(size).encode())
    return h.hexdigest()


def file_facts(path: Path, folder: Path) -> dict:
    """Name (relative to `folder` where it lies below it), size and quick checksum of one file."""
    try:
        name = str(path.relative_to(folder))
    except ValueError:
        name = str(path)
    return {"file": name, "bytes": path.stat().st_size, "sha256_head_tail": head_tail_sha256(path)}


def start_from_mtime(path: Path, duration_s: float) -> datetime:
    """The start time of a recording whose files do not say it: the data file's
    modification time minus the recording's duration (logged as a warning)."""
    log.warning("%s: no start time in the files; using the file's modification time minus its duration", path)
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc) - timedelta(seconds=duration_s)
