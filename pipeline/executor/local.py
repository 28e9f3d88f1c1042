"""The local executor: one Snakemake process per run on this machine, started in the
background in a session of its own, so it outlives the poller that started it.

Every local run gets all of `executor.cores`, and its jobs take a core slot
(pipeline.executor.slots) before they work, so runs side by side share the cores
instead of oversubscribing them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from datetime import datetime
from pathlib import Path

from pipeline import layout
from pipeline.errors import BackendUnavailable
from pipeline.executor import Run, now_iso, process_alive, process_start_ticks, snakemake_command

STOP_GRACE_S = 30.0  # after a stop was asked for this long, the next ask kills
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
        try:
            with open(log_path, "ab") as out:
                proc = subprocess.Popen(run.command, cwd=self.base, env=env, stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:  # no process to spare, the disk full ...: the next poll tries again
            raise BackendUnavailable(f"the workflow could not be started on this machine ({e.strerror or e})") from None
        _children[proc.pid] = proc
        run.host = socket.gethostname()
        run.pid = proc.pid
        run.pid_started = process_start_ticks(proc.pid)
        run.started_at = now_iso()

    def is_running(self, run: Run) -> bool:
        """Snakemake alive, or jobs of its process group outliving it. A run started on
        another machine cannot be seen from here and counts as running."""
        if run.host and run.host != socket.gethostname():
            return True
        _reap()
        return process_alive(run.pid, run.pid_started) or self._group_alive(run)

    @staticmethod
    def _group_alive(run: Run) -> bool:
        # Snakemake leads a session of its own, so its jobs are in the group named by its
        # pid; a group id is not handed out again while any member lives.
        if run.pid is None or run.pid_started is None:
            return False
        try:
            os.killpg(run.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def activity(self, run: Run) -> None:
        return None  # one Snakemake process; its progress is in its outputs

    def explain_failure(self, run: Run) -> None:
        return None  # a local job's own log says why it stopped

    def stop(self, run: Run, *, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM to the run's process group (Snakemake and its jobs); SIGKILL when asked
        again more than `grace_s` after the first ask. Never waits."""
        if not self.is_running(run) or run.pid is None:
            return
        asked = datetime.fromisoformat(run.stop_requested_at) if run.stop_requested_at else None
        force = asked is not None and (datetime.now().astimezone() - asked).total_seconds() > grace_s
        try:
            os.killpg(run.pid, signal.SIGKILL if force else signal.SIGTERM)
        except ProcessLookupError:
            return
        run.stop_requested_at = run.stop_requested_at or now_iso()
