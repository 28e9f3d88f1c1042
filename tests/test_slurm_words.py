"""What the SLURM executor makes of what Slurm and Snakemake say: failures in words for the
sheet, the jobs of a run counted for its progress, and their ids kept in the run file.

Fed with text recorded from the dev cluster (slurm/dev-cluster.sh; Slurm 22.05,
snakemake-executor-plugin-slurm 2.8, Snakemake 9): head-job logs, the jobs' SLURM logs
and squeue lines, with the project folder, job ids and segment numbers made to fit each
test. A node failure cannot be made on a one-node cluster shared with other work: its
words are slurmstepd's own format (the string in /usr/sbin/slurmstepd) and the plugin's
message for NODE_FAIL (from its source). No job is submitted here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline.executor import Run, RunFiles
from pipeline.executor import slurm as slurm_executor
from pipeline.progress import recording_state
from pipeline.synth.stage_outputs import StageOutputSpec, write_stage_outputs

RUN_ID = "20261208-023635-e744"
PREFIX = f"ephys-{RUN_ID}"
SEG_GROUP = "group_segment_convert_features_spectrogram"

# --- recorded text ---------------------------------------------------------------------
# A head job's log up to its first job (trimmed: Snakemake's banner, the inspect job).
HEAD_START = f"""head job 10 on vm at 2026-12-08T02:36:35+00:00
Using profile {{base}}/profile for setting default command line arguments.
Building DAG of jobs...
You are running snakemake in a SLURM job context. This is not recommended, as it may lead to unexpected behavior. If possible, please run Snakemake directly on the login node.
SLURM run ID: {PREFIX}_8d79ce61-e39d-4a94-b381-448841a0cbc1
Using shell: /usr/bin/bash
Provided remote nodes: 20
Job 2 has been submitted with SLURM jobid 11 (log: {{base}}/.snakemake/slurm_logs/rule_inspect/rec1/11.log).
Finished jobid: 2 (Rule: inspect)
"""

# One attempt of segment k's group job failing, as the head job's log tells it. The group
# error carries no SLURM status (the plugin's message is replaced by "Error in group").
SEGMENT_FAILS = """Job 3e8c500b-dec9-59b9-8414-95329ae26b11 has been submitted with SLURM jobid {job} (log: {base}/.snakemake/slurm_logs/{group}/{job}.log).
[Tue Dec  8 02:36:50 2026]
    message: Error in group segment
    log: {base}/.snakemake/slurm_logs/{group}/{job}.log (check log file(s) for error details)
    jobs:
        rule convert:
            jobid: 11
            output: results/rec1/lfp/seg{k}.fif, results/rec1/lfp/seg{k}.json
            log: logs/rec1/convert/seg{k}.log (check log file(s) for error details)
        rule features:
            jobid: 9
            output: results/rec1/features/seg{k}.tsv
            log: logs/rec1/features/seg{k}.log (check log file(s) for error details)
        rule spectrogram:
            jobid: 10
            output: results/rec1/spectrogram/seg{k}.npz
            log: logs/rec1/spectrogram/seg{k}.log (check log file(s) for error details)
    [Tue Dec  8 02:36:50 2026]
    Error in rule convert:
        message: None
        jobid: 11
        input: results/rec1/recording.json
        output: results/rec1/lfp/seg{k}.fif, results/rec1/lfp/seg{k}.json
        log: logs/rec1/convert/seg{k}.log (check log file(s) for error details)
        shell:
            ephys convert-segment results/rec1/recording.json {k} results/rec1/lfp/seg{k}.fif --qc results/rec1/lfp/seg{k}.json > logs/rec1/convert/seg{k}.log 2>&1
            (command exited with non-zero exit code)
    [Tue Dec  8 02:36:50 2026]
    Error in rule features:
        message: None
        jobid: 9
        input: results/rec1/spectrogram/seg{k}.npz
        output: results/rec1/features/seg{k}.tsv
        log: logs/rec1/features/seg{k}.log (check log file(s) for error details)
        shell:
            ephys features results/rec1/spectrogram/seg{k}.npz results/rec1/features/seg{k}.tsv > logs/rec1/features/seg{k}.log 2>&1
            (command exited with non-zero exit code)
    [Tue Dec  8 02:36:50 2026]
    Error in rule spectrogram:
        message: None
        jobid: 10
        input: results/rec1/recording.json, results/rec1/lfp/seg{k}.fif
        output: results/rec1/spectrogram/seg{k}.npz
        log: logs/rec1/spectrogram/seg{k}.log (check log file(s) for error details)
        shell:
            ephys spectrogram results/rec1/recording.json results/rec1/lfp/seg{k}.fif results/rec1/spectrogram/seg{k}.npz --epoch-s 4 --time-bandwidth 2.0 --fmax 200 --per-channel no > logs/rec1/spectrogram/seg{k}.log 2>&1
            (command exited with non-zero exit code)
