"""Raw samples handed from a reader to the converter's filters, without a copy.

A reader fills a buffer with raw int16 samples as they lie in the vendor's files
(fixed-size records, headers and all, for Neuralynx) and describes where each
channel's samples are; the decimation kernel (pipeline.dsp.fir_kernel) reads them
from there. Channels a reader cannot hand over that way come as float32 rows.
"""

from __future__ import annotations

import numpy as np

SLACK = 64  # spare float32 columns after every row, for loops that read a few samples past a row's end


class RecordBlock:
    """Grid samples [a, b) of some channels, in ADC units, as the reader left them.

    `flat` is the reader's buffer as int16 words, holding records of
    `samples_per_record` samples each, `record_stride` words apart (a record's header
    lies between its samples and the next record's). Channel c's samples begin at word
    `start[c]` (the first sample of its first record), from sample `q0[c]` of that
    record on, `have` of them, preceded by `before` copies of the first (the held
    recording start) and followed by copies of the last (`before` and `have` are the
    same for every channel of a block). A channel with `row[c] >= 0` comes instead from
    the float32 row `rows[row[c]]`, which carries SLACK spare columns at its end.
    """

    __slots__ = ("flat", "start", "q0", "before", "have", "rows", "row", "samples_per_record", "record_stride")

    def __init__(self, flat: np.ndarray, start: np.ndarray, q0: np.ndarray, before: int, have: int,
                 rows: np.ndarray, row: np.ndarray, *, samples_per_record: int, record_stride: int):
        if samples_per_record < 1 or record_stride < samples_per_record:
            raise ValueError(f"records of {samples_per_record} samples cannot lie {record_stride} words apart")
        self.flat, self.start, self.q0, self.before, self.have = flat, start, q0, before, have
        self.rows, self.row = rows, row
        self.samples_per_record, self.record_stride = samples_per_record, record_stride

    @classmethod
    def from_rows(cls, rows: np.ndarray) -> "RecordBlock":
        """A block whose channels are all float32 rows (which must carry SLACK spare columns)."""
        n = rows.shape[0]
        none = np.zeros(n, dtype=np.int64)
        return cls(np.zeros(1, dtype=np.int16), none, none, 0, 0, rows, np.arange(n, dtype=np.int64),
                   samples_per_record=1, record_stride=1)

    @classmethod
    def from_held_rows(cls, x: np.ndarray, before: int, after: int) -> "RecordBlock":
        """A block of rows holding `x` (channels, samples) with its first sample repeated
        `before` times ahead of it and its last `after` times behind it."""
        n = x.shape[1]
        rows = np.empty((x.shape[0], before + n + after + SLACK), dtype=np.float32)
        rows[:, before:before + n] = x
        rows[:, :before] = x[:, :1]
        rows[:, before + n:before + n + after] = x[:, -1:]
        return cls.from_rows(rows)
