"""The SLURM executor: one head job per run (slurm/head-job.sh), in which Snakemake
submits the recording's jobs through snakemake-executor-plugin-slurm and the profile
in executor.profile. The poller only calls sbatch, squeue and scancel, and returns.

The jobs Snakemake submits carry the run's name prefix (--slurm-jobname-prefix), so
squeue finds them for progress ("Converting to LFP (14/24 segments, 10 running)") and
scancel for `ephys cancel`; the run file keeps the head job's id, and the ids of the
jobs squeue showed are added to it, so they are known after squeue has forgotten them
(MinJobAge) — for a maintainer's `sacct -j`. When a job fails for good, the head job's
log and the job's SLURM log say why, and that goes into the row in words ("ran out of
memory converting segment 7 of 24").
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline import layout
from pipeline.errors import BackendUnavailable, ConfigError
from pipeline.executor import REPO_ROOT, Activity, Run, RunFiles, now_iso, snakemake_command

log = logging.getLogger(__name__)

HEAD_SCRIPT = REPO_ROOT / "slurm" / "head-job.sh"
ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING",
                 "STAGE_OUT", "SIGNALING"}
# Slurm's answers that no retry will change: a person must fix the configuration.
REFUSALS = ("Invalid account", "invalid account", "Invalid partition", "invalid partition", "Invalid qos",
            "User's group not permitted",
            "Requested node configuration is not available", "Job violates accounting/QOS policy")
# What Slurm says of a job it ended, in words for the sheet. slurmstepd writes its lines
# into the job's SLURM log ("*** JOB 12 ON node7 CANCELLED AT ... DUE TO TIME LIMIT ***"):
# the first pattern that matches wins (a job killed for memory is also "CANCELLED").
LOG_CAUSES = [
    (re.compile(r"exceeded memory limit|Exceeded job memory limit|oom[-_]kill", re.I), "ran out of memory"),
    (re.compile(r"\*\*\* (?:JOB|STEP) \S+ ON \S+ CANCELLED AT \S+ DUE TO TIME LIMIT"), "ran past its time limit"),
    (re.compile(r"\*\*\* (?:JOB|STEP) \S+ ON \S+ CANCELLED AT \S+ DUE TO NODE FAILURE"), "lost its node"),
    (re.compile(r"\*\*\* (?:JOB|STEP) \S+ ON \S+ CANCELLED AT "), "was cancelled"),
]
# A job's state (squeue %T; the plugin's "SLURM status is: 'X'"), where its log says nothing
# (a node that died writes no log; a failed group job's message loses the status).
STATE_CAUSES = {"OUT_OF_MEMORY": "ran out of memory", "TIMEOUT": "ran past its time limit",
                "DEADLINE": "ran past its time limit", "NODE_FAIL": "lost its node", "BOOT_FAIL": "lost its node",
                "CANCELLED": "was cancelled", "PREEMPTED": "was cancelled"}
# In workflow order: of a group job's stages, the first whose outputs are missing failed.
STAGE_VERBS = {"inspect": "checking the raw files", "convert": "converting", "spectrogram": "computing spectrograms for",
               "features": "computing sleep features for", "classify": "scoring sleep states",
               "figures": "drawing figures", "publish": "publishing"}


def jobs_of_run(squeue_out: str, prefix: str) -> list[tuple[str, str, str, str]]:
    """(id, name, state, comment) of a run's jobs in squeue's `%i|%j|%T|%k` lines: every
    job of a run, the head job too, is named with the run's prefix. (Not by the ids in the
    run file: a cluster whose state was reset hands the same ids to other people's jobs.)"""
    out = []
    for line in squeue_out.splitlines():
        parts = [p.strip() for p in line.split("|", 3)]
        if len(parts) == 4 and parts[1].startswith(prefix):
            out.append(tuple(parts))
    return out


def open_executor(config: dict) -> "SlurmExecutor":
    return SlurmExecutor(config)


