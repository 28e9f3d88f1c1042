"""Running the workflow for some recordings: the interface every executor implements,
the run files that say on disk what is going on, and the factory that picks a back-end.

A poll never waits for work: it starts a run and returns. Whether a run is still going
is asked of the executor with the run file in hand (a process id locally, job ids on
SLURM), so a poller that was killed, or a second process such as `ephys status`, knows
as much as the one that started it. What a run achieved is read from its outputs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import sys
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pipeline import layout
from pipeline.config import backend_module
from pipeline.io.atomic import write_json_atomic

REPO_ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO_ROOT / "Snakefile"


@dataclass
class Run:
    """One start of the workflow for some recordings, as state/runs/<run_id>.json keeps it."""

    run_id: str
    recordings: list[str]
    targets: list[str]
    forcerun: list[str] = field(default_factory=list)
    backend: str = ""
    command: list[str] = field(default_factory=list)
    log: str = ""  # the workflow's own log, relative to the project folder
    created_at: str = ""
    started_at: str = ""
    host: str = ""  # the machine the run was started on (a process id means nothing elsewhere)
    # A cluster's job ids: the run's head job first, then the jobs it submitted as they were
    # seen (RunFiles.add_job_ids); they only ever accumulate.
    job_ids: list[str] = field(default_factory=list)
    pid: int | None = None
    pid_started: int | None = None  # the process's start time (clock ticks since boot): tells a reused pid apart
    stop_requested_at: str = ""  # when stop() was first asked for (a second ask past the grace time kills)
    cancelled_at: str = ""  # `ephys cancel`: the row says cancelled, and nothing restarts it
    acknowledged: bool = False  # the sheet has been told of this run (see Poller)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Run":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class RunFiles:
    """state/runs/: one JSON file per run, replaced atomically.

    Several processes write a run file (the poller, `ephys cancel`, `ephys status` noting
    the job ids it saw), so every write holds a lock and keeps the job ids already in the
    file: a writer holding an older copy of the run cannot drop ids another one added.
    """

    def __init__(self, base: str | Path):
        self.base = Path(base)
        self.dir = self.base / layout.RUNS_DIR

    def path(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.json"

    @contextlib.contextmanager
    def _locked(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
            yield

    def save(self, run: Run) -> None:
        with self._locked():
            on_disk = self.load(run.run_id)
            if on_disk is not None:
                run.job_ids = _merged(run.job_ids, on_disk.job_ids)
            write_json_atomic(self.path(run.run_id), run.to_json())

    def add_job_ids(self, run: Run, job_ids: list[str]) -> bool:
        """Add the ids of jobs seen for `run` to its file (and to `run`), changing nothing
        else in the file; whether any was new. A run without a file is left alone."""
        if not [j for j in job_ids if j not in run.job_ids]:
            return False
        with self._locked():
            on_disk = self.load(run.run_id)
            if on_disk is None:
                return False
            on_disk.job_ids = _merged(on_disk.job_ids, run.job_ids, job_ids)
            write_json_atomic(self.path(run.run_id), on_disk.to_json())
        run.job_ids = _merged(run.job_ids, on_disk.job_ids)
        return True

    def load(self, run_id: str) -> Run | None:
        if not run_id:
            return None
        try:
            with open(self.path(run_id), encoding="utf-8") as f:
                return Run.from_json(json.load(f))
        except FileNotFoundError:
            return None


def _merged(first: list[str], *more: list[str]) -> list[str]:
    """`first`, then the ids of `more` it lacks, in order (the head job stays first)."""
    return list(dict.fromkeys([*first, *(i for ids in more for i in ids)]))


@dataclass
class Activity:
    """What a cluster says of a run's jobs (for the sheet's progress)."""

    queued: bool  # the run itself waits for a place
    running: int  # jobs of the run at work
    waiting: int  # jobs of the run waiting in the queue


class Executor(Protocol):
    name: str

    def start(self, run: Run) -> None:
        """Start the workflow for `run` in the background and fill in how to find it
        again (pid, job ids); the caller saves the run file. Returns at once. Raises
        BackendUnavailable when it cannot start anything now (the run stays claimed)."""

    def is_running(self, run: Run) -> bool:
        """Whether the run is still going (from the run file alone, in any process)."""

    def stop(self, run: Run) -> None:
        """Ask the run and its jobs to stop, without waiting (outputs already complete
        stay); the caller saves the run file and asks `is_running` later. Asked again
        after a grace time, it forces them."""

    def activity(self, run: Run) -> Activity | None:
        """Queued, running and waiting jobs of a run, where the executor knows them."""

    def explain_failure(self, run: Run) -> str | None:
        """Why a run ended without publishing, when its jobs left no error of their own
        (killed for memory or time, a lost node), in words; None if unknown."""


def snakemake_command(config: dict, run: Run, *extra: str) -> list[str]:
    """The Snakemake command line for a run, as a list (never through a shell).

    --nolock: runs of different recordings go side by side in one folder, and
    Snakemake's directory lock cannot serve that (a run that ends removes every run's
    locks, and one killed leaves locks that stop all later runs). The run files keep
    one run per recording instead.
    """
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
           "--configfile", config["config_file"], "--directory", config["base_dir"],
           "--keep-going", "--rerun-incomplete", "--printshellcmds", "--nolock", *extra]
    if run.forcerun:
        cmd += ["--forcerun", *run.forcerun]
    return cmd + ["--", *run.targets]


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


# backend name -> module with `open_executor(config: dict) -> Executor`
BACKENDS = {"local": "pipeline.executor.local", "slurm": "pipeline.executor.slurm"}


def make_executor(config: dict) -> Executor:
    return backend_module("executor", config, BACKENDS).open_executor(config)


def process_start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, from /proc), or None if there
    is no such process or it has exited (a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its ')'.
    rest = stat[stat.rindex(")") + 2:].split()
    if rest[0] in ("Z", "X"):
        return None
    return int(rest[19])


def process_alive(pid: int | None, started: int | None) -> bool:
    return pid is not None and started is not None and process_start_ticks(pid) == started
