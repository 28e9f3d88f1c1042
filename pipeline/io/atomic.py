"""Atomic file output: write to a temporary name beside the target, rename when complete.

A crash or a killed job therefore never leaves a half-written file under the final
name, so nothing that looks finished is ever incomplete.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator


_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto the target on success.

    `suffix` keeps an ending some writers insist on (MNE wants .fif).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A writer killed mid-write (SIGKILL, node failure) leaves its temporary behind;
    # the next writer of the same target clears it. One target has one writer at a time.
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp*"):
        with contextlib.suppress(OSError):
            stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + (suffix or ""), dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are shared
        os.replace(tmp_path, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json_atomic(target: str | os.PathLike, data) -> None:
    write_text_atomic(target, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_tsv_atomic(target: str | os.PathLike, header: list[str], rows) -> None:
    """A tab-separated table: the header, then each row's cells."""
    out = io.StringIO()
    w = csv.writer(out, delimiter="\t", lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    write_text_atomic(target, out.getvalue())
