"""Core slots shared by every local run: a job holds one while it works.

Snakemake limits the cores of one run only; several runs side by side would each use
all of them. The local executor therefore names a folder of N lock files in the
environment of its jobs (EPHYS_CORE_SLOTS=<folder>:<N>), and each stage command holds
one of them (an flock, released by the kernel when the process ends, even by SIGKILL).
Commands run by hand, without that variable, take no slot.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import time
from pathlib import Path

log = logging.getLogger(__name__)

CORE_SLOTS_ENV = "EPHYS_CORE_SLOTS"
_held = []  # the open lock file of this process's slot (kept until the process ends)


def hold_core_slot(*, poll_s: float = 0.2) -> int | None:
    """Wait for a free core slot if the environment names slots; return its number."""
    spec = os.environ.get(CORE_SLOTS_ENV)
    if not spec or _held:
        return None
    folder, _, n = spec.rpartition(":")
    folder_path = Path(folder)
    folder_path.mkdir(parents=True, exist_ok=True)
    n_slots = max(1, int(n))
    waited_since = time.monotonic()
    told = False
    while True:
        for i in random.sample(range(n_slots), n_slots):
            f = open(folder_path / f"slot{i}.lock", "a")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            _held.append(f)
            if told:
                log.info("got core slot %d after %.0f s", i, time.monotonic() - waited_since)
            return i
        if not told and time.monotonic() - waited_since > 2:
            log.info("waiting for one of %d cores (other recordings are running)", n_slots)
            told = True
        time.sleep(poll_s)