"""
RETRY = """Trying to restart job 3e8c500b-dec9-59b9-8414-95329ae26b11.
Select jobs to execute...
Execute 1 jobs...
[Tue Dec  8 02:36:50 2026] Group job segment (jobs in lexicogr. order):
"""
# What Snakemake ends with when a job failed for good (--keep-going).
HEAD_END = """Exiting because a job execution failed. Look above for error messages
Complete log(s): {base}/.snakemake/log/2026-12-08T023636.012480.snakemake.log
Elapsed time: 0:08:45.332737
WorkflowError:
At least one job did not complete successfully.
"""

# An inspect job, a rule of its own: its error carries the plugin's message.
INSPECT_FAILS = """Job 2 has been submitted with SLURM jobid {job} (log: {base}/.snakemake/slurm_logs/rule_inspect/rec1/{job}.log).
[Tue Dec  8 02:35:40 2026]
Error in rule inspect:
    message: {message}
    jobid: 2
    input: {base}/raw/rec1/CSC1.ncs, {base}/raw/rec1/channel_map.yaml
    output: results/rec1/recording.json
    log: logs/rec1/inspect.log, {base}/.snakemake/slurm_logs/rule_inspect/rec1/{job}.log (check log file(s) for error details)
    shell:
        ephys inspect {base}/raw/rec1 results/rec1/recording.json --recording-id rec1 --animal m1 > logs/rec1/inspect.log 2>&1
        (command exited with non-zero exit code)
    external_jobid: {job}
"""
SQUEUE_FAILED = ("SLURM-job '{job}' failed, SLURM status is: 'FAILED'. Detailed failure reason unavailable (status "
                 "command is not 'sacct').For further error details see the cluster/cloud log and the log files of the "
                 "involved rule(s).")
# The plugin's words for NODE_FAIL (snakemake_executor_plugin_slurm, requeue off).
NODE_FAIL_MESSAGE = ("SLURM-job '{job}' failed due to a node failure, SLURM status is: 'NODE_FAIL'. Failed nodes will "
                     "be excluded from future job submissions. Consider enabling requeueing for such cases by setting "
                     "the 'requeue' flag in the executor settings.")

# The jobs' SLURM logs: Snakemake's own lines in the job, then slurmstepd's.
JOB_LOG_START = """Building DAG of jobs...
Using shell: /usr/bin/bash
Provided cores: 2
Select jobs to execute...
Execute 1 jobs...
localrule convert:
    output: results/rec1/lfp/seg{k}.fif, results/rec1/lfp/seg{k}.json
    log: logs/rec1/convert/seg{k}.log
    wildcards: rec=rec1, k={k}
