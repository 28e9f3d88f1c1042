"""A recording MNE can read, as the input of `ephys score FILE --eeg NAME[,NAME] [--emg NAME]`.

The lab's existing EEG/EMG files (EDF, BDF, FIF, BrainVision, ...) skip the Neuralynx
conversion: this module opens one, finds the channels a person named, and hands the
scorer one signal per role in volts, with the recording's gaps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import DataError

# Extension -> the format's name, as a person knows it. All are read by mne.io.read_raw.
FORMATS = {
    ".edf": "EDF",
    ".bdf": "BDF",
    ".gdf": "GDF",
    ".fif": "FIF",
    ".fif.gz": "FIF",
    ".vhdr": "BrainVision",
    ".set": "EEGLAB",
    ".cnt": "Neuroscan CNT",
    ".lay": "Persyst",
    ".mff": "EGI MFF",
}
# Delta (0.5-4 Hz), theta (6-10 Hz) and the EMG's muscle band need at least this rate.
MIN_RATE_HZ = 100.0
# Samples read at once per channel: about 50 MB of float64 for 8 channels.
CHUNK_SAMPLES = 800_000
_LIST_AT_MOST = 60


def _formats_text() -> str:
    names: dict[str, list[str]] = {}
    for ext, name in FORMATS.items():
        names.setdefault(name, []).append(ext)
    return ", ".join(f"{name} ({' '.join(exts)})" for name, exts in names.items())


def _extension(path: Path) -> str | None:
    name = path.name.lower()
    return next((ext for ext in sorted(FORMATS, key=len, reverse=True) if name.endswith(ext)), None)


def open_recording(path: str | os.PathLike):
    """The recording at `path` as an mne.io.Raw, not loaded into memory; the reader is
    chosen by the file's extension."""
    import mne

    path = Path(path)
    ext = _extension(path)
    if ext is None:
        raise DataError(f"{path}: cannot read recordings of this kind ({''.join(path.suffixes) or 'no extension'});"
                        f" supported formats: {_formats_text()}")
    if not path.exists():
        raise DataError(f"{path}: the recording does not exist")
    try:
        return mne.io.read_raw(path, preload=False, verbose="error")
    except Exception as e:  # each reader fails its own way (ValueError, OSError, KeyError...)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: cannot read it as {FORMATS[ext]} ({reason}); supported formats: "
                        f"{_formats_text()}") from None


def _channel_list(names: list[str]) -> str:
    if len(names) <= _LIST_AT_MOST:
        return ", ".join(names)
    return ", ".join(names[:_LIST_AT_MOST]) + f", ... ({len(names)} in all)"


def _find(raw, name: str, path) -> str:
    if name in raw.ch_names:
        return name
    matches = [ch for ch in raw.ch_names if ch.strip().lower() == name.strip().lower()]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise DataError(f"{path}: the channel name '{name}' matches {', '.join(matches)} when case is ignored; "
                        "give the name exactly")
    raise DataError(f"{path} has no channel '{name}'; its channels are: {_channel_list(raw.ch_names)}")


def _source(raw) -> str:
    filenames = getattr(raw, "filenames", None) or [None]
    return str(filenames[0]) if filenames[0] is not None else "the recording"


def pick_channels(raw, eeg: list[str], emg: str | None = None) -> dict[str, list[str]]:
    """The recording's channel names for each role ("eeg", and "emg" if given): a name
    as given if the recording has it, else the one channel that matches ignoring case."""
    path = _source(raw)
    if not eeg:
        raise DataError("name at least one EEG channel (--eeg NAME)")
    roles = {"eeg": [_find(raw, name, path) for name in eeg]}
    if emg is not None:
        roles["emg"] = [_find(raw, emg, path)]
        if roles["emg"][0] in roles["eeg"]:
            raise DataError(f"{path}: the channel '{roles['emg'][0]}' is given both as EEG and as EMG")
    if len(set(roles["eeg"])) != len(roles["eeg"]):
        raise DataError(f"{path}: an EEG channel is given twice ({', '.join(eeg)})")
    sfreq = float(raw.info["sfreq"])
    if sfreq < MIN_RATE_HZ:
        raise DataError(f"{path} is sampled at {sfreq:g} Hz; sleep scoring needs at least {MIN_RATE_HZ:g} Hz")
    return roles


