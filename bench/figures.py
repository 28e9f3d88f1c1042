"""Benchmark: every figure and the report of a long recording, from its stage outputs.

    python bench/figures.py --hours 24 [--channels 64] [--hours-per-page 0] [--workdir DIR]

Writes (or reuses) the stage outputs of a recording of that length directly, without raw
data (pipeline.synth.stage_outputs: recording.json with 64 channels, four regions, 4-s
epochs, spectrograms to 200 Hz of a 1 kHz LFP in hourly segments, hypnogram, summary, QC
sidecars), then times `ephys figures` as a whole process (Python start-up and imports
included) pinned to one core, and its peak resident memory (os.wait4's ru_maxrss). The
targets: under a minute and under 2 GB for 24 hours. One summary line, then all figures
as one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_on_one_core(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """Run cmd on one core; return (wall seconds, peak RSS in MB of that process)."""
    core = min(os.sched_getaffinity(0))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-3000:]}")
    return wall, usage.ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=24.0, help="recording length (size option)")
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--hours-per-page", type=float, default=0.0, help="extra overview pages (figures.hours_per_page)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the stage outputs here between runs")
    args = ap.parse_args()

    from pipeline.synth.stage_outputs import StageOutputSpec, write_stage_outputs

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-figures-"))
    results = work / f"results-{args.hours:g}h-{args.channels}ch"
    marker = results / "complete.json"
    if not marker.exists():
        shutil.rmtree(results, ignore_errors=True)
        print(f"writing the stage outputs of a {args.hours:g}-hour recording to {results} ...", flush=True)
        t0 = time.perf_counter()
        paths = write_stage_outputs(results, StageOutputSpec(hours=args.hours, n_channels=args.channels, seed=1,
                                                             gaps=[(args.hours * 1800, 300.0)], recording_id="bench",
                                                             animal="bench-mouse"))
        marker.write_text(json.dumps({k: [str(p) for p in v] if isinstance(v, list) else str(v)
                                      for k, v in paths.items()}))
        print(f"  written in {time.perf_counter() - t0:.1f} s", flush=True)
    paths = json.loads(marker.read_text())
    out = work / "figures"
    shutil.rmtree(out, ignore_errors=True)
    config = work / "config.yaml"
    shutil.copy(REPO / "config.yaml", config)

    cmd = [sys.executable, "-m", "pipeline", "--config", str(config), "figures", paths["recording_json"],
           "--hypnogram", paths["hypnogram"], "--summary", paths["summary"], "--spectrograms", *paths["spectrograms"],
           "--lfp-qc", *paths["lfp_qc"], "--out-dir", str(out), "--hours-per-page", f"{args.hours_per_page:g}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    load_before = os.getloadavg()[0]
    wall, peak = run_on_one_core(cmd, REPO, env)
    load_after = os.getloadavg()[0]

    spectrogram_mb = sum(Path(p).stat().st_size for p in paths["spectrograms"]) / 1e6
    pdf = (out / "report.pdf").read_bytes()
    figures = {
        "hours": args.hours, "channels": args.channels, "hours_per_page": args.hours_per_page,
        "spectrogram_segments": len(paths["spectrograms"]), "spectrograms_mb": round(spectrogram_mb),
        "wall_s": round(wall, 2), "peak_mb": round(peak), "one_core": True,
        "report_pages": pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages"),
        "outputs_mb": round(sum(p.stat().st_size for p in out.iterdir()) / 1e6, 1),
        "under_a_minute": wall < 60, "under_2_gb": peak < 2048,
        "cpus": os.cpu_count(), "load_1min_before": round(load_before, 2), "load_1min_after": round(load_after, 2),
    }
    print(f"figures and report of {args.hours:g} h ({len(paths['spectrograms'])} segments, {spectrogram_mb:.0f} MB of "
          f"spectrograms): {wall:.1f} s on one core, peak memory {peak:.0f} MB, {figures['report_pages']} report "
          f"pages (load average {load_before:.2f} before, {load_after:.2f} after, {os.cpu_count()} CPUs)", flush=True)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
