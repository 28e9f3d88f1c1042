"""Synthetic stage outputs: what inspect, convert, spectrogram and classify leave behind for
a recording (recording.json, lfp/seg*.json, spectrogram/seg*.npz, sleep/hypnogram.tsv and
summary.json), written directly, without raw data.

The figures are drawn from these files alone, so tests of the figures and the figures
benchmark start here: a day of 64 channels in seconds instead of converting a terabyte.
States follow the synthetic animal's light cycle (pipeline.synth.hypnogram); spectra are
1/f with each state's bands (NREM delta and spindles, theta strongest in REM but present in
wake and NREM, muscle power in the EMG while awake over a heartbeat floor), epoch-to-epoch
variation and 60 Hz line noise.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from pipeline import __version__, layout
from pipeline.io.atomic import atomic_path, write_json_atomic
from pipeline.io.recording_info import ChannelInfo, ChannelQC, GapInfo, RecordingInfo, Segment
from pipeline.sleep.staging import MODEL_VERSION
from pipeline.synth.hypnogram import STATE_NAMES, _hypnogram
from pipeline.synth.layout import default_layout
from pipeline.synth.recording import DEFAULT_START


@dataclass
class StageOutputSpec:
    """What to write; the defaults are a realistic day: 64 channels, four regions."""

    hours: float = 24.0
    n_channels: int = 64
    epoch_s: float = 4.0
    lfp_rate: float = 1000.0
    fmax: float = 200.0
    segment_s: float = 3600.0
    seed: int = 0
    start: datetime = DEFAULT_START
    gaps: list[tuple[float, float]] = field(default_factory=list)  # (start_s, duration_s)
    no_rem: bool = False  # REM epochs become NREM
    no_sleep: bool = False  # every epoch is wake
    missing_regions: tuple[str, ...] = ()  # mapped, but every channel flagged dead: no spectrogram
    recording_id: str = "synthetic"
    animal: str = "synthetic-mouse"


def _states(spec: StageOutputSpec, n_epochs: int) -> np.ndarray:
    states = np.asarray(_hypnogram(spec.seed, n_epochs, spec.epoch_s, spec.start)[0], dtype=np.int8)
    if spec.no_sleep:
        states[:] = STATE_NAMES.index("wake")
    elif spec.no_rem:
        states[states == STATE_NAMES.index("rem")] = STATE_NAMES.index("nrem")
    return states


def _bump(freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    centre, width = (lo + hi) / 2, (hi - lo) / 2
    return np.exp(-0.5 * ((freqs - centre) / width) ** 2)


def _spectra(region: str, freqs: np.ndarray, states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(epochs, freqs) power in V^2/Hz, float32, for one region.

    The states overlap as in real mice (as pipeline.synth.signals does): NREM has some theta,
    REM some delta, wake has theta, every band's power varies from epoch to epoch, and the
    EMG's wake/NREM contrast is moderate over a heartbeat floor.
    """
    wake, nrem, rem = (states == STATE_NAMES.index(s) for s in ("wake", "nrem", "rem"))
    n = len(states)

    def varying(mean_by_state):  # per-epoch band gain: the state's mean, log-normal scatter
        mean = np.select([wake, nrem, rem], mean_by_state)
        return mean * rng.lognormal(0.0, 0.5, n)

    if region == "emg":
        level = np.where(wake, 6.0, np.where(rem, 0.5, 1.0)) * rng.lognormal(0.0, 0.6, n)
        shape = 1e-13 * (1 + 50 * _bump(freqs, 60, 200))
        heartbeat = 0.4e-13 * (1 + 20 * _bump(freqs, 20, 80))
        power = level[:, None] * shape[None, :] + heartbeat[None, :]
    else:
        base = 2e-10 / (1 + freqs) ** 1.6
        theta = 4.0 if region == "hippocampus" else 1.5
        delta = varying([1.5, 5.0, 1.5])
        theta_gain = varying([theta * 0.8, theta * 0.35, theta * 1.3])
        power = base[None, :] * (1 + delta[:, None] * _bump(freqs, 1, 4)[None, :]
                                 + theta_gain[:, None] * _bump(freqs, 6, 9)[None, :])
        power[nrem] *= 1 + 1.5 * _bump(freqs, 10, 15)
        power[wake] *= 1 + 0.8 * _bump(freqs, 30, 80)
    power *= 1 + 20 * (np.abs(freqs - 60) < 0.3)  # line noise
    power *= rng.gamma(3.0, 1 / 3.0, power.shape)  # multitaper estimates scatter like chi-square/6
    return power.astype(np.float32)


def _channels(spec: StageOutputSpec, rng: np.random.Generator) -> tuple[dict, list[ChannelInfo]]:
    lay = default_layout(spec.n_channels)
    channels = []
    for region, names in lay["regions"].items():
        for i, name in enumerate(names):
            dead = region in spec.missing_regions or (region == "hippocampus" and i == 1)
            noisy = region == "cortex" and i == 2 and region not in spec.missing_regions
            rms = 2.0 if dead else (500.0 if noisy else float(rng.uniform(60, 110) if region != "emg" else 20))
            qc = ChannelQC(rms_uv=rms, flat_fraction=0.9 if dead else 0.0, saturated_fraction=0.02 if noisy else 0.0,
                           line_noise_ratio=float(rng.uniform(20, 400)), flag="dead" if dead else
                           ("noisy" if noisy else "ok"))
            channels.append(ChannelInfo(name, region, False, qc))
    channels += [ChannelInfo(name, None, True, None) for name in lay["ignore"]]
    return lay, channels