"""
OOM_LOG = """slurmstepd-vm: error: StepId={job}.batch exceeded memory limit (145907712 > 41943040), being killed
slurmstepd-vm: error: Exceeded job memory limit
slurmstepd-vm: error: *** JOB {job} ON vm CANCELLED AT 2026-12-08T02:35:42 ***
slurmstepd-vm: error: StepId={job}.batch exceeded memory limit (145907712 > 41943040), being killed
slurmstepd-vm: error: Exceeded job memory limit
"""
TIMEOUT_LOG = """slurmstepd-vm: error: *** JOB {job} ON vm CANCELLED AT 2026-12-08T02:40:29 DUE TO TIME LIMIT ***
slurmstepd-vm: error: *** STEP {job}.0 ON vm CANCELLED AT 2026-12-08T02:40:29 DUE TO TIME LIMIT ***
srun: Job step aborted: Waiting up to 32 seconds for job step to finish.
Will exit after finishing currently running jobs (scheduler).
srun: got SIGCONT
RuleException:
CalledProcessError in file "/work/main/rules/convert.smk", line 44:
Command 'set -euo pipefail;  ephys convert-segment results/rec1/recording.json {k} results/rec1/lfp/seg{k}.fif' died with <Signals.SIGTERM: 15>.
srun: forcing job termination
WorkflowError:
At least one job did not complete successfully.
srun: error: vm: task 0: Exited with exit code 1
"""
CANCELLED_LOG = "slurmstepd-vm: error: *** JOB {job} ON vm CANCELLED AT 2026-12-08T02:36:50 ***\n"
NODE_FAIL_LOG = ("slurmstepd-vm: error: *** JOB {job} ON vm CANCELLED AT 2026-12-08T03:10:04 DUE TO NODE FAILURE, SEE "
                 "SLURMCTLD LOG FOR DETAILS ***\n")


@pytest.fixture
def project(tmp_path) -> Path:
    """A project folder whose recording was inspected into 24 segments of one minute."""
    base = tmp_path / "proj"
    write_stage_outputs(base / "results" / "rec1", StageOutputSpec(hours=0.4, segment_s=60, n_channels=8,
                                                                   recording_id="rec1", animal="m1"))
    for k in range(24):  # the spectrograms belong to the stages tested here
        (base / "results" / "rec1" / "spectrogram" / f"seg{k}.npz").unlink()
    return base


def executor(base: Path) -> slurm_executor.SlurmExecutor:
    return slurm_executor.open_executor({"base_dir": str(base), "executor": {
        "backend": "slurm", "profile": "", "head_mem_mb": 500, "head_time": "30:00"}})


def started_run(base: Path, *job_ids: str) -> Run:
    run = Run(run_id=RUN_ID, recordings=["rec1"], targets=["results/rec1/published.json"], backend="slurm",
              log=f"logs/runs/{RUN_ID}.log", created_at="2026-12-08T02:36:30+00:00",
              started_at="2026-12-08T02:36:35+00:00", job_ids=list(job_ids or ["10"]))
    RunFiles(base).save(run)
    return run


def write_head_log(base: Path, *parts: str) -> None:
    path = base / "logs" / "runs" / f"{RUN_ID}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts).replace("{base}", str(base)))


def write_job_log(base: Path, folder: str, job: str, text: str) -> None:
    path = base / ".snakemake" / "slurm_logs" / folder / f"{job}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def segment_attempt(k: int, job: str) -> str:
    return SEGMENT_FAILS.format(job=job, k=k, group=SEG_GROUP, base="{base}")


@pytest.fixture
def slurm_answers(monkeypatch):
    """Slurm's commands answered from recorded text (by default: the run's head job has
    ended, as after Snakemake gave up); each call is kept."""
    answers: dict[str, str] = {"squeue": f"10|{PREFIX}-head|FAILED|(null)\n"}
    calls: list[list[str]] = []

    def fake(args, *, timeout=60):
        calls.append(args)
        key = next((a for a in args if a.startswith("--jobs=")), args[0])
        if key not in answers:
            return subprocess.CompletedProcess(args, 1, "", "slurm_load_jobs error: Invalid job id specified\n")
        return subprocess.CompletedProcess(args, 0, answers[key], "")

    monkeypatch.setattr(slurm_executor, "_slurm", fake)
    return answers, calls


# --- failures in words -------------------------------------------------------------------

def test_a_segment_out_of_memory_is_told_with_its_number_and_log(project, slurm_answers):
    write_head_log(project, HEAD_START, segment_attempt(6, "12"), RETRY, segment_attempt(6, "16"), HEAD_END)
    write_job_log(project, SEG_GROUP, "12", JOB_LOG_START.format(k=6) + OOM_LOG.format(job=12))
    write_job_log(project, SEG_GROUP, "16", JOB_LOG_START.format(k=6) + OOM_LOG.format(job=16))
    state = recording_state(project, "rec1", started_run(project), executor(project))
    assert state.state == "failed"
    assert state.message == ("The job ran out of memory converting segment 7 of 24 (2 attempts; log: "
                             f".snakemake/slurm_logs/{SEG_GROUP}/16.log).")


def test_a_segment_past_its_time_limit_is_told(project, slurm_answers):
    write_head_log(project, HEAD_START, segment_attempt(6, "18"), RETRY, segment_attempt(6, "25"), HEAD_END)
    for job in ("18", "25"):
        write_job_log(project, SEG_GROUP, job, JOB_LOG_START.format(k=6) + TIMEOUT_LOG.format(job=job, k=6))
    message = executor(project).explain_failure(started_run(project))
    assert message == ("The job ran past its time limit converting segment 7 of 24 (2 attempts; log: "
                       f".snakemake/slurm_logs/{SEG_GROUP}/25.log).")


def test_the_stage_named_is_the_first_of_the_group_without_its_outputs(project, slurm_answers):
    lfp = project / "results" / "rec1" / "lfp"
    (lfp / "seg6.fif").write_bytes(b"converted before the job was killed")  # seg6.json is there already
    write_head_log(project, HEAD_START, segment_attempt(6, "25"), HEAD_END)
    write_job_log(project, SEG_GROUP, "25", TIMEOUT_LOG.format(job=25, k=6))
    assert executor(project).explain_failure(started_run(project)).startswith(
        "The job ran past its time limit computing spectrograms for segment 7 of 24 (1 attempt; ")


def test_a_lost_node_is_told_from_the_log_from_the_plugin_or_from_squeue(project, slurm_answers):
    answers, calls = slurm_answers
    # A rule's job: slurmstepd could still write its line.
    write_head_log(project, INSPECT_FAILS.format(job=31, base="{base}", message=NODE_FAIL_MESSAGE.format(job=31)))
    write_job_log(project, "rule_inspect/rec1", "31", NODE_FAIL_LOG.format(job=31))
    run = started_run(project)
    assert executor(project).explain_failure(run) == (
        "The job lost its node checking the raw files (1 attempt; log: .snakemake/slurm_logs/rule_inspect/rec1/31.log).")
    # The node died with the job's log empty: the plugin's status says it.
    write_job_log(project, "rule_inspect/rec1", "31", "")
    assert executor(project).explain_failure(run).startswith("The job lost its node checking the raw files")
    # A group job's error has no status and its log is empty: squeue still knows the job.
    write_head_log(project, HEAD_START, segment_attempt(23, "40"), HEAD_END)
    write_job_log(project, SEG_GROUP, "40", JOB_LOG_START.format(k=23))
    answers["--jobs=40"] = "NODE_FAIL\n"
    assert executor(project).explain_failure(run) == (
        f"The job lost its node converting segment 24 of 24 (1 attempt; log: .snakemake/slurm_logs/{SEG_GROUP}/40.log).")
    assert calls[-1] == ["squeue", "--noheader", "--states=all", "--jobs=40", "--format=%T"]


def test_a_job_cancelled_on_every_attempt_is_told_once_its_retries_are_spent(project, slurm_answers):
    write_head_log(project, HEAD_START, segment_attempt(2, "12"), RETRY, segment_attempt(2, "15"), HEAD_END)
    for job in ("12", "15"):
        write_job_log(project, SEG_GROUP, job, JOB_LOG_START.format(k=2) + CANCELLED_LOG.format(job=job))
    state = recording_state(project, "rec1", started_run(project), executor(project))
    assert state.state == "failed" and not state.temporary
    assert state.message == ("The job was cancelled converting segment 3 of 24 (2 attempts; log: "
                             f".snakemake/slurm_logs/{SEG_GROUP}/15.log).")


def test_a_job_that_was_tried_again_is_not_given_as_the_cause(project, slurm_answers):
    """Cancelled once, then done: the run failed for another reason (its head job was killed)."""
    write_head_log(project, HEAD_START, segment_attempt(1, "12"), RETRY,
                   "Finished jobid: 11 (Rule: convert)\n",
                   "slurmstepd-vm: error: *** JOB 10 ON vm CANCELLED AT 2026-12-08T02:37:31 ***\n")
    write_job_log(project, SEG_GROUP, "12", CANCELLED_LOG.format(job=12))
    assert executor(project).explain_failure(started_run(project)) is None


def test_a_failed_job_slurm_did_not_end_is_left_to_the_stage_logs(project, slurm_answers):
    """FAILED with no slurmstepd line: the command failed; its stage's log says why."""
    answers, _ = slurm_answers
    write_head_log(project, INSPECT_FAILS.format(job=8, base="{base}", message=SQUEUE_FAILED.format(job=8)))
    write_job_log(project, "rule_inspect/rec1", "8", "Traceback (most recent call last):\nValueError: no channels\n")
    answers["--jobs=8"] = "FAILED\n"
    assert executor(project).explain_failure(started_run(project)) is None


