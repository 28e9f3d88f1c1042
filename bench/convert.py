"""Benchmark: converting raw .ncs files to LFP .fif, against the disk and against peers.

    python bench/convert.py --minutes 10 [--channels 64] [--rate 32000] [--workdir DIR]

Writes (or reuses) a synthetic Neuralynx recording, then measures in the same run:
  - one worker: `ephys convert-segment` on the whole recording as one segment;
  - two workers: two segments converted side by side;
  - the disk: sequential read of the same files with the page cache bypassed (dd iflag=direct);
  - scipy.signal.resample_poly on each channel's whole array (read included);
  - SpikeInterface resample-and-save, if installed;
  - at an LFP rate too low for the muscle tone from the LFP (--low-lfp-rate, 250 Hz), one
    segment converted without and with that estimate made during conversion
    (convert-segment --lfp-emg), taking turns, warm page cache: the slowdown ratio.
Throughput is in x realtime (seconds of recording per second of work); memory is the
peak resident set of the process that did the work. One summary line per figure, and
all figures as one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def drop_page_cache() -> bool:
    """Ask the kernel to forget cached file pages (root only); True if it worked."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def run_measured(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Run cmd; return (wall seconds, peak RSS in MB of that process)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def run_parallel(cmds: list[list[str]], cwd: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in cmds]
    peak = 0.0
    for p in procs:
        _, status, usage = os.wait4(p.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(p.stderr.read().decode()[-2000:])
        peak = max(peak, usage.ru_maxrss / 1024)
    return time.perf_counter() - t0, peak


def disk_direct_read(files: list[Path]) -> tuple[float, int]:
    """Seconds to read the files sequentially with O_DIRECT (dd iflag=direct), and bytes."""
    total = sum(f.stat().st_size for f in files)
    t0 = time.perf_counter()
    for f in files:
        subprocess.run(["dd", f"if={f}", "of=/dev/null", "bs=4M", "iflag=direct"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0, total


# The peer as people use it: each channel's whole file read into memory, then
# resample_poly with its default filter on the whole array, in float32.
RESAMPLE_POLY_SNIPPET = """
import sys, time, glob, numpy as np
from scipy.signal import resample_poly
from pipeline.io.ncs import HEADER_SIZE, NCS_RECORD_DTYPE
rate = float(sys.argv[3])
factor = int(round(rate / float(sys.argv[2])))
t0 = time.perf_counter()
for path in sorted(glob.glob(sys.argv[1] + "/*.ncs")):
    rec = np.fromfile(path, dtype=NCS_RECORD_DTYPE, offset=HEADER_SIZE)
    x = rec["samples"].reshape(-1).astype(np.float32)
    y = resample_poly(x, 1, factor)
print(time.perf_counter() - t0)
"""

SPIKEINTERFACE_SNIPPET = """
import sys, time
import spikeinterface.extractors as se, spikeinterface.preprocessing as spre
t0 = time.perf_counter()
rec = se.read_neuralynx(sys.argv[1])
rec = spre.resample(rec, int(float(sys.argv[2])))
rec.save(folder=sys.argv[3], n_jobs=1, chunk_duration="10s", progress_bar=False)
print(time.perf_counter() - t0)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="recording length (size option)")
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--rate", type=float, default=32000.0)
    ap.add_argument("--lfp-rate", type=float, default=1000.0)
    ap.add_argument("--low-lfp-rate", type=float, default=250.0,
                    help="LFP rate of the conversion with and without the muscle tone estimate")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each, with and without the estimate")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the recording here between runs")
    ap.add_argument("--skip-baselines", action="store_true", help="only the pipeline's own figures")
    args = ap.parse_args()

    from pipeline.synth import write_synthetic_recording

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-convert-"))
    work.mkdir(parents=True, exist_ok=True)
    tag = f"{args.minutes:g}min-{args.channels}ch-{args.rate:g}Hz"
    raw = work / f"raw-{tag}"
    if not any(raw.glob("*.ncs")):
        shutil.rmtree(raw, ignore_errors=True)
        print(f"writing a {args.minutes:g}-minute synthetic recording to {raw} ...", flush=True)
        write_synthetic_recording(raw, duration_s=args.minutes * 60, n_channels=args.channels,
                                  sampling_rate=args.rate, seed=0)
    files = sorted(raw.glob("*.ncs"))
    duration = args.minutes * 60
    out = work / f"out-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    py = sys.executable
    figures: dict[str, object] = {"minutes": args.minutes, "channels": args.channels, "rate_hz": args.rate,
                                  "lfp_rate_hz": args.lfp_rate, "raw_gb": round(sum(f.stat().st_size for f in files) / 1e9, 3)}

    def config_with(segment_s: float, lfp_rate: float = args.lfp_rate) -> Path:
        import yaml

        cfg = yaml.safe_load((REPO / "config.yaml").read_text())
        epoch = cfg["sleep"]["epoch_s"]  # a segment must hold whole sleep epochs
        cfg["lfp"]["segment_s"] = segment_s = math.ceil(segment_s / epoch) * epoch
        cfg["lfp"]["rate"] = lfp_rate
        cfg["data_roots"] = [str(work)]
        path = out / f"config-{segment_s:g}-{lfp_rate:g}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        os.environ["EPHYS_CONFIG"] = str(path)  # convert-segment reads data_roots from it, as in the workflow
        return path

    def inspect(segment_s: float, lfp_rate: float = args.lfp_rate) -> Path:
        cfg = config_with(segment_s, lfp_rate)
        info = out / f"recording-{segment_s:g}-{lfp_rate:g}.json"
        subprocess.run([py, "-m", "pipeline", "--config", str(cfg), "inspect", str(raw), str(info)],
                       check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return info

    # One worker: the whole recording as one segment.
    whole = inspect(max(duration * 2, 60))
    cold = drop_page_cache()
    figures["page_cache_dropped"] = cold
    wall, peak = run_measured([py, "-m", "pipeline", "convert-segment", str(whole), "0", str(out / "one.fif")], REPO)
    figures["one_worker_x_realtime"] = round(duration / wall, 1)
    figures["one_worker_peak_mb"] = round(peak)
    # The same run seen from inside the process: without starting Python and importing.
    inside = json.loads((out / "one.json").read_text())["x_realtime"]
    figures["one_worker_in_process_x_realtime"] = round(inside, 1)
    print(f"one worker: {duration / wall:.1f}x realtime ({inside:.1f}x once started), peak memory {peak:.0f} MB "
          f"({'cold' if cold else 'warm'} page cache)", flush=True)

    # Two workers: two segments side by side.
    halves = inspect(duration / 2)
    n_seg = len(json.loads(halves.read_text())["segments"])
    drop_page_cache()
    wall2, peak2 = run_parallel([[py, "-m", "pipeline", "convert-segment", str(halves), str(k), str(out / f"two{k}.fif")]
                                 for k in range(n_seg)], REPO)
    figures["two_workers_x_realtime"] = round(duration / wall2, 1)
    figures["two_workers_peak_mb_each"] = round(peak2)
    print(f"two workers: {duration / wall2:.1f}x realtime ({n_seg} segments side by side)", flush=True)

    # The muscle tone from the LFP made during conversion, at a low LFP rate: the same
    # segment converted with and without it, taking turns (the machine's load drifts).
    low = inspect(max(duration * 2, 60), args.low_lfp_rate)
    base_cmd = [py, "-m", "pipeline", "convert-segment", str(low), "0", str(out / "low.fif")]
    emg_cmd = base_cmd + ["--lfp-emg", str(out / "low-emg.npz"), "--epoch-s", "4"]
    run_measured(base_cmd, REPO)  # page cache warm for both
    times: dict[str, list[tuple[float, float]]] = {"without": [], "with": []}
    for _ in range(args.repeats):
        for key, cmd in (("without", base_cmd), ("with", emg_cmd)):
            w, p = run_measured(cmd, REPO)
            times[key].append((w, json.loads((out / "low.json").read_text())["seconds"], p))
    best = {k: min(v) for k, v in times.items()}  # fastest wall run of each
    inside = {k: min(t[1] for t in v) for k, v in times.items()}  # fastest in-process time of each
    import numpy as np

    with np.load(out / "low-emg.npz") as z:
        figures["low_lfp_emg_epochs"] = int(len(z["lfp_emg"])) if "lfp_emg" in z else 0
        figures["low_lfp_emg_rate_hz"] = float(z["rate"]) if "rate" in z else None
    figures["low_lfp_rate_hz"] = args.low_lfp_rate
    figures["low_rate_without_emg_x_realtime"] = round(duration / best["without"][0], 1)
    figures["low_rate_with_emg_x_realtime"] = round(duration / best["with"][0], 1)
    figures["low_rate_with_emg_peak_mb"] = round(max(t[2] for t in times["with"]))
    figures["low_rate_without_emg_peak_mb"] = round(max(t[2] for t in times["without"]))
    figures["emg_slowdown_ratio"] = round(best["with"][0] / best["without"][0], 3)
    figures["emg_slowdown_ratio_in_process"] = round(inside["with"] / inside["without"], 3)
    print(f"LFP at {args.low_lfp_rate:g} Hz: {duration / best['without'][0]:.1f}x realtime without the muscle tone "
          f"estimate, {duration / best['with'][0]:.1f}x with it (at {figures['low_lfp_emg_rate_hz']} Hz): "
          f"{figures['emg_slowdown_ratio']:.3f}x the time ({figures['emg_slowdown_ratio_in_process']:.3f}x once "
          f"started; target <= 1.2)", flush=True)

    # The disk, page cache bypassed.
    dwall, nbytes = disk_direct_read(files)
    figures["disk_direct_read_mb_s"] = round(nbytes / dwall / 1e6)
    figures["disk_direct_x_realtime"] = round(duration / dwall, 1)
    figures["two_workers_to_disk_ratio"] = round(dwall / wall2, 2)
    print(f"disk (dd iflag=direct): {nbytes / dwall / 1e6:.0f} MB/s = {duration / dwall:.1f}x realtime; "
          f"two workers reach {dwall / wall2:.2f} of it", flush=True)

    if not args.skip_baselines:
        drop_page_cache()
        wall_rp, peak_rp = run_measured([py, "-c", RESAMPLE_POLY_SNIPPET, str(raw), str(args.lfp_rate), str(args.rate)], REPO)
        figures["resample_poly_x_realtime"] = round(duration / wall_rp, 1)
        figures["resample_poly_peak_mb"] = round(peak_rp)
        figures["one_worker_to_resample_poly_ratio"] = round(wall_rp / wall, 2)
        print(f"scipy resample_poly on whole arrays: {duration / wall_rp:.1f}x realtime, peak {peak_rp:.0f} MB; "
              f"one worker is {wall_rp / wall:.2f}x as fast", flush=True)
        try:
            import spikeinterface  # noqa: F401

            drop_page_cache()
            wall_si, _ = run_measured([py, "-c", SPIKEINTERFACE_SNIPPET, str(raw), str(args.lfp_rate),
                                       str(out / "si")], REPO)
            figures["spikeinterface_x_realtime"] = round(duration / wall_si, 1)
            print(f"SpikeInterface resample + save: {duration / wall_si:.1f}x realtime", flush=True)
        except ImportError:
            figures["spikeinterface_x_realtime"] = None
            print("SpikeInterface: not installed, skipped", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
