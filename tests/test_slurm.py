"""The pipeline on a real Slurm cluster: the single-node one slurm/dev-cluster.sh starts.

Skipped with the reason where no cluster runs; `.ci/run` starts one and sets
EPHYS_REQUIRE_SLURM=1, so in CI these tests fail rather than skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow


def cluster_status() -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "slurm" / "dev-cluster.sh"), "status"], capture_output=True, text=True)


@pytest.fixture(scope="module")
def cluster():
    status = cluster_status()
    if status.returncode != 0:
        if os.environ.get("EPHYS_REQUIRE_SLURM"):
            pytest.fail(f"EPHYS_REQUIRE_SLURM is set but {status.stdout.strip()}")
        pytest.skip(f"no Slurm cluster on this machine ({status.stdout.strip()}); slurm/dev-cluster.sh start")


def test_dev_cluster_start_again_changes_nothing_and_status_says_so_in_one_line(cluster):
    """`start` on a running cluster: seconds, the same slurm.conf, the same daemons."""
    def daemons() -> dict[str, str]:
        return {d: subprocess.run(["pgrep", "-x", d], capture_output=True, text=True).stdout.split()
                for d in ("munged", "slurmctld", "slurmd")}

    conf = "/etc/slurm/slurm.conf"
    before = (open(conf, "rb").read(), os.stat(conf).st_mtime_ns, daemons())
    t0 = time.monotonic()
    proc = subprocess.run([str(REPO / "slurm" / "dev-cluster.sh"), "start"], capture_output=True, text=True,
                          timeout=120)
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert (open(conf, "rb").read(), os.stat(conf).st_mtime_ns, daemons()) == before
    assert all(before[2].values()), before[2]
    assert took < 10, f"start took {took:.1f} s on a running cluster"
    assert proc.stdout.count("\n") == 1 and proc.stdout.startswith("slurm: up, jobs can be submitted"), proc.stdout
    status = cluster_status()
    assert status.returncode == 0 and status.stdout == proc.stdout


@pytest.fixture
def on_slurm(project, recording_in, cluster):
    """The project on the dev cluster, with its own copy of the dev profile."""
    profile = project.dir / "profile"
    shutil.copytree(REPO / "slurm" / "dev-profile", profile)
    project.replace_config(executor={"backend": "slurm", "profile": "profile", "partition": "main",
                                     "head_mem_mb": 500, "head_time": "30:00"})
    recording_in("rec1")
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    yield project
    # Leave no job of this test behind.
    for line in squeue():
        if "ephys-" in line[1]:
            run_ids = [p.stem for p in (project.dir / "state" / "runs").glob("*.json")]
            if any(r in line[1] for r in run_ids):
                subprocess.run(["scancel", line[0]], capture_output=True)


def squeue() -> list[tuple[str, str, str, str]]:
    out = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i|%j|%T|%k"],
                         capture_output=True, text=True).stdout
    return [tuple(x.strip() for x in line.split("|", 3)) for line in out.splitlines() if line.count("|") >= 3]


def run_jobs(project) -> list[tuple[str, str, str, str]]:
    prefixes = [f"ephys-{p.stem}" for p in (project.dir / "state" / "runs").glob("*.json")]
    return [j for j in squeue() if any(j[1].startswith(p) for p in prefixes)]


def add_resources(project, **rules) -> None:
    path = project.dir / "profile" / "config.yaml"
    profile = yaml.safe_load(path.read_text())
    profile.setdefault("set-resources", {}).update(rules)
    path.write_text(yaml.safe_dump(profile))


def wait_for(predicate, timeout=240.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def test_a_sheet_row_is_processed_entirely_through_slurm_jobs(on_slurm):
    project = on_slurm
    proc = project.ephys("poll", "--until-done", "--every", "1", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = project.read_sheet()[0]
    assert row["status"] == "done", row
    assert (project.dir / "published" / "m1" / "rec1" / "report.pdf").read_bytes()[:4] == b"%PDF"
    logs = project.dir / "logs" / "rec1"
    stage_logs = [logs / "inspect.log", logs / "classify.log", logs / "figures.log",
                  *[logs / stage / f"seg{k}.log" for stage in ("convert", "spectrogram", "features") for k in range(3)]]
    for path in stage_logs:
        assert "running as SLURM job" in path.read_text(), f"{path} did not run as a SLURM job"
    run_log = next((project.dir / "logs" / "runs").glob("*.log")).read_text()
    assert "head job" in run_log and "has been submitted with SLURM jobid" in run_log
    # The three stages of a segment went as one job; classification and figures as one.
    assert run_log.count("has been submitted with SLURM jobid") == 1 + 3 + 1


def test_a_job_out_of_memory_is_retried_then_told_in_words(on_slurm):
    project = on_slurm
    add_resources(project, inspect={"mem_mb": 40})  # far below what inspecting takes
    proc = project.ephys("poll", "--until-done", "--every", "1", timeout=900)
    assert proc.returncode == 1
    row = project.read_sheet()[0]
    assert row["status"] == "failed"
    assert row["message"].startswith("The job ran out of memory checking the raw files (2 attempts; log: "
                                     ".snakemake/slurm_logs/rule_inspect/"), row["message"]
    log = project.dir / row["message"].split("log: ")[1].rstrip(").")
    assert "exceeded memory limit" in log.read_text()


def test_a_cancelled_job_is_retried_and_a_killed_head_job_resumes_on_rerun(on_slurm):
    project = on_slurm
    project.ephys("poll", "--once", check=True)
    lfp = project.dir / "results" / "rec1" / "lfp"
    # A segment job is cancelled (an administrator, a preempting partition): it is tried again.
    victim = wait_for(lambda: next((j for j in run_jobs(project) if j[2] == "RUNNING" and "segment" in j[3]), None),
                      what="a segment job")
    subprocess.run(["scancel", victim[0]], check=True)
    run_log = next((project.dir / "logs" / "runs").glob("*.log"))
    wait_for(lambda: "Trying to restart job" in run_log.read_text(), what="Snakemake to try the job again")
    wait_for(lambda: len(list(lfp.glob("seg*.fif"))) >= 2, what="conversions after the cancelled job")
    # The head job dies (its node fails): the run ends without publishing ...
    head = next(j for j in run_jobs(project) if j[1].endswith("-head"))
    subprocess.run(["scancel", head[0]], check=True)
    wait_for(lambda: not any(j[2] in ("RUNNING", "PENDING", "COMPLETING") for j in run_jobs(project)),
             what="every job of the run to end")
    project.ephys("poll", "--once")
    row = project.read_sheet()[0]
    assert row["status"] == "failed", row
    done_before = {p.name: p.stat().st_mtime_ns for p in lfp.glob("seg*.fif")}
    assert done_before
    # ... and a rerun goes on from what was complete.
    project.edit_row(0, rerun="yes")
    proc = project.ephys("poll", "--until-done", "--every", "1", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert project.read_sheet()[0]["status"] == "done"
    for name, mtime in done_before.items():
        assert (lfp / name).stat().st_mtime_ns == mtime, f"{name} was converted again"
    runs = sorted((project.dir / "logs" / "runs").glob("*.log"), key=lambda p: p.stat().st_mtime)
    assert "Job" in runs[-1].read_text() and "rule_inspect" not in runs[-1].read_text()


def test_ephys_cancel_leaves_no_job_behind(on_slurm):
    project = on_slurm
    project.ephys("poll", "--once", check=True)
    wait_for(lambda: any(not j[1].endswith("-head") and j[2] == "RUNNING" for j in run_jobs(project)),
             what="a job of the run at work")
    proc = project.ephys("cancel", "rec1", check=True)
    assert "cancelled" in proc.stdout
    wait_for(lambda: not any(j[2] in ("RUNNING", "PENDING", "COMPLETING", "CONFIGURING") for j in run_jobs(project)),
             timeout=60, what="no job of the run left")
    project.ephys("poll", "--once", check=True)
    row = project.read_sheet()[0]
    assert row["status"] == "cancelled" and "tick rerun to process it again" in row["message"], row


def test_no_slurm_reachable_keeps_the_row_queued_until_it_is(on_slurm, tmp_path):
    project = on_slurm
    down = tmp_path / "slurm-down.conf"
    conf = open("/etc/slurm/slurm.conf").read()
    down.write_text(conf + "\nSlurmctldPort=9\n")  # nothing answers there: the controller is down
    env = dict(os.environ, SLURM_CONF=str(down))
    proc = subprocess.run([sys.executable, "-m", "pipeline", "--config", str(project.config_path), "poll", "--once"],
                          cwd=project.dir, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = project.read_sheet()[0]
    assert row["status"] == "queued", row
    assert row["message"].startswith("Waiting to start: Slurm cannot be reached:"), row["message"]
    assert "Unable to contact slurm controller" in (project.dir / "logs" / "poller.log").read_text()
    # sbatch not there at all (the poller on a machine outside the cluster).
    env = dict(os.environ, PATH=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "pipeline", "--config", str(project.config_path), "poll", "--once"],
                          cwd=project.dir, capture_output=True, text=True, env=env, timeout=300)
    assert project.read_sheet()[0]["message"] == ("Waiting to start: Slurm cannot be reached: sbatch is not "
                                                  "installed on this machine (the poller must run on a node of "
                                                  "the cluster)")
    assert not run_jobs(project), "nothing was submitted"
    # Slurm is back: the claimed run goes in, once.
    project.ephys("poll", "--once", check=True)
    assert project.read_sheet()[0]["status"] in ("queued", "running")
    assert len([j for j in run_jobs(project) if j[1].endswith("-head")]) == 1
    assert len(list((project.dir / "state" / "runs").glob("*.json"))) == 1


def test_a_partition_that_does_not_exist_is_said_once_and_not_resubmitted(on_slurm):
    project = on_slurm
    project.set_config(executor={"partition": "nosuch"})
    project.ephys("poll", "--once")
    row = project.read_sheet()[0]
    assert row["status"] == "failed"
    assert row["message"].startswith("SLURM refused the head job: invalid partition specified: nosuch"), row
    sheet = project.sheet.read_bytes()
    project.ephys("poll", "--once")
    assert project.sheet.read_bytes() == sheet
    assert not run_jobs(project), "no job was submitted, and none again"


def test_an_account_slurm_refuses_is_said_once_and_not_resubmitted(on_slurm, tmp_path):
    """The dev cluster keeps no accounting database, so it takes any account; a lab's
    cluster refuses an unknown one. sbatch here answers as Slurm does then (its message,
    exit 1), and the poller must say it in the row and not submit again."""
    project = on_slurm
    project.set_config(executor={"account": "nosuch"})
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "sbatch-calls"
    (fake / "sbatch").write_text(f"#!/bin/sh\necho called >> {calls}\n"
                                 "echo 'sbatch: error: Batch job submission failed: Invalid account or "
                                 "account/partition combination specified' >&2\nexit 1\n")
    (fake / "sbatch").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}")
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-m", "pipeline", "--config", str(project.config_path), "poll", "--once"],
                              cwd=project.dir, capture_output=True, text=True, env=env, timeout=300)
        row = project.read_sheet()[0]
        assert row["status"] == "failed", (row, proc.stderr)
        assert row["message"].startswith("SLURM refused the head job: Invalid account or account/partition "
                                         "combination specified"), row["message"]
        assert "executor.account" in row["message"]
    assert calls.read_text().count("called") == 1, "submitted once, not again by the next poll"
    assert not run_jobs(project)
