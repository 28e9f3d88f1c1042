"""Sleep staging: whole-recording features -> hypnogram, probabilities, MNE annotations.

The label-free method needs no training data. It reduces every epoch to three markers
(cortical delta power, hippocampal theta/delta ratio, muscle power) and standardises
them within the recording, so one animal's gains and noise levels do not matter. Then
it splits as a scorer does by eye: wake from sleep on muscle tone (a two-component
mixture in one dimension), REM from NREM among sleep epochs on theta against delta.
Gaussians fitted per state to that split give each epoch's likelihoods, which a hidden
Markov model smooths over time. (A free three-dimensional mixture was tried first: its
REM component drifted onto quiet wake, which also has theta.)
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from pipeline.errors import ConfigError, DataError
from pipeline.io.atomic import atomic_path, write_json_atomic
from pipeline.sleep.features import read_feature_tables
from pipeline.sleep.hmm import STATES, smooth

log = logging.getLogger(__name__)

UNCLASSIFIED = "unclassified"
# The version of the label-free scorer. Bump it whenever scoring changes: it is a param of
# the classify rule, so Snakemake then scores every recording again (and draws and
# publishes it again), and every figure and provenance.json name it.
MODEL_VERSION = "label-free-1"


def model_version(model: str | None) -> str:
    """The version of the sleep model `sleep.model` selects (null: the label-free scorer)."""
    if model is None or model == MODEL_VERSION:
        return MODEL_VERSION
    raise ConfigError(f"sleep model {model!r} is not available: this pipeline scores with {MODEL_VERSION} only "
                      "(sleep.model: null); trained models are not available yet.")


def _first(feats: dict, names: list[str]) -> tuple[str, np.ndarray] | None:
    for n in names:
        if n in feats:
            return n, feats[n]
    return None


def marker_matrix(feats: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """Columns: delta, theta/delta, muscle (the best available feature for each)."""
    regions = sorted({k.split("_log_total")[0] for k in feats if k.endswith("_log_total")})
    if not regions:
        raise DataError("the features hold no brain region; check the channel map")
    pref = ["cortex"] + [r for r in regions if r != "cortex"]
    delta = _first(feats, [f"{r}_rel_delta" for r in pref])
    theta = _first(feats, [f"{r}_theta_delta" for r in ["hippocampus"] + pref])
    muscle = _first(feats, ["emg_log_power"] + [f"{r}_log_high" for r in pref])
    if muscle is None:
        muscle = _first(feats, [f"{r}_log_gamma" for r in pref])
    chosen = [delta, theta, muscle]
    if any(c is None for c in chosen):
        raise ConfigError("the features lack delta, theta or muscle power: spectrogram.fmax must be at least "
                          "80 Hz for label-free scoring.")
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


def fit_two_groups(x: np.ndarray, *, n_iter: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-component 1-D Gaussian mixture; (means, sds, weights), lower component first.

    It starts from the lowest and highest thirds (the middle third undecided): groups of
    very different widths, such as tight sleep and broad wake muscle tone, then settle
    where they are. A start from one hard split (Otsu's) stuck at two equal widths with
    the boundary inside wake.
    """
    lo, hi = np.quantile(x, [1 / 3, 2 / 3])
    resp = np.column_stack([x <= lo, x >= hi]).astype(float)
    resp[(x > lo) & (x < hi)] = 0.5
    for _ in range(n_iter):
        nk = resp.sum(axis=0) + 1e-9
        w = nk / nk.sum()
        mu = (resp * x[:, None]).sum(axis=0) / nk
        sd = np.sqrt(np.maximum((resp * (x[:, None] - mu) ** 2).sum(axis=0) / nk, 1e-4))
        ll = -0.5 * ((x[:, None] - mu) / sd) ** 2 - np.log(sd) + np.log(w + 1e-12)
        ll -= ll.max(axis=1, keepdims=True)
        new = np.exp(ll)
        new /= new.sum(axis=1, keepdims=True)
        converged = np.max(np.abs(new - resp)) < 1e-6
        resp = new
        if converged:
            break
    order = np.argsort(mu)
    return mu[order], sd[order], w[order]


def _posterior_high(x: np.ndarray, mu, sd, w) -> np.ndarray:
    """P(upper group | x), made monotonic in x.

    A tight group has tails so thin that a value beyond it (REM's muscle tone, lower
    still than NREM's) is likelier under the broad group on the far side. Values
    below the lower mean belong to the lower group, values above the upper mean to the
    upper group.
    """
    ll = -0.5 * ((x[:, None] - mu) / sd) ** 2 - np.log(sd) + np.log(w + 1e-12)
    ll -= ll.max(axis=1, keepdims=True)
    p = np.exp(ll)
    post = p[:, 1] / p.sum(axis=1)
    post = np.where(x <= mu[0], 0.0, post)
    return np.where(x >= mu[1], 1.0, post)