def annotations_since_start(raw) -> np.ndarray:
    """Onsets of the recording's annotations in seconds from its first sample.

    MNE keeps onsets from the measurement date, where the first sample is `first_time`
    seconds later (not 0 when a FIF file was cropped)."""
    onsets = np.asarray(raw.annotations.onset, dtype=float)
    return onsets - raw.first_time if raw.annotations.orig_time is not None else onsets


def recording_gaps(raw) -> list[tuple[float, float]]:
    """(onset, duration) in seconds from the first sample of the recording's BAD_ annotations
    (gaps and stretches marked bad), sorted, merged where they overlap, cut to the recording."""
    length = raw.n_times / raw.info["sfreq"]
    gaps = []
    for onset, duration, description in zip(annotations_since_start(raw), raw.annotations.duration,
                                            raw.annotations.description):
        if not str(description).upper().startswith("BAD"):
            continue
        start, stop = max(0.0, float(onset)), min(length, float(onset + duration))
        if stop > start:
            gaps.append((start, stop))
    # Overlaps merged: MNE reads a FIF's BAD_ACQ_SKIP both as an annotation and as a skip.
    merged: list[list[float]] = []
    for start, stop in sorted(gaps):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return [(start, stop - start) for start, stop in merged]


def read_roles(raw, roles: dict[str, list[str]], *, chunk_samples: int = CHUNK_SAMPLES) -> dict[str, np.ndarray]:
    """One float32 signal in volts per role: the mean of the role's channels. Read in
    chunks, so memory stays at the output plus one chunk."""
    from mne.io.constants import FIFF

    path = _source(raw)
    for names in roles.values():
        for name in names:
            unit = raw.info["chs"][raw.ch_names.index(name)]["unit"]
            kind = raw.get_channel_types([name])[0]
            # MNE gives trigger channels volts too; their numbers are event codes.
            if unit != FIFF.FIFF_UNIT_V or kind == "stim":
                unit_name = str(getattr(unit, "_name", unit)).replace("FIFF_UNIT_", "").lower()
                raise DataError(f"{path}: the channel '{name}' is a {kind} channel (unit: {unit_name}), "
                                "not a voltage; choose an EEG or EMG channel")
    out = {role: np.empty(raw.n_times, dtype=np.float32) for role in roles}
    for start in range(0, raw.n_times, chunk_samples):
        stop = min(raw.n_times, start + chunk_samples)
        for role, names in roles.items():
            block = raw.get_data(picks=names, start=start, stop=stop)
            out[role][start:stop] = block.mean(axis=0)
    return out


@dataclass
class Recording:
    path: Path
    sfreq: float
    channels: dict[str, list[str]]  # role -> the recording's channel names
    data: dict[str, np.ndarray]     # role -> float32 volts, the mean of its channels
    gaps: list[tuple[float, float]]  # (onset, duration) seconds from the first sample
    meas_date: object                # datetime or None

    @property
    def duration_s(self) -> float:
        return len(next(iter(self.data.values()))) / self.sfreq


def read_recording(path: str | os.PathLike, *, eeg: list[str], emg: str | None = None) -> Recording:
    """Open `path`, find its EEG (and EMG) channels, and read one signal per role."""
    raw = open_recording(path)
    roles = pick_channels(raw, eeg, emg)
    return Recording(path=Path(path), sfreq=float(raw.info["sfreq"]), channels=roles,
                     data=read_roles(raw, roles), gaps=recording_gaps(raw), meas_date=raw.info["meas_date"])
