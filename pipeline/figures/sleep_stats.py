"""Sleep architecture in numbers, from a hypnogram: time in each state (per clock bin, in
light and dark), bout lengths, transitions between states, and the totals table.

The recording's figures and the animal summary both take their numbers from here.
"""

from __future__ import annotations

import numpy as np

from pipeline.figures.clock import Clock, LightSchedule
from pipeline.figures.data import STATES, Hypnogram

SCORED = ("wake", "nrem", "rem")
_BIN_CHOICES_H = (1.0, 0.5, 0.25, 10 / 60, 5 / 60, 2 / 60, 1 / 60)


def bin_hours(span_h: float) -> float:
    """Clock bins for time-in-state: hours for six hours or more, else finer (at least six bins)."""
    return next((b for b in _BIN_CHOICES_H if span_h / b >= 6), _BIN_CHOICES_H[-1])


def time_per_bin(hyp: Hypnogram, clock: Clock, hours: float) -> tuple[np.ndarray, np.ndarray]:
    """(bin edges in axis hours, seconds in each state per bin: bins x STATES), on whole clock bins."""
    x = clock.x(hyp.onsets_s)
    first = np.floor(x[0] / hours + 1e-9) * hours
    idx = np.floor((x - first) / hours + 1e-9).astype(int)
    n_bins = int(idx[-1]) + 1
    seconds = np.zeros((n_bins, len(STATES)))
    np.add.at(seconds, (idx, hyp.states.astype(int)), hyp.epoch_s)
    return first + hours * np.arange(n_bins + 1), seconds


def bout_lengths(hyp: Hypnogram) -> dict[str, np.ndarray]:
    """Seconds of every bout, by state."""
    _, durations, states = hyp.bouts()
    return {s: durations[states == i] for i, s in enumerate(STATES)}


def transition_counts(hyp: Hypnogram) -> np.ndarray:
    """How often a bout of state i (row) is followed at once by a bout of state j (column)."""
    onsets, durations, states = hyp.bouts()
    counts = np.zeros((len(STATES), len(STATES)), dtype=int)
    if len(states) > 1:
        contiguous = np.abs(onsets[1:] - (onsets[:-1] + durations[:-1])) < 1e-6
        np.add.at(counts, (states[:-1][contiguous], states[1:][contiguous]), 1)
    return counts


def light_dark_seconds(hyp: Hypnogram, clock: Clock, schedule: LightSchedule | None) -> dict[str, np.ndarray]:
    """Seconds in each state (indexed as STATES) during light and during dark."""
    if schedule is None:
        return {}
    mid = clock.x(hyp.onsets_s + hyp.epoch_s / 2)
    dark = np.zeros(len(hyp), dtype=bool)
    for a, b in schedule.dark_periods(float(mid[0]) - 1, float(mid[-1]) + 1):
        dark |= (mid >= a) & (mid < b)
    out = {}
    for kind, sel in (("light", ~dark), ("dark", dark)):
        out[kind] = np.bincount(hyp.states[sel].astype(int), minlength=len(STATES)) * hyp.epoch_s
    return out


def state_totals(hyp: Hypnogram, clock: Clock, schedule: LightSchedule | None) -> dict[str, dict]:
    """Per state, and for sleep (NREM + REM): seconds, fraction of the recording, bouts and
    their median and mean length, and the fraction of light and of dark time spent in it."""
    total = len(hyp) * hyp.epoch_s
    seconds = np.bincount(hyp.states.astype(int), minlength=len(STATES)) * hyp.epoch_s
    lengths = bout_lengths(hyp)
    ld = light_dark_seconds(hyp, clock, schedule)
    out = {}
    for i, s in enumerate(STATES):
        b = lengths[s]
        out[s] = {"seconds": float(seconds[i]), "fraction": float(seconds[i] / total) if total else 0.0,
                  "bouts": int(len(b)), "median_bout_s": float(np.median(b)) if len(b) else float("nan"),
                  "mean_bout_s": float(np.mean(b)) if len(b) else float("nan")}
        for kind, per_state in ld.items():
            kind_total = per_state.sum()
            out[s][f"{kind}_fraction"] = float(per_state[i] / kind_total) if kind_total else float("nan")
    sleep_idx = [STATES.index("nrem"), STATES.index("rem")]
    sleep_s = float(seconds[sleep_idx].sum())
    out["sleep"] = {"seconds": sleep_s, "fraction": sleep_s / total if total else 0.0,
                    "rem_of_sleep": float(seconds[STATES.index("rem")] / sleep_s) if sleep_s else float("nan")}
    for kind, per_state in ld.items():
        kind_total = per_state.sum()
        out["sleep"][f"{kind}_fraction"] = float(per_state[sleep_idx].sum() / kind_total) if kind_total else float("nan")
    return out
