"""Sleep staging: whole-recording features -> hypnogram, probabilities, MNE annotations.

The label-free method needs no training data. It reduces every epoch to three markers
(cortical delta power, hippocampal theta/delta ratio, muscle power), standardises them
within the recording (so gains and noise levels of one animal do not matter), fits a
three-component Gaussian mixture started from physiological rules (wake: high muscle;
REM: low muscle and high theta/delta; NREM: low muscle and high delta), names the
components by their means, and smooths the result with a hidden Markov model.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from pipeline.io.atomic import atomic_path, write_json_atomic
from pipeline.sleep.features import read_feature_tables
from pipeline.sleep.hmm import STATES, smooth

log = logging.getLogger(__name__)

UNCLASSIFIED = "unclassified"


def _first(feats: dict, names: list[str]) -> tuple[str, np.ndarray] | None:
    for n in names:
        if n in feats:
            return n, feats[n]
    return None


def marker_matrix(feats: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """Columns: delta, theta/delta, muscle (the best available feature for each)."""
    regions = sorted({k.split("_log_total")[0] for k in feats if k.endswith("_log_total")})
    if not regions:
        raise ValueError("the features hold no brain region; check the channel map")
    pref = ["cortex"] + [r for r in regions if r != "cortex"]
    delta = _first(feats, [f"{r}_rel_delta" for r in pref])
    theta = _first(feats, [f"{r}_theta_delta" for r in ["hippocampus"] + pref])
    muscle = _first(feats, ["emg_log_power"] + [f"{r}_log_high" for r in pref])
    if muscle is None:
        muscle = _first(feats, [f"{r}_log_gamma" for r in pref])
    chosen = [delta, theta, muscle]
    if any(c is None for c in chosen):
        raise ValueError("the features lack delta, theta or muscle power; is fmax below 80 Hz?")
    return np.column_stack([c[1] for c in chosen]), [c[0] for c in chosen]


def _rolling_mean(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    kernel = np.ones(width) / width
    pad = width // 2
    padded = np.pad(x, ((pad, pad), (0, 0)), mode="edge")
    return np.column_stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(x.shape[1])])


def _robust_z(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    med = np.median(x[valid], axis=0)
    iqr = np.subtract(*np.percentile(x[valid], [75, 25], axis=0))
    return (x - med) / np.where(iqr > 0, iqr / 1.349, 1.0)


def _otsu(x: np.ndarray) -> float:
    """Threshold splitting x into two groups of least within-group variance."""
    xs = np.sort(x)
    if len(xs) < 4:
        return float(np.median(xs))
    cand = np.quantile(xs, np.linspace(0.05, 0.95, 91))
    best, best_t = np.inf, float(np.median(xs))
    for t in cand:
        a, b = xs[xs <= t], xs[xs > t]
        if len(a) < 2 or len(b) < 2:
            continue
        score = len(a) * a.var() + len(b) * b.var()
        if score < best:
            best, best_t = score, float(t)
    return best_t


def _rule_labels(z: np.ndarray) -> np.ndarray:
    delta, theta, muscle = z.T
    labels = np.full(len(z), STATES.index("nrem"))
    wake = muscle > _otsu(muscle)
    labels[wake] = STATES.index("wake")
    sleep = ~wake
    if sleep.sum() >= 4:
        t = _otsu(theta[sleep] - delta[sleep])
        rem = sleep & ((theta - delta) > t) & (theta > np.median(theta[sleep]))
        labels[rem] = STATES.index("rem")
    return labels


def _gaussian_loglik(z: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return -0.5 * (np.sum((z[:, None, :] - mean[None]) ** 2 / var[None], axis=2)
                   + np.sum(np.log(2 * np.pi * var), axis=1)[None])


def fit_mixture(z: np.ndarray, labels: np.ndarray, *, n_iter: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM for a diagonal Gaussian mixture started from `labels`; returns (means, vars, weights)."""
    k = len(STATES)
    resp = np.eye(k)[labels]
    floor = 1e-2
    for _ in range(n_iter):
        nk = resp.sum(axis=0) + 1e-9
        weights = nk / nk.sum()
        means = (resp.T @ z) / nk[:, None]
        var = (resp.T @ z**2) / nk[:, None] - means**2
        var = np.maximum(var, floor)
        ll = _gaussian_loglik(z, means, var) + np.log(weights + 1e-12)[None]
        ll -= ll.max(axis=1, keepdims=True)
        new = np.exp(ll)
        new /= new.sum(axis=1, keepdims=True)
        if np.max(np.abs(new - resp)) < 1e-5:
            resp = new
            break
        resp = new
    return means, var, weights


def name_components(means: np.ndarray) -> list[int]:
    """Component index for wake, nrem, rem: wake has most muscle; of the rest REM has the higher theta/delta."""
    wake = int(np.argmax(means[:, 2]))
    rest = [i for i in range(len(means)) if i != wake]
    rem = max(rest, key=lambda i: means[i, 1] - means[i, 0])
    nrem = next(i for i in rest if i != rem)
    return [wake, nrem, rem]


