"""Scoring a recording a lab already has (EDF, FIF, BrainVision ...) in one command:
`ephys score FILE --eeg NAME[,NAME] [--emg NAME] --out DIR`.

The EEG channels given become regions `eeg1`, `eeg2`, ... in the order given: the first
is the slow-wave (cortical) source, the last the theta source (a parietal or
hippocampal electrode; with one EEG channel it is both). The EMG, if given, is the
`emg` region. The same spectrograms, features, models and outputs as the workflow's are
used, so a model trained on files scored this way scores files with the same montage.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from pipeline.dsp.spectrogram import epoch_spectrogram
from pipeline.sleep.features import (EMG_ROLE, LFP_EMG, epoch_features, read_feature_tables, regions_of,
                                     write_feature_table)
from pipeline.sleep.table import FeatureTable, build_table
from pipeline.sleep.staging import load_table
from pipeline.spectral import lfp_emg

log = logging.getLogger(__name__)

CHUNK_S = 3600.0  # spectrograms are made an hour at a time, so memory stays bounded
FEATURES_FILE = "features.tsv"


def eeg_regions(n: int) -> list[str]:
    return [f"eeg{i + 1}" for i in range(n)]


def file_roles(n_eeg: int, has_emg: bool) -> dict[str, str | None]:
    regions = eeg_regions(n_eeg)
    return {"slow_wave": regions[0], "theta": regions[-1], "emg": EMG_ROLE if has_emg else None}


def features_from_signals(signals: dict[str, np.ndarray], rate: float, epoch_s: float, *,
                          emg_region: str | None, time_bandwidth: float = 2.0, fmax: float = 200.0,
                          gaps: list[tuple[float, float]] = ()) -> tuple[np.ndarray, np.ndarray, dict, list[str]]:
    """(onsets, valid, base features, notes) of signals (region -> volts) at `rate`."""
    notes: list[str] = []
    if fmax > rate / 2:
        notes.append(f"the spectrograms stop at {rate / 2:g} Hz, half the sampling rate ({rate:g} Hz)")
        fmax = rate / 2
    n_per = int(round(epoch_s * rate))
    n_total = min(len(x) for x in signals.values())
    n_epochs = n_total // n_per
    chunk_epochs = max(1, int(CHUNK_S // epoch_s))
    regions = sorted(signals)
    brain = [r for r in regions if r != emg_region]
    parts: list[dict] = []
    emg_parts: list[np.ndarray] = []
    for e0 in range(0, n_epochs, chunk_epochs):
        e1 = min(n_epochs, e0 + chunk_epochs)
        s0, s1 = e0 * n_per, e1 * n_per
        powers, freqs = [], None
        for r in regions:
            freqs, p = epoch_spectrogram(np.asarray(signals[r][s0:s1], dtype=np.float64), rate, epoch_s,
                                         time_bandwidth=time_bandwidth, fmax=fmax)
            powers.append(p)
        feats, chunk_notes = epoch_features(freqs, np.stack(powers), regions, emg_region=emg_region)
        notes += [n for n in chunk_notes if n not in notes]
        parts.append(feats)
        est = lfp_emg([np.asarray(signals[r][s0:s1], dtype=np.float64) for r in brain], rate, epoch_s)
        if est is not None:
            emg_parts.append(est)
    base = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
    if emg_parts and len(emg_parts) == len(parts):
        base[LFP_EMG] = np.concatenate(emg_parts)
    onsets = epoch_s * np.arange(n_epochs)
    valid = np.ones(n_epochs, dtype=bool)
    for onset, duration in gaps:
        valid &= ~((onsets < onset + duration) & (onsets + epoch_s > onset))
    return onsets, valid, base, notes


def file_features(path: str | Path, *, eeg: list[str], emg: str | None, epoch_s: float,
                  time_bandwidth: float = 2.0, fmax: float = 200.0):
    """Read a recording MNE can read and compute its base features:
    (onsets, valid, base features, notes, roles, meas_date, duration_s)."""
    from pipeline.sleep.mne_input import open_recording, pick_channels, read_roles, recording_gaps

    raw = open_recording(path)
    picked = pick_channels(raw, eeg, emg)
    regions = eeg_regions(len(picked["eeg"]))
    wanted = {r: [name] for r, name in zip(regions, picked["eeg"])}
    if picked.get("emg"):
        wanted[EMG_ROLE] = list(picked["emg"])
    rate = float(raw.info["sfreq"])
    log.info("reading %s: %s at %g Hz", path, ", ".join(f"{r}={'+'.join(c)}" for r, c in wanted.items()), rate)
    signals = read_roles(raw, wanted)
    roles = file_roles(len(regions), EMG_ROLE in wanted)
    onsets, valid, base, notes = features_from_signals(signals, rate, epoch_s, emg_region=roles["emg"],
                                                       time_bandwidth=time_bandwidth, fmax=fmax,
                                                       gaps=recording_gaps(raw))
    if roles["emg"] is None:
        notes.append("no EMG channel was given (--emg)")
    return onsets, valid, base, notes, roles, raw.info.get("meas_date"), raw.n_times / rate


def results_extra_features(results_dir: Path) -> dict:
    """Features of a workflow results folder from outside the LFP, as its classify step
    used them: head speed, where the recording had video tracking (tracking/head_speed.tsv)."""
    from pipeline import layout
    from pipeline.io.tracking import read_head_speed
    from pipeline.tracking import head_speed_features

    path = results_dir / Path(layout.OUTPUTS["head_speed"]).relative_to(Path(layout.OUTPUTS["recording_json"]).parent)
    return head_speed_features(read_head_speed(path)) if path.is_file() else {}


def load_source(source: str | Path, *, epoch_s: float, eeg: list[str] | None = None, emg: str | None = None,
                time_bandwidth: float = 2.0, fmax: float = 200.0) -> tuple[FeatureTable, dict, dict]:
    """A recording as a model sees it: (feature table, roles, facts such as the animal).

    `source` is a results folder of the workflow (`results/REC`, its feature tables and
    recording.json), a `features.tsv` written by `ephys score`, or a file MNE reads
    (then `eeg` and optionally `emg` name its channels)."""
    from pipeline.channels import ROLES, resolve_roles
    from pipeline.errors import DataError
    from pipeline.io.recording_info import RecordingInfo

    source = Path(source)
    if source.is_dir():
        tables = sorted((source / "features").glob("seg*.tsv"), key=lambda p: int(p.stem[3:]))
        if not tables:
            raise DataError(f"{source} holds no feature tables (features/seg*.tsv): run the workflow on it first")
        info = RecordingInfo.load(source / "recording.json")
        table = load_table(tables, epoch_s, results_extra_features(source))
        roles = resolve_roles((info.channel_map or {}).get("roles") or ROLES, regions_of(table.base))
        return table, roles, {"animal": info.animal, "recording": info.recording_id}
    if source.name.endswith(".tsv"):
        onsets, valid, base = read_feature_tables([source])
        roles_file = source.with_name("roles.json")
        roles = json.loads(roles_file.read_text()) if roles_file.exists() else \
            file_roles(len([r for r in regions_of(base) if r.startswith("eeg")]) or 1, "emg_log_power" in base)
        return build_table(onsets, valid, base, epoch_s), roles, {"animal": None, "recording": source.parent.name}
    if not eeg:
        raise DataError(f"{source}: say which channels are EEG (--eeg NAME[,NAME]) to read a recording file")
    onsets, valid, base, notes, roles, _, _ = file_features(source, eeg=eeg, emg=emg, epoch_s=epoch_s,
                                                            time_bandwidth=time_bandwidth, fmax=fmax)
    return build_table(onsets, valid, base, epoch_s, notes), roles, {"animal": None, "recording": source.stem}


def score_file(path: str | Path, out_dir: str | Path, *, eeg: list[str], emg: str | None = None,
               epoch_s: float = 4.0, model: str | None = None, truth: str | Path | None = None,
               codes: dict | None = None, min_confidence: float = 0.5, min_bout_s: float = 0.0,
               n_review: int = 50, time_bandwidth: float = 2.0, fmax: float = 200.0) -> dict:
    """Score `path` and write hypnogram.tsv, probabilities.tsv, hypnogram-annot.fif,
    summary.json, review.tsv and features.tsv into `out_dir`; with `truth`, also
    agreement.json. Returns {"summary": ..., "agreement": ... or None}."""
    from pipeline.io.atomic import write_json_atomic
    from pipeline.sleep.model import score
    from pipeline.sleep.models import load_model
    from pipeline.sleep.staging import write_outputs

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    onsets, valid, base, notes, roles, meas_date, duration = file_features(
        path, eeg=eeg, emg=emg, epoch_s=epoch_s, time_bandwidth=time_bandwidth, fmax=fmax)
    if len(onsets) == 0:
        from pipeline.errors import DataError

        raise DataError(f"{path} is shorter than one {epoch_s:g}-s epoch: nothing to score")
    write_feature_table(out / FEATURES_FILE, onsets, valid, base)
    write_json_atomic(out / "roles.json", roles)
    table = build_table(onsets, valid, base, epoch_s, notes)
    scored = score(table, load_model(model), roles, min_confidence=min_confidence, min_bout_s=min_bout_s)
    for note in scored.notes:
        log.warning("%s", note)
    outputs = {name: out / fname for name, fname in (
        ("hypnogram", "hypnogram.tsv"), ("probabilities", "probabilities.tsv"),
        ("annotations", "hypnogram-annot.fif"), ("summary", "summary.json"), ("review", "review.tsv"))}
    summary = write_outputs(scored, onsets, epoch_s, outputs, meas_date=meas_date, n_review=n_review,
                            duration_s=duration)
    result = {"summary": summary, "agreement": None}
    if truth is not None:
        from pipeline.sleep.agreement import agreement
        from pipeline.sleep.truth import epoch_labels

        labels = epoch_labels(truth, epoch_s=epoch_s, n_epochs=len(onsets), start_s=float(onsets[0]), codes=codes)
        result["agreement"] = agreement(list(labels), scored.names)
        write_json_atomic(out / "agreement.json", result["agreement"])
    return result
