"""Benchmark: one recording fanned out over SLURM jobs, against the same on local cores.

    python bench/fanout.py [--minutes 12] [--segment-s 60] [--channels 16] [--rate 32000] [--cores 2]

Needs the single-node cluster (slurm/dev-cluster.sh start). Writes (or reuses) a
synthetic recording cut into at least 12 time segments, then runs the whole workflow
twice from scratch, in the same run: with `snakemake --cores N` on this machine, and with
`snakemake --profile slurm/dev-profile` through the cluster. It prints both wall times,
the SLURM jobs it took, and what the cluster adds per job: the wait in the queue
(submission -> start, from scontrol) and the wait until Snakemake noticed the end (the
plugin's status checks). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def project(folder: Path, raw_root: Path, segment_s: float, executor: dict) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["data_roots"] = [str(raw_root)]
    cfg["lfp"]["segment_s"] = segment_s
    cfg["executor"] = executor
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    return folder


def run(cmd: list[str], cwd: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall, proc.stdout + proc.stderr


def scontrol_times(job_id: str) -> dict[str, datetime]:
    out = subprocess.run(["scontrol", "show", "job", job_id, "-o"], capture_output=True, text=True).stdout
    times = {}
    for key in ("SubmitTime", "StartTime", "EndTime"):
        m = re.search(rf"\b{key}=(\S+)", out)
        if m and m.group(1) not in ("Unknown", "None"):
            times[key] = datetime.fromisoformat(m.group(1))
    return times


def finished_stamps(log: str) -> list[datetime]:
    """When Snakemake logged jobs as finished (the log's own time stamps, to the second)."""
    out, stamp = [], None
    for line in log.splitlines():
        m = re.match(r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]", line)
        if m:
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        if line.startswith("Finished jobid:") and stamp:
            out.append(stamp)
    return sorted(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=12.0, help="recording length (size option)")
    ap.add_argument("--segment-s", type=float, default=60.0)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--rate", type=float, default=32000.0)
    ap.add_argument("--cores", type=int, default=2, help="local cores for the comparison run")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the recording here between runs")
    args = ap.parse_args()

    status = subprocess.run([str(REPO / "slurm" / "dev-cluster.sh"), "status"], capture_output=True, text=True)
    if status.returncode != 0:
        print(f"needs a Slurm cluster: {status.stdout.strip()} (slurm/dev-cluster.sh start)", file=sys.stderr)
        return 2
    from pipeline.synth import write_synthetic_recording

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    raw_root = work / "raw"
    raw = raw_root / f"fanout-{args.minutes:g}min-{args.channels}ch"
    if not any(raw.glob("*.ncs")):
        shutil.rmtree(raw, ignore_errors=True)
        print(f"writing a {args.minutes:g}-minute synthetic recording to {raw} ...", flush=True)
        write_synthetic_recording(raw, duration_s=args.minutes * 60, n_channels=args.channels,
                                  sampling_rate=args.rate, seed=0)
    py = sys.executable
    snakemake = [py, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile", "config.yaml",
                 "--nolock", "--", "results/fanout/published.json"]
    figures: dict[str, object] = {"minutes": args.minutes, "segment_s": args.segment_s, "channels": args.channels,
                                  "rate_hz": args.rate, "local_cores": args.cores}

    local = project(work / "local", raw_root, args.segment_s, {"backend": "local", "cores": args.cores})
    run([py, "-m", "pipeline", "--config", "config.yaml", "add", "fanout", "m1", str(raw)], local)
    wall_local, _ = run(snakemake[:-2] + ["--cores", str(args.cores)] + snakemake[-2:], local)
    info = json.loads((local / "results" / "fanout" / "recording.json").read_text())
    n_segments = len(info["segments"])
    figures["segments"] = n_segments
    figures["local_wall_s"] = round(wall_local, 1)
    print(f"local cores ({args.cores}): {wall_local:.1f} s for {n_segments} segments", flush=True)

    slurm = project(work / "slurm", raw_root, args.segment_s, {"backend": "slurm", "profile": str(REPO / "slurm" /
                                                                                                  "dev-profile")})
    run([py, "-m", "pipeline", "--config", "config.yaml", "add", "fanout", "m1", str(raw)], slurm)
    wall_slurm, log = run(snakemake[:-2] + ["--profile", str(REPO / "slurm" / "dev-profile")] + snakemake[-2:], slurm)
    submitted = re.findall(r"Job (\S+) has been submitted with SLURM jobid (\d+)", log)
    finished = finished_stamps(log)
    waits, runs, lags = [], [], []
    for _, slurm_id in submitted:
        t = scontrol_times(slurm_id)
        if {"SubmitTime", "StartTime", "EndTime"} <= set(t):
            waits.append((t["StartTime"] - t["SubmitTime"]).total_seconds())
            runs.append((t["EndTime"] - t["StartTime"]).total_seconds())
            # Snakemake learns of an end at its next status check: the first "Finished" after it.
            after = [f for f in finished if f >= t["EndTime"].replace(microsecond=0)]
            if after:
                lags.append((after[0] - t["EndTime"]).total_seconds())
    figures.update({
        "slurm_wall_s": round(wall_slurm, 1),
        "slurm_jobs": len(submitted),
        "slurm_to_local_wall_ratio": round(wall_slurm / wall_local, 2),
        "mean_queue_wait_s": round(statistics.mean(waits), 1) if waits else None,
        "mean_job_run_s": round(statistics.mean(runs), 1) if runs else None,
        "mean_wait_until_noticed_s": round(statistics.mean(lags), 1) if lags else None,
    })
    print(f"SLURM (dev cluster): {wall_slurm:.1f} s in {len(submitted)} jobs "
          f"({n_segments} segment jobs: conversion, spectrogram and features each); "
          f"{wall_slurm / wall_local:.2f}x the local wall time", flush=True)
    print(f"per job: {figures['mean_queue_wait_s']} s in the queue, {figures['mean_job_run_s']} s running, "
          f"{figures['mean_wait_until_noticed_s']} s until Snakemake noticed the end", flush=True)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