def score_label_free(feats: dict[str, np.ndarray], valid: np.ndarray, epoch_s: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """(state index per epoch, -1 for unclassified; probabilities (n, 3); details)."""
    markers, used = marker_matrix(feats)
    finite = valid & np.all(np.isfinite(markers), axis=1)
    if finite.sum() < 10:
        raise ValueError(f"only {int(finite.sum())} usable epochs: too few to score")
    z = _robust_z(_rolling_mean(np.where(np.isfinite(markers), markers, 0.0), 3), finite)
    labels = _rule_labels(z[finite])
    means, var, weights = fit_mixture(z[finite], labels)
    order = name_components(means)
    means, var, weights = means[order], var[order], weights[order]
    # A recording without REM (short, or a wake-heavy dark phase) still gives three
    # components; the "REM" one is then just a slice of NREM or wake. Accept it as REM
    # only if it is clearly more theta-dominated than NREM and quieter than wake.
    theta_excess = (means[2, 1] - means[2, 0]) - (means[1, 1] - means[1, 0])
    has_rem = theta_excess > 1.0 and means[2, 2] < means[0, 2]
    log_lik = _gaussian_loglik(z, means, var) + np.log(np.maximum(weights, 1e-3))[None]
    if not has_rem:
        log_lik[:, 2] = -1e6
    log_lik[~finite] = 0.0  # no evidence: the HMM bridges the gap
    states, probs = smooth(log_lik, epoch_s)
    states = states.astype(np.int64)
    states[~finite] = -1
    details = {"method": "label-free", "markers": used, "rem_found": bool(has_rem),
               "component_means": {s: means[i].round(3).tolist() for i, s in enumerate(STATES)},
               "component_weights": {s: round(float(weights[i]), 3) for i, s in enumerate(STATES)}}
    return states, probs, details


def state_names(states: np.ndarray) -> list[str]:
    return [STATES[s] if s >= 0 else UNCLASSIFIED for s in states]


def bouts(names: list[str], onsets: np.ndarray, epoch_s: float) -> list[tuple[float, float, str]]:
    """Consecutive epochs of one state merged: (onset_s, duration_s, state)."""
    out = []
    start = 0
    for i in range(1, len(names) + 1):
        if i == len(names) or names[i] != names[start] or abs(onsets[i] - onsets[i - 1] - epoch_s) > 1e-6:
            out.append((float(onsets[start]), float(onsets[i - 1] - onsets[start] + epoch_s), names[start]))
            start = i
    return out


def classify(feature_tables: list[str | Path], out_dir: str | Path, *, epoch_s: float,
             meas_date=None, model_path: str | None = None) -> dict:
    """Score a whole recording; write hypnogram.tsv, probabilities.tsv, hypnogram-annot.fif, summary.json."""
    import mne

    onsets, valid, feats = read_feature_tables(feature_tables)
    if model_path:
        from pipeline.sleep.model import score_with_model

        states, probs, details = score_with_model(model_path, feats, valid, epoch_s)
    else:
        states, probs, details = score_label_free(feats, valid, epoch_s)
    names = state_names(states)
    out_dir = Path(out_dir)
    with atomic_path(out_dir / "hypnogram.tsv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["onset_s", "duration_s", "state", "confidence"])
            for i, name in enumerate(names):
                conf = float(probs[i, states[i]]) if states[i] >= 0 else 0.0
                w.writerow([f"{onsets[i]:.3f}", f"{epoch_s:g}", name, f"{conf:.3f}"])
    with atomic_path(out_dir / "probabilities.tsv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["onset_s"] + [f"p_{s}" for s in STATES])
            for i in range(len(names)):
                w.writerow([f"{onsets[i]:.3f}"] + [f"{p:.4f}" for p in probs[i]])
    merged = bouts(names, onsets, epoch_s)
    annotations = mne.Annotations([b[0] for b in merged], [b[1] for b in merged],
                                  [f"sleep_{b[2]}" for b in merged], orig_time=meas_date)
    with atomic_path(out_dir / "hypnogram-annot.fif", suffix="-annot.fif") as tmp:
        annotations.save(tmp, overwrite=True, verbose=False)
    n = len(names)
    summary = {
        **details,
        "epoch_s": epoch_s,
        "n_epochs": n,
        "fractions": {s: names.count(s) / n for s in (*STATES, UNCLASSIFIED)},
        "bouts": {s: sum(1 for b in merged if b[2] == s) for s in (*STATES, UNCLASSIFIED)},
    }
    write_json_atomic(out_dir / "summary.json", summary)
    log.info("scored %d epochs: %s", n, ", ".join(f"{s} {100 * v:.0f}%" for s, v in summary["fractions"].items()))
    return summary


def read_hypnogram(path: str | Path) -> tuple[np.ndarray, list[str]]:
    onsets, names = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            onsets.append(float(row["onset_s"]))
            names.append(row["state"])
    return np.array(onsets), names


def load_summary(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
