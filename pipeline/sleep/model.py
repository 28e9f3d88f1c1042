"""Sleep models: what turns a recording's feature table into per-epoch evidence for
each state, and the scoring every model shares.

A model gives, for every epoch, the log-likelihood of its features under wake, NREM and
REM (up to a constant per epoch). The shared part smooths that evidence over time with
a hidden Markov model (pipeline.sleep.hmm), marks epochs it cannot trust as
`unclassified` (gaps, artefacts, low confidence) and applies the minimum bout length.

Two models exist:
- the label-free scorer (pipeline.sleep.label_free), the default, needing no training
  data: it finds the states from the recording's own markers, then lets XGBoost
  generalise from the epochs it is sure of;
- a trained XGBoost model (pipeline.sleep.xgb), made by `ephys train` from a lab's own
  scored recordings and saved as one file that `sleep.model` names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pipeline.sleep.hmm import STATES, smooth
from pipeline.sleep.table import FeatureTable

UNCLASSIFIED = "unclassified"
LABEL_FREE = "label-free"
# The version of the label-free scorer. Bump it whenever scoring changes: it is a param of
# the classify rule, so Snakemake then scores every recording again (and draws and
# publishes it again), and every figure and provenance.json name it.
LABEL_FREE_VERSION = "label-free-3"


@dataclass
class Evidence:
    log_lik: np.ndarray  # (epochs, states): log p(features | state) up to a per-epoch constant
    details: dict = field(default_factory=dict)  # what the model found, for the summary
    notes: list[str] = field(default_factory=list)  # sentences a person should read
    transitions: np.ndarray | None = None  # per-epoch transition matrix learnt by the model, if any


class SleepModel(Protocol):
    kind: str  # "label-free" or "xgboost"
    version: str  # recorded in the summary, the figures and provenance.json

    def evidence(self, table: FeatureTable, roles: dict[str, str | None]) -> Evidence:
        """Per-epoch state log-likelihoods of the table's epochs. `roles` maps slow_wave,
        theta and emg to the region playing that part (None: absent)."""


@dataclass
class Scored:
    states: np.ndarray  # index into STATES per epoch, -1: unclassified
    probabilities: np.ndarray  # (epochs, states), smoothed posteriors
    details: dict
    notes: list[str]

    @property
    def names(self) -> list[str]:
        return [STATES[s] if s >= 0 else UNCLASSIFIED for s in self.states]

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities[np.arange(len(self.states)), np.maximum(self.states, 0)] * (self.states >= 0)


def enforce_min_bout(states: np.ndarray, min_epochs: int) -> np.ndarray:
    """Bouts of a state shorter than `min_epochs` take the state of a neighbouring bout.

    Shortest bouts first; a short bout goes to the longer of its neighbours (animals do
    not wake for one epoch and fall asleep again). Unclassified runs are left alone and
    never absorb a state.
    """
    states = states.copy()
    if min_epochs <= 1:
        return states
    while True:
        starts = np.flatnonzero(np.r_[True, states[1:] != states[:-1]])
        ends = np.r_[starts[1:], len(states)]
        lengths = ends - starts
        short = [(lengths[i], i) for i in range(len(starts))
                 if lengths[i] < min_epochs and states[starts[i]] >= 0 and len(starts) > 1]
        candidates = []
        for _, i in sorted(short):
            left = i - 1 if i > 0 and states[starts[i - 1]] >= 0 else None
            right = i + 1 if i + 1 < len(starts) and states[starts[i + 1]] >= 0 else None
            options = [j for j in (left, right) if j is not None]
            if options:
                candidates.append((i, max(options, key=lambda j: lengths[j])))
        if not candidates:
            return states
        i, j = candidates[0]
        states[starts[i]:ends[i]] = states[starts[j]]


def score(table: FeatureTable, model: SleepModel, roles: dict[str, str | None], *,
          min_confidence: float = 0.5, min_bout_s: float = 0.0) -> Scored:
    """Score every epoch of `table` with `model`; the smoothing all models share."""
    ev = model.evidence(table, roles)
    log_lik = np.array(ev.log_lik, dtype=np.float64)
    log_lik[~table.valid] = 0.0  # no evidence: the HMM bridges the gap
    states, probs = smooth(log_lik, table.epoch_s, transitions=ev.transitions)
    states = states.astype(np.int64)
    states = enforce_min_bout(states, int(round(min_bout_s / table.epoch_s)))
    conf = probs[np.arange(len(states)), states]
    low = table.valid & (conf < min_confidence)
    states[~table.valid | low] = -1
    notes = list(table.notes) + list(ev.notes)
    n_invalid = int((~table.valid).sum())
    if n_invalid:
        notes.append(f"{n_invalid} epochs ({100 * n_invalid / max(1, len(states)):.1f}%) are unclassified because "
                     "they touch a gap in the recording or an artefact")
    if low.any():
        notes.append(f"{int(low.sum())} epochs are unclassified because the model was less than "
                     f"{100 * min_confidence:.0f}% sure of them (sleep.min_confidence)")
    details = {"method": model.kind, "model_version": model.version, **ev.details,
               "unclassified_gap_epochs": n_invalid, "unclassified_low_confidence_epochs": int(low.sum())}
    return Scored(states=states, probabilities=probs, details=details, notes=notes)
