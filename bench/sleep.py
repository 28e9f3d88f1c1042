"""Benchmark: how hard the synthetic animals are to score, measured like real mouse data.

    python bench/sleep.py [--hours 6] [--animals 5] [--rate 1000] [--workdir DIR]

Writes each animal (seeds 1..N, from 07:00, lights on) as an EEG/EMG EDF with its scoring
(pipeline.synth.write_synthetic_edf), then measures from those files alone, with 4-s epochs
and the pipeline's multitaper spectrogram:
- d' = (mean1 - mean2) / sqrt((var1 + var2) / 2) of per-epoch log10 band powers:
  REM vs NREM and REM vs quiet wake on hippocampal log10(theta / delta) (6-9 Hz over 1-4 Hz),
  wake vs NREM on EMG log10 power (30-200 Hz or to 0.45 x rate, line harmonics left out).
  Quiet wake is the half of the wake epochs with the lower EMG power: the truth knows only
  wake, and what makes REM and quiet wake hard to tell apart is exactly that EMG is needed.
- bouts per state (count, median, 10th/90th percentile, max in s), brief arousals (wake
  bouts under 20 s between sleep bouts) per hour of NREM, and state fractions.
Real mice, for comparison: REM/NREM d' about 2.7, wake/NREM EMG d' about 3, NREM bouts of
2-4 min (median, light phase) with a tail to 10-20 min, REM bouts of 60-80 s (median, 20 s
to 3 min), 5-12 brief arousals per NREM hour. One line per animal, then all figures as one
JSON object on the last line.

generate_animals() and difficulty() are separate so that scoring accuracy can be measured
on the same animals later.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EPOCH_S = 4.0
THETA, DELTA = (6.0, 9.0), (1.0, 4.0)
EMG_BAND = (30.0, 200.0)
LINE_FREQ = 60.0
BRIEF_AROUSAL_S = 20.0
STATES = ("wake", "nrem", "rem")


def generate_animals(workdir: Path, *, hours: float, animals: int, rate: float = 250.0,
                     first_seed: int = 1) -> list[tuple[Path, Path]]:
    """Write `animals` synthetic animals (one seed each) into workdir; return (edf, truth) paths."""
    from pipeline.synth import write_synthetic_edf

    out = []
    for seed in range(first_seed, first_seed + animals):
        summary = write_synthetic_edf(Path(workdir) / f"animal{seed}.edf", hours=hours, seed=seed, rate=rate)
        out.append((Path(summary["edf"]), Path(summary["truth"])))
    return out


def read_truth(truth_path: Path) -> list[tuple[float, float, str]]:
    """The truth's bouts as (onset, duration, state)."""
    with open(truth_path, newline="", encoding="utf-8") as f:
        return [(float(r["onset"]), float(r["duration"]), r["state"]) for r in csv.DictReader(f, delimiter="\t")]


def epoch_states(bouts, n_epochs: int, epoch_s: float = EPOCH_S) -> np.ndarray:
    """The state name at the middle of every epoch."""
    onsets = np.array([b[0] for b in bouts])
    mids = (np.arange(n_epochs) + 0.5) * epoch_s
    return np.array([b[2] for b in bouts])[np.searchsorted(onsets, mids, side="right") - 1]


