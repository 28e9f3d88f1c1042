"""A whole synthetic recording folder: checks the arguments, then draws and writes its parts.

The hypnogram and events are drawn for the whole recording at once (they are cheap); the
signal is generated and written chunk by chunk.
"""

from __future__ import annotations

import contextlib
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from pipeline.io.atomic import atomic_path
from pipeline.io.ncs import SAMPLES_PER_RECORD
from pipeline.synth.events import _draw_events
from pipeline.synth.ground_truth import epoch_labels, hypnogram_tsv, state_fractions, truth_yaml
from pipeline.synth.hypnogram import _hypnogram
from pipeline.synth.layout import channel_map_yaml, channel_names, default_layout
from pipeline.synth.ncs_writer import write_ncs_files
from pipeline.synth.random_streams import random_stream
from pipeline.synth.signals import _LowRateSignal

DEFAULT_START = datetime(2026, 1, 5, 7, 0, 0, tzinfo=timezone.utc)  # lights on at 07:00


def write_synthetic_recording(
    out_dir,
    *,
    duration_s: float,
    n_channels: int = 64,
    sampling_rate: float = 32000.0,
    seed: int = 0,
    start_time: datetime | None = None,
    gap: tuple[float, float] | None = None,
    epoch_s: float = 4.0,
    progress: Callable[[float, float], None] | None = None,
) -> dict:
    """Write a synthetic Neuralynx recording folder with its ground truth; return a summary.

    out_dir gets CSC1.ncs..CSCn.ncs, channel_map.yaml (= default_layout(n)), and
    ground_truth/hypnogram.tsv and ground_truth/truth.yaml. Every file is written under a
    temporary name (pipeline.io.atomic.atomic_path) and renamed only when all are complete;
    on an error or interrupt the temporaries are removed, and those of a killed run are
    cleared by the next run into the folder. The same arguments give the same files byte
    for byte (with the same numpy/scipy on the same kind of machine: floating-point kernels
    may differ).

    duration_s is rounded up to whole 512-sample records. gap=(start_s, length_s) leaves out
    the records that start in that stretch (the timestamps jump) on all channels; hypnogram
    epochs of which at least half is missing are labelled `gap`. progress(done_s, total_s)
    is called after every chunk. start_time defaults to 2026-01-05 07:00 UTC (lights on at
    07:00, off at 19:00 on start_time's clock); a naive datetime is taken as UTC.

    The summary holds the paths (out_dir, ncs_files, channel_map, hypnogram, truth),
    n_channels, sampling_rate, duration_s (as written), n_records (per channel), n_epochs,
    state_fractions (of the epochs outside a gap), dead_channel, noisy_channel and the
    seconds the call took.
    """
    t_begin = time.perf_counter()
    out_dir = Path(out_dir)
    fs = float(sampling_rate)
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"duration_s={duration_s!r}: must be a positive number of seconds.")
    if not (fs > 0 and math.isfinite(fs)):
        raise ValueError(f"sampling_rate={sampling_rate!r}: must be a positive number of Hz.")
    if not (epoch_s > 0):
        raise ValueError(f"epoch_s={epoch_s!r}: must be a positive number of seconds.")
    layout = default_layout(n_channels)
    if out_dir.is_dir():
        existing = sorted(p.name for p in out_dir.iterdir() if p.suffix.lower() == ".ncs")
        if existing:
            raise ValueError(
                f"{out_dir} already contains .ncs files ({', '.join(existing[:3])}"
                f"{', ...' if len(existing) > 3 else ''}): refusing to write a synthetic recording "
                "over or beside another one. Choose an empty or new folder."
            )
    start = DEFAULT_START if start_time is None else start_time
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)

    # Records, the low rate (full rate / R, near 1 kHz) and scoring epochs.
    n_records = int(math.ceil(duration_s * fs / SAMPLES_PER_RECORD - 1e-9))
    total_s = n_records * SAMPLES_PER_RECORD / fs
    R = max(1, int(round(fs / 1000.0)))
    low_fs = fs / R
    n_epochs = int(math.ceil(duration_s / epoch_s - 1e-9))
    n_epochs_sim = max(n_epochs, int(math.ceil(total_s / epoch_s - 1e-9)))

    drop = None
    if gap is not None:
        g_start, g_len = float(gap[0]), float(gap[1])
        k0 = int(math.ceil(g_start * fs / SAMPLES_PER_RECORD - 1e-9))
        k1 = int(math.ceil((g_start + g_len) * fs / SAMPLES_PER_RECORD - 1e-9))
        if not (g_len > 0 and 0 < k0 < k1 < n_records):
            raise ValueError(
                f"gap={gap!r}: the gap must have a positive length and lie inside the "
                f"{total_s:g}-s recording, with at least one record before and after it."
            )
        drop = (k0, k1)

    # States, events and the animal: cheap, for the whole recording at once.
    states, move, depth = _hypnogram(seed, n_epochs_sim, epoch_s, start, n_scored=n_epochs)
    events = _draw_events(random_stream(seed, "events"), states, move, epoch_s)
    names = channel_names(n_channels)
    gen = _LowRateSignal(seed, layout, names, states, move, depth, events, epoch_s, low_fs)

    # Every file is written under a temporary name beside it and renamed only when the
    # whole recording is complete. The .ncs files go last: whatever takes a folder with
    # .ncs files for a recording (the check above, bench/convert.py) then finds the
    # channel map and ground truth as well.
    ncs_paths = [out_dir / f"{name}.ncs" for name in names]
    map_path = out_dir / "channel_map.yaml"
    hyp_path = out_dir / "ground_truth" / "hypnogram.tsv"
    truth_path = out_dir / "ground_truth" / "truth.yaml"
    finals = [hyp_path, truth_path, map_path, *ncs_paths]  # renamed in this order
    with contextlib.ExitStack() as outputs:
        # The stack exits last in, first out, so entering in reverse renames in order.
        tmp = {p: outputs.enter_context(atomic_path(p)) for p in reversed(finals)}
        write_ncs_files(
            [tmp[p] for p in ncs_paths], gen, seed=seed, fs=fs, R=R, n_records=n_records,
            start=start, drop=drop, progress=progress,
        )

        missing_s = gap_info = None
        if drop is not None:
            missing_s = (drop[0] * SAMPLES_PER_RECORD / fs, drop[1] * SAMPLES_PER_RECORD / fs)
            gap_info = {
                "start_s": float(gap[0]),
                "length_s": float(gap[1]),
                "missing_from_s": missing_s[0],
                "missing_to_s": missing_s[1],
                "records_dropped": drop[1] - drop[0],
            }
        onsets, durations, labels = epoch_labels(states, n_epochs, epoch_s, duration_s, missing_s)
        fractions = state_fractions(labels)
        tmp[hyp_path].write_text(hypnogram_tsv(onsets, durations, labels), encoding="utf-8", newline="")
        truth = truth_yaml(
            seed=seed, start=start, fs=fs, duration_s=total_s, epoch_s=epoch_s, n_epochs=n_epochs,
            fractions=fractions, gen=gen, names=names, gap_info=gap_info,
        )
        tmp[truth_path].write_text(truth, encoding="utf-8", newline="")
        tmp[map_path].write_text(channel_map_yaml(layout), encoding="utf-8", newline="")

    seconds = time.perf_counter() - t_begin
    return {
        "out_dir": str(out_dir),
        "ncs_files": [str(p) for p in ncs_paths],
        "channel_map": str(map_path),
        "hypnogram": str(hyp_path),
        "truth": str(truth_path),
        "n_channels": n_channels,
        "sampling_rate": fs,
        "duration_s": total_s,
        "n_records": n_records - (drop[1] - drop[0] if drop else 0),
        "n_epochs": n_epochs,
        "state_fractions": fractions,
        "dead_channel": gen.dead_channel,
        "noisy_channel": gen.noisy_channel,
        "seconds": seconds,
    }
