"""Reading a recording's input blocks one step ahead of the converter.

The converter (pipeline.convert) asks for consecutive ranges of grid samples, each as
a block from the recording's `read_block`; while it filters one block, a thread reads
the next range it was told of, so that the disk and the processor work at once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pipeline.io.block import RecordBlock
from pipeline.io.recording import RawRecording


class BlockReader:
    """Blocks of grid samples [a, b) of `channels`, the next one read in the background.

    Two buffers take turns: a block returned by `get` stays valid until the next call
    to `get` (which starts reading the block after that into the same buffer).
    """

    def __init__(self, rec: RawRecording, channels: list[str], *, file_threads: int = 4):
        self.rec, self.channels = rec, channels
        self.files = ThreadPoolExecutor(max_workers=file_threads, thread_name_prefix="read")  # several files at once
        self.ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ahead")
        self.buffers = [None, None]
        self.pending = None  # (a, b, future, buffer index)

    def _load(self, a: int, b: int, which: int) -> RecordBlock:
        block, self.buffers[which] = self.rec.read_block(a, b, self.channels, self.buffers[which], self.files)
        return block

    def get(self, a: int, b: int, *, then: tuple[int, int] | None = None) -> RecordBlock:
        """The block of grid samples [a, b) (edges held); then start reading [then) ahead."""
        block, which = None, 0
        if self.pending is not None:
            p0, p1, future, which = self.pending
            self.pending = None
            if (p0, p1) == (a, b):
                block = future.result()
            else:
                future.exception()  # a wrong guess: let it finish with its buffer, ignore its error
        if block is None:
            block = self._load(a, b, which)
        if then is not None:
            self.pending = (*then, self.ahead.submit(self._load, *then, 1 - which), 1 - which)
        return block

    def close(self) -> None:
        self.ahead.shutdown(wait=True, cancel_futures=True)
        self.files.shutdown(wait=True)

    def __enter__(self) -> "BlockReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
