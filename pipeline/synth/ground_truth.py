"""The ground truth of a synthetic recording, which the pipeline's results are checked against.

ground_truth/hypnogram.tsv holds the state of every scoring epoch (`gap` where the
recording is missing); ground_truth/truth.yaml the animal's parameters, the dead and
noisy channel, line noise, the gap and the amplifier's scale.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import yaml

from pipeline.synth.hypnogram import STATE_NAMES
from pipeline.synth.ncs_writer import AD_BIT_VOLTS, INPUT_RANGE_UV
from pipeline.synth.signals import LINE_FREQ, _LowRateSignal


def epoch_labels(states, n_epochs: int, epoch_s: float, duration_s: float, missing_s=None):
    """Onsets, durations and state names of the first n_epochs epochs.

    The last epoch ends at duration_s. With missing_s=(from_s, to_s), an epoch of which
    at least half is missing is labelled `gap`.
    """
    labels = [STATE_NAMES[s] for s in states[:n_epochs]]
    onsets = np.arange(n_epochs) * epoch_s
    durations = np.minimum(epoch_s, duration_s - onsets)
    if missing_s is not None:
        miss0, miss1 = missing_s
        missing = np.clip(np.minimum(onsets + durations, miss1) - np.maximum(onsets, miss0), 0, None)
        for e in np.flatnonzero(missing >= durations / 2):
            labels[e] = "gap"
    return onsets, durations, labels


def hypnogram_tsv(onsets, durations, labels) -> str:
    lines = ["onset_s\tduration_s\tstate\n"]
    lines += [f"{on:.3f}\t{du:.3f}\t{lab}\n" for on, du, lab in zip(onsets, durations, labels)]
    return "".join(lines)


def state_fractions(labels) -> dict[str, float]:
    """Fraction of each state among the epochs outside a gap."""
    scored = [lab for lab in labels if lab != "gap"]
    return {s: (scored.count(s) / len(scored) if scored else 0.0) for s in STATE_NAMES}


def truth_yaml(
    *,
    seed: int,
    start: datetime,
    fs: float,
    duration_s: float,
    epoch_s: float,
    n_epochs: int,
    fractions: dict[str, float],
    gen: _LowRateSignal,
    names: list[str],
    gap_info: dict | None,
) -> str:
    truth = {
        "seed": int(seed),
        "start_time": start.isoformat(),
        "sampling_rate": fs,
        "duration_s": duration_s,
        "epoch_s": float(epoch_s),
        "n_epochs": n_epochs,
        "state_fractions": {k: round(v, 4) for k, v in fractions.items()},
        "dead_channel": gen.dead_channel,
        "noisy_channel": gen.noisy_channel,
        "line_freq": LINE_FREQ,
        "line_amplitude_uV": {n: round(float(a), 2) for n, a in zip(names, gen.line_uv)},
        "region_gains": {r: round(g, 4) for r, g in gen.region_gain.items()},
        "noise_uV": round(gen.noise_uv, 3),
        "gap": gap_info,
        "input_range_uV": INPUT_RANGE_UV,
        "ad_bit_volts": AD_BIT_VOLTS,
        "input_inverted": True,
    }
    return yaml.safe_dump(truth, sort_keys=False)
