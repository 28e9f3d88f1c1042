"""Sleep staging of a whole recording: feature tables -> hypnogram, probabilities, MNE
annotations, a summary and the epochs worth a human look.

The model (pipeline.sleep.model: label-free by default, or a trained XGBoost model)
gives per-epoch evidence; the scoring all models share smooths it over time. This module
joins the segments' feature tables, builds the table the model sees, and writes the
outputs:

- `hypnogram.tsv`: `onset`, `duration` (s from the recording start, as BIDS events
  files), `state` (wake, nrem, rem, unclassified) and `confidence`, one row per epoch;
- `probabilities.tsv`: each state's probability per epoch;
- `hypnogram-annot.fif`: MNE annotations, one per bout;
- `summary.json`: time in each state, per hour and in total, bout counts and lengths,
  transitions, and notes a person should read (a missing EMG, gaps, no REM);
- `review.tsv`: the least certain epochs, for a person to check (a corrected hypnogram
  is training data for `ephys train`).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from pipeline.channels import ROLES, resolve_roles
from pipeline.io.atomic import atomic_path, write_json_atomic, write_tsv_atomic
from pipeline.sleep.features import read_feature_tables, regions_of
from pipeline.sleep.hmm import STATES
from pipeline.sleep.model import LABEL_FREE_VERSION, UNCLASSIFIED, Scored, score
from pipeline.sleep.models import load_model, model_version  # noqa: F401 (model_version: for the rules)
from pipeline.sleep.table import FeatureTable, build_table

log = logging.getLogger(__name__)

# The label-free scorer's version (what `sleep.model: null` selects).
MODEL_VERSION = LABEL_FREE_VERSION
ALL_STATES = (*STATES, UNCLASSIFIED)
HYPNOGRAM_COLUMNS = ["onset", "duration", "state", "confidence"]


def bouts(names: list[str], onsets: np.ndarray, epoch_s: float) -> list[tuple[float, float, str]]:
    """Consecutive epochs of one state merged: (onset_s, duration_s, state)."""
    out = []
    start = 0
    for i in range(1, len(names) + 1):
        if i == len(names) or names[i] != names[start] or abs(onsets[i] - onsets[i - 1] - epoch_s) > 1e-6:
            out.append((float(onsets[start]), float(onsets[i - 1] - onsets[start] + epoch_s), names[start]))
            start = i
    return out


def load_table(feature_tables: list[str | Path], epoch_s: float,
               extra: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> FeatureTable:
    """The segments' feature tables joined, with `extra` base features from outside the
    LFP (name -> (onsets, values), e.g. head speed from the video) matched by onset.

    An epoch an extra feature does not cover (NaN, or not listed) gets its median, so it
    stays scorable from the LFP: a camera that lost the animal is no gap in the recording.
    """
    onsets, valid, feats = read_feature_tables(feature_tables)
    notes = []
    for name, (at, values) in (extra or {}).items():
        by_onset = dict(zip(np.round(np.asarray(at, dtype=np.float64), 3), np.asarray(values, dtype=np.float64)))
        v = np.array([by_onset.get(t, np.nan) for t in np.round(onsets, 3)])
        known = np.isfinite(v)
        if not known.any():
            notes.append(f"{name} is not known in any epoch and was left out")
            continue
        feats[name] = np.where(known, v, np.median(v[known]))
        if not known.all():
            notes.append(f"{name} is not known in {int((~known).sum())} epochs; its median was used there")
    return build_table(onsets, valid, feats, epoch_s, notes)


def summarise(scored: Scored, onsets: np.ndarray, epoch_s: float, duration_s: float | None = None) -> dict:
    """Time in each state (total and per hour from the start), bouts, transitions, notes."""
    names = scored.names
    n = len(names)
    merged = bouts(names, onsets, epoch_s)
    hours = int(np.ceil((onsets[-1] + epoch_s) / 3600.0)) if n else 0
    per_hour = {s: [0.0] * hours for s in ALL_STATES}
    for t, s in zip(onsets, names):
        per_hour[s][int(t // 3600)] += epoch_s / 60.0
    lengths = {s: [b[1] for b in merged if b[2] == s] for s in ALL_STATES}
    trans = {a: {b: 0 for b in ALL_STATES if b != a} for a in ALL_STATES}
    for prev, nxt in zip(merged[:-1], merged[1:]):
        if abs(prev[0] + prev[1] - nxt[0]) < 1e-6:
            trans[prev[2]][nxt[2]] += 1
    scored_s = n * epoch_s
    notes = list(scored.notes)
    if duration_s is not None and duration_s - scored_s > epoch_s:
        notes.append(f"{duration_s - scored_s:.0f} s of the recording are not in any epoch (gaps or a last "
                     "part shorter than one epoch); the fractions are of the scored time")
    for s in STATES:
        if not lengths[s]:
            notes.append(f"no {s.upper() if s != 'wake' else 'wake'} was found in this recording")
    return {
        **scored.details,
        "epoch_s": epoch_s,
        "n_epochs": n,
        "scored_s": scored_s,
        "fractions": {s: names.count(s) / n if n else 0.0 for s in ALL_STATES},
        "minutes": {s: names.count(s) * epoch_s / 60.0 for s in ALL_STATES},
        "minutes_per_hour": {s: [round(v, 3) for v in per_hour[s]] for s in ALL_STATES},
        "bouts": {s: len(lengths[s]) for s in ALL_STATES},
        "bout_s": {s: ({"mean": round(float(np.mean(v)), 1), "median": round(float(np.median(v)), 1),
                        "max": round(float(np.max(v)), 1)} if v else None) for s, v in lengths.items()},
        "transitions": trans,
        "notes": notes,
    }


def write_outputs(scored: Scored, onsets: np.ndarray, epoch_s: float, outputs: dict[str, str | Path], *,
                  meas_date=None, n_review: int = 50, duration_s: float | None = None) -> dict:
    """Write whichever of hypnogram, probabilities, annotations, summary and review
    `outputs` names; returns the summary."""
    names = scored.names
    conf = scored.confidence
    probs = scored.probabilities
    def epoch(i: int) -> list[str]:
        return [f"{onsets[i]:.3f}", f"{epoch_s:g}", names[i], f"{conf[i]:.3f}"]

    def p_cells(i: int) -> list[str]:
        return [f"{p:.4f}" for p in probs[i]]

    p_header = [f"p_{s}" for s in STATES]
    if "hypnogram" in outputs:
        write_tsv_atomic(outputs["hypnogram"], HYPNOGRAM_COLUMNS, (epoch(i) for i in range(len(names))))
    if "probabilities" in outputs:
        write_tsv_atomic(outputs["probabilities"], ["onset"] + p_header,
                         ([f"{onsets[i]:.3f}"] + p_cells(i) for i in range(len(names))))
    if "review" in outputs:
        # Least certain first: the smoothed probability of the state it was given.
        certainty = np.where(scored.states >= 0, probs.max(axis=1), 0.0)
        chosen = sorted(np.argsort(certainty, kind="stable")[:n_review], key=lambda j: onsets[j])
        write_tsv_atomic(outputs["review"], HYPNOGRAM_COLUMNS + p_header, (epoch(i) + p_cells(i) for i in chosen))
    merged = bouts(names, onsets, epoch_s)
    if "annotations" in outputs:
        import mne

        annotations = mne.Annotations([b[0] for b in merged], [b[1] for b in merged],
                                      [f"sleep_{b[2]}" for b in merged], orig_time=meas_date)
        with atomic_path(outputs["annotations"], suffix="-annot.fif") as tmp:
            annotations.save(tmp, overwrite=True, verbose=False)
    summary = summarise(scored, onsets, epoch_s, duration_s)
    if "summary" in outputs:
        write_json_atomic(outputs["summary"], summary)
    return summary


def classify(feature_tables: list[str | Path], outputs: dict[str, str | Path], *, epoch_s: float,
             meas_date=None, model: str | None = None, channel_map: dict | None = None,
             min_confidence: float = 0.5, min_bout_s: float = 0.0, n_review: int = 50,
             duration_s: float | None = None, extra_features: dict | None = None) -> dict:
    """Score a whole recording with the sleep model `model` (a model file, or None for
    the label-free scorer) and write the `outputs`. Returns the summary. `extra_features`:
    see load_table; a trained model gets only those it was trained on."""
    sleep_model = load_model(model)
    trained_on = getattr(sleep_model, "header", {}).get("feature_names")
    if trained_on is not None:
        extra_features = {k: v for k, v in (extra_features or {}).items() if k in trained_on}
    table = load_table(feature_tables, epoch_s, extra_features)
    roles = resolve_roles((channel_map or {}).get("roles") or ROLES, regions_of(table.base))
    scored = score(table, sleep_model, roles, min_confidence=min_confidence, min_bout_s=min_bout_s)
    for note in scored.notes:
        log.warning("%s", note)
    summary = write_outputs(scored, table.onsets, epoch_s, outputs, meas_date=meas_date, n_review=n_review,
                            duration_s=duration_s)
    log.info("scored %d epochs with %s: %s", len(table), scored.details["model_version"],
             ", ".join(f"{s} {100 * v:.0f}%" for s, v in summary["fractions"].items()))
    return summary


def read_hypnogram(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """(onsets in s, state per epoch) of a hypnogram.tsv (this version's `onset` column,
    or `onset_s` as pipeline 0.2 wrote it)."""
    onsets, names = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            onsets.append(float(row["onset"] if "onset" in row else row["onset_s"]))
            names.append(row["state"])
    return np.array(onsets), names


def load_summary(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
