"""A synthetic animal as a few-channel EEG/EMG file at 250-1000 Hz, with its scoring.

What labs often have instead of a 32 kHz Neuralynx folder: an EDF with a cortical and a
hippocampal EEG and a neck EMG. The signals are the same sources as the Neuralynx channels
of that region (pipeline.synth.signals at the file's rate, one channel per region, no dead
or noisy channel), so hours of them take seconds; the scoring truth is one row per bout.
The EDF is written record by record, so memory does not grow with the duration.
"""

from __future__ import annotations

import contextlib
import math
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pipeline.io.atomic import atomic_path
from pipeline.synth.events import _draw_events
from pipeline.synth.hypnogram import STATE_NAMES, _hypnogram
from pipeline.synth.layout import LFP_REGIONS, REGIONS
from pipeline.synth.random_streams import random_stream
from pipeline.synth.signals import _WARMUP_S, _LowRateSignal

DEFAULT_CHANNELS = ("EEG_cortex", "EEG_hippocampus", "EMG")
PHYSICAL_RANGE_UV = 3000.0  # like the Neuralynx input range: ±3 mV in 16 bits, 0.09 µV a step
_BLOCK_RECORDS = 60  # one-second records generated and written at a time


def channel_region(name: str) -> str:
    """The synthetic region a channel name stands for: EMG, or the LFP region it names."""
    low = name.lower()
    if "emg" in low:
        return "emg"
    for region in LFP_REGIONS:
        if region in low:
            return region
    raise ValueError(
        f"channel {name!r}: a synthetic EDF channel must name its region "
        f"({', '.join(LFP_REGIONS)}) or be an EMG, e.g. EEG_hippocampus or EMG."
    )


def bouts_tsv(states: np.ndarray, epoch_s: float, duration_s: float) -> str:
    """The scoring as `onset<TAB>duration<TAB>state`, one row per bout, in seconds from the start."""
    change = np.flatnonzero(np.diff(states)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(states)]])
    lines = ["onset\tduration\tstate\n"]
    for a, b in zip(starts, ends):
        onset = a * epoch_s
        lines.append(f"{onset:g}\t{min(b * epoch_s, duration_s) - onset:g}\t{STATE_NAMES[states[a]]}\n")
    return "".join(lines)


def _edf_header(labels: list[str], rate: int, n_records: int, start: datetime, seed: int) -> bytes:
    """A plain EDF header for n_records one-second records of `rate` samples per signal."""

    def field(value, width: int) -> str:
        text = str(value)
        if len(text) > width:
            raise ValueError(f"EDF header field {text!r} is longer than {width} characters")
        return text.ljust(width)

    ns = len(labels)
    head = "".join([
        field("0", 8),
        field(f"X X X synthetic-mouse-seed{seed}", 80),
        field(f"Startdate {start.strftime('%d-%b-%Y').upper()} X X pipeline.synth", 80),
        field(start.strftime("%d.%m.%y"), 8),
        field(start.strftime("%H.%M.%S"), 8),
        field(256 * (ns + 1), 8),
        field("", 44),
        field(n_records, 8),
        field(1, 8),
        field(ns, 4),
    ])
    per_signal = [
        [field(lab, 16) for lab in labels],
        [field("EMG electrode" if channel_region(lab) == "emg" else "EEG electrode", 80) for lab in labels],
        [field("uV", 8)] * ns,
        [field(f"{-PHYSICAL_RANGE_UV:g}", 8)] * ns,
        [field(f"{PHYSICAL_RANGE_UV:g}", 8)] * ns,
        [field(-32768, 8)] * ns,
        [field(32767, 8)] * ns,
        [field("", 80)] * ns,
        [field(rate, 8)] * ns,
        [field("", 32)] * ns,
    ]
    text = head + "".join("".join(column) for column in per_signal)
    return text.encode("ascii")


