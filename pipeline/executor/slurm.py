"""The SLURM executor: one head job per run (slurm/head-job.sh), in which Snakemake
submits the recording's jobs through snakemake-executor-plugin-slurm and the profile
in executor.profile. The poller only calls sbatch, squeue and scancel, and returns.

The run file keeps the head job's id; the jobs Snakemake submits carry the run's name
prefix (--slurm-jobname-prefix), so squeue finds them for progress ("Converting to LFP
(14/24 segments, 10 running)") and scancel for `ephys cancel`. When a job fails for
good, the head job's log and the job's SLURM log say why, and that goes into the row in
words ("ran out of memory converting segment 7 of 24").
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path

from pipeline import layout
from pipeline.errors import BackendUnavailable, ConfigError
from pipeline.executor import REPO_ROOT, Activity, Run, now_iso, snakemake_command

log = logging.getLogger(__name__)

HEAD_SCRIPT = REPO_ROOT / "slurm" / "head-job.sh"
ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING",
                 "STAGE_OUT", "SIGNALING"}
# Slurm's answers that no retry will change: a person must fix the configuration.
REFUSALS = ("Invalid account", "invalid account", "Invalid partition", "invalid partition", "Invalid qos",
            "User's group not permitted",
            "Requested node configuration is not available", "Job violates accounting/QOS policy")
CAUSES = [  # what a job's SLURM log says -> the words for the sheet
    (re.compile(r"exceeded memory limit|Exceeded job memory limit|OUT_OF_MEMORY|oom-kill", re.I), "ran out of memory"),
    (re.compile(r"DUE TO TIME LIMIT|TIMEOUT", re.I), "ran past its time limit"),
    (re.compile(r"NODE_FAIL|node failure|DUE TO NODE FAILURE", re.I), "lost its node"),
    (re.compile(r"CANCELLED", re.I), "was cancelled"),
]
STAGE_VERBS = {"inspect": "checking the raw files", "convert": "converting", "spectrogram": "computing spectrograms for",
               "features": "computing sleep features for", "classify": "scoring sleep states",
               "figures": "drawing figures", "publish": "publishing", "segment": "converting"}


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
        prefix = self.prefix(run)
        out = []
        for line in proc.stdout.splitlines():
            parts = line.split("|", 3)
            if len(parts) == 4 and (parts[1].startswith(prefix) or parts[0] in run.job_ids):
                out.append(tuple(p.strip() for p in parts))
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
        head = next((j for j in jobs if j[0] in run.job_ids), None)
        work = [j for j in jobs if j[0] not in run.job_ids]
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
        """Why a job of the run failed for good, in words, from the head job's log and the
        job's SLURM log; None if the logs do not say."""
        try:
            text = (self.base / run.log).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        blocks = re.split(r"\n(?=Error in (?:rule|group) )", text)
        for block in blocks:
            m = re.match(r"Error in (rule|group) (\w+):", block)
            if not m:
                continue
            rules = re.findall(r"rule (\w+):", block) or [m.group(2)]
            k = re.search(r"\bk=(\d+)", block)
            slurm_logs = re.findall(r"(\S+/slurm_logs/\S+?\.log)", block)
            cause = None
            for path in slurm_logs:
                try:
                    log_text = Path(path).read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                cause = next((words for pattern, words in CAUSES if pattern.search(log_text)), None)
                if cause:
                    break
            status = re.search(r"SLURM status is: '(\w+)'", block)
            if cause is None and status:
                cause = next((words for pattern, words in CAUSES if pattern.search(status.group(1))),
                             f"ended {status.group(1).lower()}")
            if cause is None:
                continue
            stage = rules[0]
            what = STAGE_VERBS.get(stage, stage)
            if k is not None:
                n = self._segment_count(run)
                what += f" segment {int(k.group(1)) + 1}" + (f" of {n}" if n else "")
            where = f"; log: {Path(slurm_logs[-1]).relative_to(self.base) if slurm_logs else run.log}"
            attempts = len(re.findall(r"Error in (?:rule|group) " + re.escape(m.group(2)) + r":", text))
            return f"The job {cause} {what} ({attempts} attempt{'s' if attempts != 1 else ''}{where})."
        return None

    def _segment_count(self, run: Run) -> int | None:
        from pipeline.errors import PipelineError
        from pipeline.io.recording_info import RecordingInfo

        try:
            return len(RecordingInfo.load(layout.RecordingPaths(run.recordings[0], self.base).recording_json).segments)
        except (PipelineError, IndexError):
            return None