# --- jobs counted for progress, and kept in the run file ---------------------------------------

def squeue_lines(head_state: str, **states: int) -> str:
    """squeue --states=all --format=%i|%j|%T|%k as the dev cluster answers, with another run's
    jobs and another person's among this run's."""
    lines = [f"10|{PREFIX}-head|{head_state}|(null)",
             "7|ephys-20261208-023527-8558-head|RUNNING|(null)",
             "9|ephys-20261208-023527-8558_52f33f7f-d9e5-4dde-b67b-6062be9214c3|RUNNING|rule_inspect_wildcards_rec1",
             "3|spikesort|RUNNING|(null)",
             f"11|{PREFIX}_8d79ce61-e39d-4a94-b381-448841a0cbc1|COMPLETED|rule_inspect_wildcards_rec1"]
    job = 12
    for state, n in states.items():
        for _ in range(n):
            lines.append(f"{job}|{PREFIX}_8d79ce61-e39d-4a94-b381-448841a0cbc1|{state}|"
                         "rule_segment_convert_features_spectrogram")
            job += 1
    return "\n".join(lines) + "\n"


def converted(base: Path, n: int) -> None:
    for k in range(n):
        (base / "results" / "rec1" / "lfp" / f"seg{k}.fif").write_bytes(b"lfp")