def d_prime(a: np.ndarray, b: np.ndarray) -> float:
    """(mean a - mean b) / sqrt((var a + var b) / 2); nan if either has fewer than two values."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    return float((np.mean(a) - np.mean(b)) / np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2))


def band_log_power(freqs: np.ndarray, power: np.ndarray, lo: float, hi: float, notch=()) -> np.ndarray:
    sel = (freqs >= lo) & (freqs < hi)
    for f0 in notch:
        sel &= np.abs(freqs - f0) > 2.0
    return np.log10(power[:, sel].sum(axis=1) * (freqs[1] - freqs[0]) + 1e-30)


def bout_statistics(bouts) -> dict:
    """Per state: count, median, p10, p90 and max bout duration (s); brief arousals per NREM hour."""
    stats = {}
    for s in STATES:
        d = np.array([b[1] for b in bouts if b[2] == s])
        stats[s] = ({"count": 0} if d.size == 0 else
                    {"count": int(d.size), "median_s": float(np.median(d)), "p10_s": float(np.percentile(d, 10)),
                     "p90_s": float(np.percentile(d, 90)), "max_s": float(d.max())})
    brief = sum(1 for prev, cur, nxt in zip(bouts, bouts[1:], bouts[2:])
                if cur[2] == "wake" and cur[1] < BRIEF_AROUSAL_S and prev[2] != "wake" and nxt[2] != "wake")
    nrem_h = sum(b[1] for b in bouts if b[2] == "nrem") / 3600.0
    stats["brief_arousals_per_nrem_h"] = brief / nrem_h if nrem_h > 0 else float("nan")
    total = sum(b[1] for b in bouts)
    stats["fractions"] = {s: sum(b[1] for b in bouts if b[2] == s) / total for s in STATES}
    return stats


def difficulty(edf_path: Path, truth_path: Path, *, hippocampus: str = "EEG_hippocampus",
               emg: str = "EMG") -> dict:
    """The separations (d') and bout statistics of one animal, from its EDF and truth files."""
    import mne

    from pipeline.dsp.spectrogram import epoch_spectrogram

    raw = mne.io.read_raw_edf(edf_path, preload=True, verbose="error")
    rate = raw.info["sfreq"]
    freqs, hip = epoch_spectrogram(raw.get_data(picks=[hippocampus])[0], rate, EPOCH_S)
    _, mus = epoch_spectrogram(raw.get_data(picks=[emg])[0], rate, EPOCH_S)
    bouts = read_truth(truth_path)
    states = epoch_states(bouts, len(hip))
    ratio = band_log_power(freqs, hip, *THETA) - band_log_power(freqs, hip, *DELTA)
    lines = [LINE_FREQ * k for k in range(1, 5)]
    emg_power = band_log_power(freqs, mus, EMG_BAND[0], min(EMG_BAND[1], 0.45 * rate), notch=lines)
    wake, nrem, rem = (states == s for s in STATES)
    quiet = wake & (emg_power < np.median(emg_power[wake])) if wake.any() else wake
    return {
        "d_rem_nrem_theta_delta": d_prime(ratio[rem], ratio[nrem]),
        "d_rem_quiet_wake_theta_delta": d_prime(ratio[rem], ratio[quiet]),
        "d_rem_wake_theta_delta": d_prime(ratio[rem], ratio[wake]),
        "d_wake_nrem_emg": d_prime(emg_power[wake], emg_power[nrem]),
        "d_nrem_rem_emg": d_prime(emg_power[nrem], emg_power[rem]),
        "bouts": bout_statistics(bouts),
    }


def _round(value, digits: int = 2):
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    return round(value, digits) if isinstance(value, float) else value


def scoring(files: list[tuple[Path, Path]], work: Path, *, eeg=("EEG_cortex", "EEG_hippocampus"), emg="EMG") -> dict:
    """Agreement with the generator's truth: label-free with and without the EMG channel,
    and supervised (XGBoost, leave-one-animal-out, on the label-free run's features)."""
    from pipeline.sleep.score_file import score_file
    from pipeline.sleep.train import evaluate, load_examples

    out: dict = {"label_free": {}, "label_free_no_emg": {}}
    manifest = ["source\ttruth\tanimal"]
    for seed, (edf, truth) in enumerate(files, start=1):
        for key, channel in (("label_free", emg), ("label_free_no_emg", None)):
            folder = work / f"scored{seed}-{key}"
            r = score_file(edf, folder, eeg=list(eeg), emg=channel, truth=truth)
            out[key][f"seed{seed}"] = _summary(r["agreement"])
        manifest.append(f"{work / f'scored{seed}-label_free' / 'features.tsv'}\t{truth}\tseed{seed}")
        print(f"seed {seed}: label-free {out['label_free'][f'seed{seed}']}, without EMG "
              f"{out['label_free_no_emg'][f'seed{seed}']}", flush=True)
    (work / "manifest.tsv").write_text("\n".join(manifest) + "\n")
    ev = evaluate(load_examples(work / "manifest.tsv", epoch_s=EPOCH_S), EPOCH_S)
    out["supervised_loao"] = {**_summary(ev), "per_animal_accuracy": _round(ev["per_animal_accuracy"], 4)}
    for key in ("label_free", "label_free_no_emg"):
        runs = out[key].values()
        out[key]["mean"] = {m: round(float(np.mean([r[m] for r in runs])), 4) for m in ("accuracy", "kappa", "f1_rem")}
        out[key]["min_accuracy"] = round(min(r["accuracy"] for r in runs if "accuracy" in r), 4)
    return out


def _summary(a: dict) -> dict:
    f1 = {s: (a["per_state"][s]["f1"] or 0.0) for s in STATES}
    return {"accuracy": round(a["accuracy"], 4), "kappa": round(a["kappa"], 4),
            **{f"f1_{s}": round(v, 4) for s, v in f1.items()}}


def speed(minutes: float, *, channels: int = 64, rate: float = 1000.0) -> dict:
    """Spectrograms and features of `minutes` of `channels`-channel LFP, as the workflow's
    spectrogram and features stages compute them (region means, multitaper per region,
    EMG from the LFP, base features), against MNE's psd_array_multitaper on the same
    windows of the same region means; one core."""
    import mne

    from pipeline.dsp.spectrogram import epoch_spectrogram
    from pipeline.sleep.features import epoch_features
    from pipeline.spectral import lfp_emg

    rng = np.random.default_rng(0)
    n = int(minutes * 60 * rate)
    regions = {"cortex": range(0, 20), "hippocampus": range(20, 40), "thalamus": range(40, 60), "emg": range(60, 62)}
    lfp = np.cumsum(rng.standard_normal((channels, n), dtype=np.float32), axis=1) * 1e-7  # brown noise, volts
    t0 = time.perf_counter()
    means = {r: lfp[list(idx)].mean(axis=0, dtype=np.float64) for r, idx in regions.items()}
    t1 = time.perf_counter()
    powers = []
    for r in sorted(means):
        freqs, p = epoch_spectrogram(means[r], rate, EPOCH_S, time_bandwidth=2.0, fmax=200.0)
        powers.append(p)
    spectrograms = time.perf_counter() - t1
    lfp_emg([means[r] for r in sorted(means) if r != "emg"], rate, EPOCH_S)
    feats, _ = epoch_features(freqs, np.stack(powers), sorted(means), emg_region="emg")
    ours = time.perf_counter() - t0
    n_per = int(EPOCH_S * rate)
    windows = np.stack([means[r][: (n // n_per) * n_per].reshape(-1, n_per) for r in sorted(means)])
    t0 = time.perf_counter()
    mne.time_frequency.psd_array_multitaper(windows, rate, fmax=200.0, bandwidth=2 * 2.0 / EPOCH_S,
                                            adaptive=False, low_bias=True, normalization="full", verbose=False)
    theirs = time.perf_counter() - t0
    return {"minutes": minutes, "channels": channels, "rate": rate, "features": len(feats),
            "ours_s": round(ours, 3), "realtime_x": round(minutes * 60 / ours, 1),
            "ours_spectrograms_only_s": round(spectrograms, 3),
            "mne_psd_array_multitaper_s": round(theirs, 3), "mne_over_ours_all": round(theirs / ours, 2),
            "mne_over_ours_spectrograms": round(theirs / spectrograms, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=6.0, help="length of each animal's recording (size option)")
    ap.add_argument("--animals", type=int, default=5, help="how many animals (seeds 1..N)")
    ap.add_argument("--rate", type=float, default=1000.0,
                    help="EDF sampling rate in Hz (1000, the workflow's LFP rate, lets muscle tone be estimated "
                         "from the EEG when the EMG is left out)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the EDF and truth files here")
    ap.add_argument("--speed-minutes", type=float, default=60.0, help="minutes of 64-channel LFP for the speed figures")
    ap.add_argument("--no-scoring", action="store_true", help="only the difficulty and speed figures")
    args = ap.parse_args()
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-sleep-"))
    t0 = time.perf_counter()
    files = generate_animals(work, hours=args.hours, animals=args.animals, rate=args.rate)
    t_gen = time.perf_counter() - t0
    per_animal = {}
    for seed, (edf, truth) in enumerate(files, start=1):
        fig = _round(difficulty(edf, truth))
        per_animal[f"seed{seed}"] = fig
        b = fig["bouts"]
        print(f"seed {seed}: d' REM/NREM {fig['d_rem_nrem_theta_delta']}, REM/quiet wake "
              f"{fig['d_rem_quiet_wake_theta_delta']}, wake/NREM EMG {fig['d_wake_nrem_emg']}; bouts median s "
              f"wake {b['wake'].get('median_s')} NREM {b['nrem'].get('median_s')} REM {b['rem'].get('median_s')}; "
              f"{b['brief_arousals_per_nrem_h']} brief arousals per NREM hour", flush=True)
    keys = [k for k in next(iter(per_animal.values())) if k.startswith("d_")]
    figures = {
        "hours": args.hours, "animals": args.animals, "rate": args.rate,
        "generate_s": round(t_gen, 1), "total_s": round(time.perf_counter() - t0, 1),
        "mean": {k: round(float(np.mean([a[k] for a in per_animal.values()])), 2) for k in keys},
        "per_animal": per_animal,
    }
    if not args.no_scoring:
        figures["scoring"] = scoring(files, work)
    figures["speed"] = speed(args.speed_minutes)
    print(f"speed: {figures['speed']}", flush=True)
    figures["total_s"] = round(time.perf_counter() - t0, 1)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