def write_synthetic_edf(
    path,
    *,
    hours: float,
    seed: int = 0,
    rate: float = 250.0,
    channels: tuple[str, ...] = DEFAULT_CHANNELS,
    start_time: datetime | None = None,
    epoch_s: float = 4.0,
    truth_path=None,
) -> dict:
    """Write a synthetic animal's EEG/EMG as an EDF, and its scoring as a TSV; return a summary.

    The TSV (default: beside the EDF, `NAME.truth.tsv`) has one row per bout with columns
    onset, duration (seconds from the start) and state (wake, nrem, rem). Each channel is
    named after its region (see channel_region); rate must be a whole number of Hz. The same
    seed is the same animal (hypnogram, gains) as `write_synthetic_recording`'s.
    start_time defaults to 2026-01-05 07:00 UTC, lights on.
    """
    from pipeline.synth.recording import DEFAULT_START

    t_begin = time.perf_counter()
    path = Path(path)
    truth_path = path.with_suffix(".truth.tsv") if truth_path is None else Path(truth_path)
    if not (hours > 0 and math.isfinite(hours)):
        raise ValueError(f"hours={hours!r}: must be a positive number of hours.")
    if not (rate > 0 and float(rate).is_integer()):
        raise ValueError(f"rate={rate!r}: an EDF record of one second needs a whole number of Hz, e.g. 250.")
    if not channels or len(set(channels)) != len(channels):
        raise ValueError(f"channels={channels!r}: give one or more distinct channel names.")
    fs = int(rate)
    regions_of = [channel_region(c) for c in channels]
    layout = {"regions": {r: [c for c, cr in zip(channels, regions_of) if cr == r] for r in REGIONS}, "ignore": []}
    start = DEFAULT_START if start_time is None else start_time
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)

    n_records = int(math.ceil(hours * 3600.0 - 1e-9))
    duration_s = float(n_records)
    n_epochs = int(math.ceil(duration_s / epoch_s - 1e-9))
    states, move, depth = _hypnogram(seed, n_epochs, epoch_s, start)
    events = _draw_events(random_stream(seed, "events"), states, move, epoch_s)
    gen = _LowRateSignal(seed, layout, list(channels), states, move, depth, events, epoch_s, float(fs), faults=False)

    digital_per_volt = 32767.0 / (PHYSICAL_RANGE_UV * 1e-6)
    with contextlib.ExitStack() as outputs:
        tmp_edf = outputs.enter_context(atomic_path(path))
        tmp_truth = outputs.enter_context(atomic_path(truth_path))
        with open(tmp_edf, "wb") as f:
            f.write(_edf_header(list(channels), fs, n_records, start, seed))
            n_warm = int(round(_WARMUP_S * fs))
            gen.block(-n_warm, n_warm)  # filters into steady state before t=0
            for r0 in range(0, n_records, _BLOCK_RECORDS):
                n_rec = min(_BLOCK_RECORDS, n_records - r0)
                x = gen.block(r0 * fs, n_rec * fs) * digital_per_volt
                np.clip(np.rint(x, out=x), -32768, 32767, out=x)
                # EDF records hold each signal's second in turn: (record, signal, sample).
                recs = x.astype("<i2").reshape(len(channels), n_rec, fs).transpose(1, 0, 2)
                f.write(np.ascontiguousarray(recs).tobytes())
        tmp_truth.write_text(bouts_tsv(states, epoch_s, duration_s), encoding="utf-8", newline="")

    fractions = np.bincount(states, minlength=3) / len(states)
    return {
        "edf": str(path),
        "truth": str(truth_path),
        "channels": list(channels),
        "rate": float(fs),
        "duration_s": duration_s,
        "seed": int(seed),
        "state_fractions": {s: float(v) for s, v in zip(STATE_NAMES, fractions)},
        "region_gains": {r: round(g, 4) for r, g in gen.region_gain.items() if r in regions_of},
        "seconds": time.perf_counter() - t_begin,
    }