def _slurm(args: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a Slurm command; BackendUnavailable when Slurm cannot be asked at all."""
    if shutil.which(args[0]) is None:
        raise BackendUnavailable(f"Slurm cannot be reached: {args[0]} is not installed on this machine "
                                 "(the poller must run on a node of the cluster)")
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BackendUnavailable(f"Slurm did not answer {args[0]} within {timeout:g} s") from None
    if proc.returncode != 0 and re.search(r"Unable to contact slurm controller|Socket timed out|"
                                          r"Connection refused|slurm_load_jobs error: Unable", proc.stderr):
        last = proc.stderr.strip().splitlines()[-1]
        for noise in ("sbatch: error: ", "squeue: error: ", "scancel: error: ", "Batch job submission failed: ",
                      "slurm_load_jobs error: "):
            last = last.replace(noise, "")
        raise BackendUnavailable(f"Slurm cannot be reached: {last}")
    return proc


class SlurmExecutor:
    name = "slurm"

    def __init__(self, config: dict):
        self.config = config
        self.base = Path(config["base_dir"])
        section = config["executor"]
        self.profile = section["profile"] or str(REPO_ROOT / "slurm" / "profile")
        self.partition = section.get("partition")
        self.account = section.get("account")
        self.head_mem_mb = section["head_mem_mb"]
        self.head_time = section["head_time"]

    @staticmethod
    def prefix(run: Run) -> str:
        return f"ephys-{run.run_id}"

    def command(self, run: Run) -> list[str]:
        return snakemake_command(self.config, run, "--profile", self.profile,
                                 "--slurm-jobname-prefix", self.prefix(run))

    def start(self, run: Run) -> None:
        run.backend = self.name
        run.command = self.command(run)
        run.log = f"{layout.RUN_LOGS_DIR}/{run.run_id}.log"
        (self.base / run.log).parent.mkdir(parents=True, exist_ok=True)
        args = ["sbatch", "--parsable", "--job-name", f"{self.prefix(run)}-head", "--chdir", str(self.base),
                "--output", str(self.base / run.log), f"--mem={self.head_mem_mb}", f"--time={self.head_time}"]
        if self.partition:
            args.append(f"--partition={self.partition}")
        if self.account:
            args.append(f"--account={self.account}")
        proc = _slurm(args + [str(HEAD_SCRIPT), *run.command])
        if proc.returncode != 0:
            lines = [ln.removeprefix("sbatch: error: ").removeprefix("Batch job submission failed: ").strip()
                     for ln in proc.stderr.strip().splitlines()]
            reason = "; ".join(dict.fromkeys(ln for ln in lines if ln)) or f"exit status {proc.returncode}"
            if any(r in reason for r in REFUSALS):
                raise ConfigError(f"SLURM refused the head job: {reason} (executor.partition / executor.account "
                                  "in config.yaml).")
            raise BackendUnavailable(f"SLURM did not take the head job: {reason}")
        run.job_ids = [proc.stdout.strip().split(";")[0]]
        run.started_at = now_iso()

    # -- watching -------------------------------------------------------------------------
    def _jobs(self, run: Run) -> list[tuple[str, str, str, str]]:
        """(id, name, state, comment) of the run's head job and the jobs it submitted."""
        proc = _slurm(["squeue", "--noheader", "--states=all", "--format=%i|%j|%T|%k"])
        if proc.returncode != 0:
            raise BackendUnavailable(f"squeue failed: {proc.stderr.strip()[:200]}")
        out = jobs_of_run(proc.stdout, self.prefix(run))
        if run.job_ids:  # a run not started yet has no file to add to
            try:
                RunFiles(self.base).add_job_ids(run, [j[0] for j in out])
            except OSError as e:  # `ephys status` run by someone who may not write state/
                log.debug("could not note the job ids of run %s: %s", run.run_id, e)
        return out

    def is_running(self, run: Run) -> bool:
        if not run.job_ids:
            return False
        try:
            jobs = self._jobs(run)
        except BackendUnavailable as e:
            log.warning("%s; counting run %s as running", e, run.run_id)
            return True
        head = [j for j in jobs if j[0] == run.job_ids[0]]
        # A head job squeue no longer knows (past MinJobAge) has ended.
        return bool(head) and head[0][2] in ACTIVE_STATES

    def activity(self, run: Run) -> Activity | None:
        try:
            jobs = self._jobs(run)
        except BackendUnavailable:
            return None
        head = next((j for j in jobs if j[0] == run.job_ids[0]), None) if run.job_ids else None
        work = [j for j in jobs if j is not head]
        return Activity(queued=head is not None and head[2] == "PENDING",
                        running=sum(j[2] == "RUNNING" for j in work),
                        waiting=sum(j[2] == "PENDING" for j in work))

    def stop(self, run: Run) -> None:
        """scancel the head job and every job of the run (Snakemake's own jobs too, should
        the head job be gone already)."""
        try:
            ids = [j[0] for j in self._jobs(run) if j[2] in ACTIVE_STATES]
        except BackendUnavailable:
            ids = list(run.job_ids)
        if ids:
            _slurm(["scancel", *ids])
        run.stop_requested_at = run.stop_requested_at or now_iso()

    # -- failures -----------------------------------------------------------------------------
    def explain_failure(self, run: Run) -> str | None:
        """Why a job of the run failed for good (its retries spent), in words, from the head
        job's log, the job's SLURM log and, where those say nothing, Slurm's state of the
        job; None if none of them says (a job that was tried again is not a cause)."""
        try:
            text = (self.base / run.log).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        failures = failed_jobs(text)
        for failure in failures:
            if failure.retried:
                continue
            cause = self._cause(failure)
            if cause is None:
                continue
            stage = failure.failed_stage(self.base)
            what = STAGE_VERBS.get(stage, stage)
            if failure.segment is not None:
                n = self._segment_count(run)
                what += f" segment {failure.segment + 1}" + (f" of {n}" if n else "")
            log_path = failure.slurm_logs[-1] if failure.slurm_logs else str(self.base / run.log)
            attempts = sum(f.key == failure.key for f in failures)
            return (f"The job {cause} {what} ({attempts} attempt{'s' if attempts != 1 else ''}; "
                    f"log: {self._shown(log_path)}).")
        return self._head_job_end(run, text)

    def _head_job_end(self, run: Run, text: str) -> str | None:
        """The head job's own end, where slurmstepd wrote one into its log: its time limit
        (executor.head_time) reached while the recording's jobs were still going, its memory
        or its node lost. A cancelled head job is left to what cancelled it."""
        head = run.job_ids[0] if run.job_ids else None
        if not head:
            return None
        own = "\n".join(ln for ln in text.splitlines() if f"JOB {head} ON " in ln or f"StepId={head}." in ln)
        cause = cause_in_log(own) if own else None
        if cause is None or cause == "was cancelled":  # cancelled: `ephys cancel`'s, or the run's own words
            return None
        limit = " (executor.head_time in config.yaml)" if "time limit" in cause else ""
        return (f"The head job, which steers this recording's jobs, {cause}{limit}; tick rerun to go on from what "
                f"was complete (log: {self._shown(str(self.base / run.log))}).")

    def _cause(self, failure: "FailedJob") -> str | None:
        for path in failure.slurm_logs:
            try:
                cause = cause_in_log(Path(path).read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
            if cause:
                return cause
        if failure.state in STATE_CAUSES:
            return STATE_CAUSES[failure.state]
        if failure.slurm_id:
            try:
                proc = _slurm(["squeue", "--noheader", "--states=all", f"--jobs={failure.slurm_id}", "--format=%T"])
            except BackendUnavailable:
                return None
            if proc.returncode == 0:
                return STATE_CAUSES.get(proc.stdout.strip())
        return None

    def _shown(self, path: str) -> str:
        """A log's path relative to the project folder where it is in it."""
        try:
            return str(Path(path).relative_to(self.base))
        except ValueError:
            try:
                return str(Path(path).resolve().relative_to(self.base.resolve()))
            except ValueError:
                return path

    def _segment_count(self, run: Run) -> int | None:
        from pipeline.errors import PipelineError
        from pipeline.io.recording_info import RecordingInfo

        try:
            return len(RecordingInfo.load(layout.RecordingPaths(run.recordings[0], self.base).recording_json).segments)
        except (PipelineError, IndexError):
            return None


def cause_in_log(text: str) -> str | None:
    """What slurmstepd's lines in a job's SLURM log say ended it, in words; None if nothing."""
    return next((words for pattern, words in LOG_CAUSES if pattern.search(text)), None)


@dataclass
class FailedJob:
    """One failed attempt of a job, as Snakemake's log (the head job's) tells it."""

    rules: list[str]  # a group job's rules, each with its outputs
    outputs: dict[str, list[str]]
    segment: int | None  # the segment's index (from k=, or seg<k> in the outputs)
    slurm_logs: list[str]
    slurm_id: str | None
    state: str | None  # "SLURM status is: 'TIMEOUT'" (a group job's message does not carry it)
    retried: bool  # Snakemake tried it again after this attempt

    @property
    def key(self) -> tuple[str, ...]:
        """What tells attempts of one job from other jobs: the files it makes."""
        return tuple(sorted(o for outs in self.outputs.values() for o in outs)) or tuple(self.rules)

    def failed_stage(self, base: Path) -> str:
        """The stage that failed: of a group job's stages, the first in workflow order whose
        outputs are not all there (the others may have finished inside the same job)."""
        order = list(STAGE_VERBS)
        rules = sorted(self.rules, key=lambda r: order.index(r) if r in order else len(order))
        return next((r for r in rules if not all((base / o).exists() for o in self.outputs.get(r, []))), rules[0])


# One failed attempt in Snakemake's log: a rule's own error, or a group job's (whose rules
# follow, indented: "    jobs:" / "        rule convert:"), with the indented lines after it.
_FAILURE = re.compile(r"^(?:Error in rule (\w+):|    message: Error in group (\S+))\n(?:[ \t]+.*\n?)*", re.MULTILINE)
_SUBMITTED = re.compile(r"^Job (\S+) has been submitted with SLURM jobid (\d+) ", re.MULTILINE)


def failed_jobs(text: str) -> list[FailedJob]:
    """Every failed attempt of a job in Snakemake's log, in order."""
    snakemake_id = {m.group(2): m.group(1) for m in _SUBMITTED.finditer(text)}  # SLURM's id -> Snakemake's
    out, ends = [], []
    for m in _FAILURE.finditer(text):
        block = m.group(0)
        if m.group(1):
            rules = [m.group(1)]
            outputs = {m.group(1): _files(re.search(r"^    output: (.*)$", block, re.MULTILINE))}
            k = re.search(r"^    wildcards: .*\bk=(\d+)", block, re.MULTILINE)
        else:
            jobs = re.findall(r"^        rule (\w+):\n((?:            .*\n?)*)", block, re.MULTILINE)
            rules = [r for r, _ in jobs]
            outputs = {r: _files(re.search(r"^            output: (.*)$", body, re.MULTILINE)) for r, body in jobs}
            k = None
        if k is None:
            k = re.search(r"/seg(\d+)\.", " ".join(o for outs in outputs.values() for o in outs))
        slurm_logs = list(dict.fromkeys(re.findall(r"(\S+/slurm_logs/\S+?\.log)", block)))
        slurm_id = re.search(r"^    external_jobid: (\d+)", block, re.MULTILINE) or \
            (re.search(r"/(\d+)\.log$", slurm_logs[0]) if slurm_logs else None)
        slurm_id = slurm_id.group(1) if slurm_id else None
        state = re.search(r"SLURM status is: '(\w+)'", block)
        out.append(FailedJob(rules=rules, outputs=outputs, segment=int(k.group(1)) if k else None,
                             slurm_logs=slurm_logs, slurm_id=slurm_id, state=state.group(1) if state else None,
                             retried=False))
        ends.append((m.end(), snakemake_id.get(slurm_id or "") or
                     (re.search(r"^    jobid: (\d+)", block, re.MULTILINE) or [None, None])[1]))
    # Tried again: Snakemake says so after this attempt and before the job's next failure.
    for i, (failure, (end, sid)) in enumerate(zip(out, ends)):
        if sid is None:
            continue
        later = next((ends[j][0] for j in range(i + 1, len(out)) if out[j].key == failure.key), len(text))
        failure.retried = re.compile(rf"^Trying to restart job {re.escape(sid)}\.$", re.MULTILINE).search(
            text, end, later) is not None
    return out


def _files(m: re.Match | None) -> list[str]:
    return [f.strip() for f in m.group(1).split(",")] if m else []
