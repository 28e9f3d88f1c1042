"""The local executor: one Snakemake process per run on this machine, started in the
background in a session of its own, so it outlives the poller that started it.

Every local run gets all of `executor.cores`, and its jobs take a core slot
(pipeline.executor.slots) before they work, so runs side by side share the cores
instead of oversubscribing them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from pipeline import layout
from pipeline.executor import Run, now_iso, process_alive, process_start_ticks, snakemake_command
from pipeline.executor.slots import CORE_SLOTS_ENV

# Snakemake processes this process started: polled so that they do not linger as
# zombies (which would still look alive) in a long-running poller.
_children: dict[int, subprocess.Popen] = {}


def open_executor(config: dict) -> "LocalExecutor":
    return LocalExecutor(config)


def _reap() -> None:
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


class LocalExecutor:
    name = "local"

    def __init__(self, config: dict):
        self.config = config
        self.base = Path(config["base_dir"])
        self.cores = int(config["executor"]["cores"])

    def command(self, run: Run) -> list[str]:
        return snakemake_command(self.config, run, "--cores", str(self.cores))

    def start(self, run: Run) -> None:
        run.backend = self.name
        run.command = self.command(run)
        run.log = f"{layout.RUN_LOGS_DIR}/{run.run_id}.log"
        log_path = self.base / run.log
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env[CORE_SLOTS_ENV] = f"{self.base / layout.CORE_SLOTS_DIR}:{self.cores}"
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(run.command, cwd=self.base, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _children[proc.pid] = proc
        run.pid = proc.pid
        run.pid_started = process_start_ticks(proc.pid)
        run.started_at = now_iso()

    def is_running(self, run: Run) -> bool:
        _reap()
        return process_alive(run.pid, run.pid_started)

    def stop(self, run: Run, *, grace_s: float = 20.0) -> None:
        """SIGTERM to the run's process group (Snakemake and its jobs), SIGKILL after `grace_s`."""
        if not self.is_running(run):
            return
        try:
            os.killpg(run.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and self.is_running(run):
            time.sleep(0.1)
        if self.is_running(run):
            try:
                os.killpg(run.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