def write_stage_outputs(results_dir: str | Path, spec: StageOutputSpec) -> dict[str, object]:
    """Write a recording's stage outputs under `results_dir` (laid out as results/REC/);
    return their paths as `ephys figures` takes them."""
    out = Path(results_dir)
    rng = np.random.default_rng(spec.seed)
    duration = spec.hours * 3600.0
    n_epochs = int(duration // spec.epoch_s)
    epochs_per_segment = int(round(spec.segment_s / spec.epoch_s))
    n_segments = max(1, math.ceil(n_epochs / epochs_per_segment))
    lay, channels = _channels(spec, rng)
    states = _states(spec, n_epochs)
    onsets = np.arange(n_epochs) * spec.epoch_s
    valid = np.ones(n_epochs, dtype=bool)
    for g0, g_len in spec.gaps:
        valid &= ~((onsets < g0 + g_len) & (onsets + spec.epoch_s > g0))

    info = _recording_info(spec, lay, channels, duration, n_segments)
    info.save(layout.output_in(out, "recording_json"))
    freqs = np.arange(0, spec.fmax + 1e-9, 1 / spec.epoch_s)
    regions = sorted(r for r in lay["regions"] if r not in spec.missing_regions)
    spectrograms, sidecars = [], []
    for k in range(n_segments):
        sl = slice(k * epochs_per_segment, min(n_epochs, (k + 1) * epochs_per_segment))
        power = np.stack([_spectra(r, freqs, states[sl], rng) for r in regions])
        path = layout.output_in(out, "spectrogram", k)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, freqs=freqs, onsets_s=onsets[sl], regions=np.array(regions), power=power, valid=valid[sl])
        spectrograms.append(path)
        sidecars.append(_sidecar(out, k, info, channels, rng, spec))
    hyp, summary = _write_sleep(out, spec, onsets, states, valid)
    return {"recording_json": layout.output_in(out, "recording_json"), "spectrograms": spectrograms,
            "hypnogram": hyp, "summary": summary, "lfp_qc": sidecars}


def _recording_info(spec, lay, channels, duration, n_segments) -> RecordingInfo:
    seg = spec.segment_s
    return RecordingInfo(
        recording_id=spec.recording_id, animal=spec.animal, format="synthetic stage outputs", raw_path="",
        pipeline_version=__version__, inspected_at=spec.start.isoformat(), start_time=spec.start.isoformat(),
        first_timestamp_us=0, sampling_rate=32000.0, n_samples=int(duration * 32000), duration_s=duration,
        lfp_rate=spec.lfp_rate, n_lfp_samples=int(duration * spec.lfp_rate), decimator={},
        segment_samples=int(seg * spec.lfp_rate),
        segments=[Segment(k, k * seg, min(seg, duration - k * seg)) for k in range(n_segments)],
        channel_map_source="synthetic", channel_map=lay, channels=channels, unmapped_channels=[],
        gaps=[GapInfo(g0, g_len, "all") for g0, g_len in spec.gaps], channels_ending_early={}, files=[])


def _sidecar(out: Path, k: int, info: RecordingInfo, channels, rng, spec) -> Path:
    seg = info.segments[k]
    path = layout.output_in(out, "lfp_qc", k)
    write_json_atomic(path, {
        "segment": k, "start_s": seg.start_s, "duration_s": seg.duration_s,
        "channels": [{"name": c.name, "region": c.region, "bad": c.bad,
                      "lfp_rms_uv": float(c.qc.rms_uv * rng.uniform(0.9, 1.1))} for c in channels if not c.ignored],
        "gaps": [{"start_s": g0, "duration_s": g_len} for g0, g_len in spec.gaps
                 if g0 < seg.start_s + seg.duration_s and g0 + g_len > seg.start_s]})
    return path


def _write_sleep(out: Path, spec: StageOutputSpec, onsets, states, valid) -> tuple[Path, Path]:
    names = [STATE_NAMES[s] if v else "unclassified" for s, v in zip(states, valid)]
    hyp = layout.output_in(out, "hypnogram")
    with atomic_path(hyp) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["onset", "duration", "state", "confidence"])
            for onset, name in zip(onsets, names):
                w.writerow([f"{onset:.3f}", f"{spec.epoch_s:g}", name, "1.000" if name != "unclassified" else "0.000"])
    n = len(names)
    all_states = (*STATE_NAMES, "unclassified")
    changes = [0] + [i for i in range(1, n) if names[i] != names[i - 1]]
    summary = {"method": "label-free", "model_version": MODEL_VERSION, "rem_found": "rem" in names,
               "epoch_s": spec.epoch_s, "n_epochs": n,
               "fractions": {s: names.count(s) / n for s in all_states},
               "bouts": {s: sum(1 for i in changes if names[i] == s) for s in all_states}}
    path = layout.output_in(out, "summary")
    write_json_atomic(path, summary)
    return hyp, path