def _gaussian_loglik(z: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return -0.5 * (np.sum((z[:, None, :] - mean[None]) ** 2 / var[None], axis=2)
                   + np.sum(np.log(2 * np.pi * var), axis=1)[None])


def split_states(z: np.ndarray) -> tuple[np.ndarray, bool]:
    """Hard labels (indices into STATES) from standardised markers; and whether REM was found."""
    delta, theta, muscle = z.T
    mu, sd, w = fit_two_groups(muscle)
    wake = _posterior_high(muscle, mu, sd, w) > 0.5
    labels = np.full(len(z), STATES.index("wake"))
    labels[~wake] = STATES.index("nrem")
    has_rem = False
    sleep = ~wake
    if sleep.sum() >= 10:
        td = theta - delta
        mu, sd, w = fit_two_groups(td[sleep])
        separation = (mu[1] - mu[0]) / np.sqrt((sd[0] ** 2 + sd[1] ** 2) / 2)
        # Without REM (a short or wake-heavy recording) NREM alone splits into two
        # overlapping halves; real REM stands well apart on theta against delta.
        has_rem = bool(separation > 2.5 and w[1] > 0.02)
        if has_rem:
            rem = sleep & (_posterior_high(td, mu, sd, w) > 0.5)
            labels[rem] = STATES.index("rem")
    return labels, has_rem


def score_label_free(feats: dict[str, np.ndarray], valid: np.ndarray, epoch_s: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """(state index per epoch, -1 for unclassified; probabilities (n, 3); details)."""
    markers, used = marker_matrix(feats)
    finite = valid & np.all(np.isfinite(markers), axis=1)
    if finite.sum() < 10:
        raise DataError(f"only {int(finite.sum())} usable epochs: too few to score")
    z = _robust_z(_rolling_mean(np.where(np.isfinite(markers), markers, 0.0), 3), finite)
    zf = z[finite]
    labels, has_rem = split_states(zf)
    k = len(STATES)
    means = np.zeros((k, 3))
    var = np.ones((k, 3))
    weights = np.full(k, 1e-3)
    for i in range(k):
        members = zf[labels == i]
        if len(members) >= 2:
            means[i], var[i] = members.mean(axis=0), np.maximum(members.var(axis=0), 1e-2)
            weights[i] = len(members) / len(zf)
    log_lik = _gaussian_loglik(z, means, var) + np.log(np.maximum(weights, 1e-3))[None]
    for i in range(k):
        if (labels == i).sum() < 2:
            log_lik[:, i] = -1e6  # a state this recording does not show
    log_lik[~finite] = 0.0  # no evidence: the HMM bridges the gap
    states, probs = smooth(log_lik, epoch_s)
    states = states.astype(np.int64)
    states[~finite] = -1
    details = {"method": "label-free", "markers": used, "rem_found": has_rem,
               "state_means": {s: means[i].round(3).tolist() for i, s in enumerate(STATES)},
               "state_weights": {s: round(float(weights[i]), 3) for i, s in enumerate(STATES)}}
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


def classify(feature_tables: list[str | Path], outputs: dict[str, str | Path], *, epoch_s: float,
             meas_date=None, model: str | None = None) -> dict:
    """Score a whole recording with the sleep model `model` (a version, or None for the
    label-free scorer); write the `outputs`: hypnogram (TSV), probabilities (TSV),
    annotations (MNE -annot.fif) and summary (JSON). Returns the summary."""
    import mne

    version = model_version(model)
    onsets, valid, feats = read_feature_tables(feature_tables)
    states, probs, details = score_label_free(feats, valid, epoch_s)
    names = state_names(states)
    with atomic_path(outputs["hypnogram"]) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["onset_s", "duration_s", "state", "confidence"])
            for i, name in enumerate(names):
                conf = float(probs[i, states[i]]) if states[i] >= 0 else 0.0
                w.writerow([f"{onsets[i]:.3f}", f"{epoch_s:g}", name, f"{conf:.3f}"])
    with atomic_path(outputs["probabilities"]) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["onset_s"] + [f"p_{s}" for s in STATES])
            for i in range(len(names)):
                w.writerow([f"{onsets[i]:.3f}"] + [f"{p:.4f}" for p in probs[i]])
    merged = bouts(names, onsets, epoch_s)
    annotations = mne.Annotations([b[0] for b in merged], [b[1] for b in merged],
                                  [f"sleep_{b[2]}" for b in merged], orig_time=meas_date)
    with atomic_path(outputs["annotations"], suffix="-annot.fif") as tmp:
        annotations.save(tmp, overwrite=True, verbose=False)
    n = len(names)
    summary = {
        **details,
        "model_version": version,
        "epoch_s": epoch_s,
        "n_epochs": n,
        "fractions": {s: names.count(s) / n for s in (*STATES, UNCLASSIFIED)},
        "bouts": {s: sum(1 for b in merged if b[2] == s) for s in (*STATES, UNCLASSIFIED)},
    }
    write_json_atomic(outputs["summary"], summary)
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