def test_progress_counts_the_run_s_running_and_waiting_jobs(project, slurm_answers):
    answers, _ = slurm_answers
    converted(project, 14)
    run, ex = started_run(project), executor(project)
    answers["squeue"] = squeue_lines("RUNNING", COMPLETED=14, RUNNING=10)
    state = recording_state(project, "rec1", run, ex)
    assert state.state == "running"
    assert state.progress.endswith("% · Converting to LFP (14/24 segments, 10 running)"), state.progress
    answers["squeue"] = squeue_lines("RUNNING", COMPLETED=14, RUNNING=8, PENDING=2)
    assert recording_state(project, "rec1", run, ex).progress.endswith("(14/24 segments, 8 running, 2 waiting)")
    # No job of the run at work (between two stages): the outputs alone.
    answers["squeue"] = squeue_lines("RUNNING", COMPLETED=14)
    assert recording_state(project, "rec1", run, ex).progress.endswith("% · Converting to LFP (14/24 segments)")
    # The head job waits for a place: the run is queued, whatever its outputs.
    answers["squeue"] = squeue_lines("PENDING")
    state = recording_state(project, "rec1", run, ex)
    assert (state.state, state.progress) == ("queued", "0% · waiting for the cluster")


def test_the_ids_of_the_run_s_jobs_go_into_its_run_file(project, slurm_answers):
    answers, _ = slurm_answers
    runs = RunFiles(project)
    run, ex = started_run(project), executor(project)
    answers["squeue"] = squeue_lines("RUNNING", COMPLETED=2, RUNNING=1)
    recording_state(project, "rec1", run, ex)
    assert runs.load(RUN_ID).job_ids == ["10", "11", "12", "13", "14"]  # the head job first; no other run's
    # `ephys cancel` writes its copy of the run (loaded before the jobs were seen): the ids stay.
    stale = Run.from_json(run.to_json() | {"job_ids": ["10"]})
    stale.cancelled_at = "2026-12-08T02:40:00+00:00"
    runs.save(stale)
    assert runs.load(RUN_ID).job_ids == ["10", "11", "12", "13", "14"]
    # Jobs seen later are added, and nothing else of the file changes.
    answers["squeue"] = squeue_lines("RUNNING", COMPLETED=3, PENDING=2)
    ex.activity(run)
    saved = runs.load(RUN_ID)
    assert saved.job_ids == ["10", "11", "12", "13", "14", "15", "16"]
    assert saved.cancelled_at == "2026-12-08T02:40:00+00:00"
    # squeue has forgotten them (MinJobAge): the run file has not.
    answers["squeue"] = squeue_lines("RUNNING")
    assert ex.is_running(runs.load(RUN_ID))
    assert runs.load(RUN_ID).job_ids == ["10", "11", "12", "13", "14", "15", "16"]


def test_a_run_file_nobody_may_write_leaves_status_working(project, slurm_answers, monkeypatch):
    answers, _ = slurm_answers
    run = started_run(project)

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(project / "state" / "runs" / ".lock"))

    monkeypatch.setattr(RunFiles, "add_job_ids", refused)
    answers["squeue"] = squeue_lines("RUNNING", RUNNING=3)
    assert recording_state(project, "rec1", run, executor(project)).state == "running"


def test_the_head_job_past_its_own_time_limit_is_told_with_the_setting(project, slurm_answers):
    """The head job steers the recording's jobs; slurmstepd writes its end into its log. A
    segment job's cancel line in a job log of its own is not the head job's."""
    write_head_log(project, HEAD_START, TIMEOUT_LOG.format(job=10, k=0))
    message = executor(project).explain_failure(started_run(project))
    assert message == ("The head job, which steers this recording's jobs, ran past its time limit "
                       "(executor.head_time in config.yaml); tick rerun to go on from what was complete "
                       f"(log: logs/runs/{RUN_ID}.log).")
    # Another job's line (here job 11's) in the head log says nothing of the head job.
    write_head_log(project, HEAD_START, TIMEOUT_LOG.format(job=11, k=0))
    assert executor(project).explain_failure(started_run(project)) is None
