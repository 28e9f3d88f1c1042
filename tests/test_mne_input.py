"""Recordings MNE reads, as input to scoring: opened by extension, channels found by name,
one signal per role in volts, gaps from BAD_ annotations; each mistake as a person sees it."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.sleep.mne_input import (annotations_since_start, open_recording, pick_channels, read_recording,
                                      read_roles, recording_gaps)

FORMATS_TEXT = ("supported formats: EDF (.edf), BDF (.bdf), GDF (.gdf), FIF (.fif .fif.gz), BrainVision (.vhdr), "
                "EEGLAB (.set), Neuroscan CNT (.cnt), Persyst (.lay), EGI MFF (.mff)")


def _raw(names=("EEG1", "EEG2", "EMG"), types=("eeg", "eeg", "emg"), sfreq=200.0, seconds=30, first_samp=0):
    info = mne.create_info(list(names), sfreq, list(types))
    rng = np.random.default_rng(1)
    data = rng.normal(0, 50e-6, (len(names), int(seconds * sfreq)))
    raw = mne.io.RawArray(data, info, first_samp=first_samp, verbose="error")
    raw.set_meas_date(1_700_000_000)
    return raw


def _fif(tmp_path, raw, name="rec_raw.fif"):
    path = tmp_path / name
    raw.save(path, verbose="error")
    return path


def _message(call, *args, **kw) -> str:
    with pytest.raises(DataError) as e:
        call(*args, **kw)
    return str(e.value)


# --- opening ----------------------------------------------------------------------

def test_fif_is_opened_without_loading(tmp_path):
    raw = _raw()
    opened = open_recording(_fif(tmp_path, raw))
    assert not opened.preload
    assert opened.ch_names == ["EEG1", "EEG2", "EMG"] and opened.info["sfreq"] == 200.0
    np.testing.assert_array_equal(opened.get_data(), raw.get_data().astype(np.float32))  # FIF stores float32


def test_edf_round_trip_in_volts(tmp_path):
    pytest.importorskip("edfio")  # MNE's EDF writer
    raw = _raw()
    path = tmp_path / "rec.edf"
    mne.export.export_raw(path, raw, verbose="error")
    rec = read_recording(path, eeg=["EEG1"], emg="EMG")
    # EDF holds 16-bit integers over the signal's range: within a few nV of the original.
    span = np.ptp(raw.get_data(), axis=1).max()
    np.testing.assert_allclose(rec.data["eeg"], raw.get_data(picks="EEG1")[0], atol=span / 2 ** 15, rtol=0)
    np.testing.assert_allclose(rec.data["emg"], raw.get_data(picks="EMG")[0], atol=span / 2 ** 15, rtol=0)
    assert rec.sfreq == 200.0 and rec.duration_s == 30.0


def test_unknown_extension(tmp_path):
    path = tmp_path / "rec.xyz"
    path.write_bytes(b"0" * 100)
    assert _message(open_recording, path) == f"{path}: cannot read recordings of this kind (.xyz); {FORMATS_TEXT}"


def test_unreadable_file(tmp_path):
    path = tmp_path / "broken.edf"
    path.write_bytes(b"not an EDF header " * 30)
    assert _message(open_recording, path) == (f"{path}: cannot read it as EDF (Bad EDF file provided.); "
                                              f"{FORMATS_TEXT}")


def test_missing_file(tmp_path):
    path = tmp_path / "absent.edf"
    assert _message(open_recording, path) == f"{path}: the recording does not exist"


# --- channels -----------------------------------------------------------------------

def test_channels_by_exact_then_case_insensitive_name(tmp_path):
    raw = open_recording(_fif(tmp_path, _raw(names=("EEG1", "eeg2", "Emg"))))
    assert pick_channels(raw, ["EEG1", "EEG2"], "emg") == {"eeg": ["EEG1", "eeg2"], "emg": ["Emg"]}
    assert pick_channels(raw, ["eeg2"]) == {"eeg": ["eeg2"]}
    # Exact wins where case alone tells two channels apart.
    raw = open_recording(_fif(tmp_path, _raw(names=("EEG", "eeg", "EMG")), "two_raw.fif"))
    assert pick_channels(raw, ["eeg"], "EMG") == {"eeg": ["eeg"], "emg": ["EMG"]}


def test_missing_channel_lists_the_channels(tmp_path):
    path = _fif(tmp_path, _raw())
    raw = open_recording(path)
    assert _message(pick_channels, raw, ["EEG3"], "EMG") == (
        f"{path} has no channel 'EEG3'; its channels are: EEG1, EEG2, EMG")
    assert _message(pick_channels, raw, ["EEG1"], "EMG2") == (
        f"{path} has no channel 'EMG2'; its channels are: EEG1, EEG2, EMG")


def test_long_channel_lists_are_cut(tmp_path):
    names = [f"CSC{i}" for i in range(1, 101)]
    path = _fif(tmp_path, _raw(names=names, types=["eeg"] * 100, seconds=2))
    msg = _message(pick_channels, open_recording(path), ["EEG"])
    assert msg == (f"{path} has no channel 'EEG'; its channels are: "
                   + ", ".join(names[:60]) + ", ... (100 in all)")


def test_ambiguous_and_repeated_channels(tmp_path):
    path = _fif(tmp_path, _raw(names=("EEG", "eeg", "EMG")))
    raw = open_recording(path)
    assert _message(pick_channels, raw, ["Eeg"]) == (
        f"{path}: the channel name 'Eeg' matches EEG, eeg when case is ignored; give the name exactly")
    assert _message(pick_channels, raw, ["EEG"], "eeg ") == (
        f"{path}: the channel name 'eeg ' matches EEG, eeg when case is ignored; give the name exactly")
    assert _message(pick_channels, raw, ["EMG"], "EMG") == (
        f"{path}: the channel 'EMG' is given both as EEG and as EMG")
    assert _message(pick_channels, raw, ["EEG", "EEG"]) == f"{path}: an EEG channel is given twice (EEG, EEG)"
    assert _message(pick_channels, raw, []) == "name at least one EEG channel (--eeg NAME)"


def test_rate_below_the_minimum(tmp_path):
    path = _fif(tmp_path, _raw(sfreq=64.0))
    assert _message(pick_channels, open_recording(path), ["EEG1"], "EMG") == (
        f"{path} is sampled at 64 Hz; sleep scoring needs at least 100 Hz")
    # 100 Hz itself is enough.
    assert pick_channels(open_recording(_fif(tmp_path, _raw(sfreq=100.0), "ok_raw.fif")), ["EEG1"])


def test_a_channel_that_is_not_a_voltage(tmp_path):
    path = _fif(tmp_path, _raw(names=("EEG1", "STI", "TEMP"), types=("eeg", "stim", "misc")))
    raw = open_recording(path)
    assert _message(read_roles, raw, pick_channels(raw, ["EEG1"], "STI")) == (
        f"{path}: the channel 'STI' is a stim channel (unit: v), not a voltage; choose an EEG or EMG channel")
    assert _message(read_roles, raw, pick_channels(raw, ["TEMP"])) == (
        f"{path}: the channel 'TEMP' is a misc channel (unit: none), not a voltage; choose an EEG or EMG channel")


# --- data -------------------------------------------------------------------------

@pytest.mark.parametrize("chunk_samples", [997, 6000, 10 ** 6])
def test_roles_are_the_mean_of_their_channels_in_volts(tmp_path, chunk_samples):
    raw = open_recording(_fif(tmp_path, _raw()))
    data = read_roles(raw, {"eeg": ["EEG1", "EEG2"], "emg": ["EMG"]}, chunk_samples=chunk_samples)
    whole = raw.get_data()
    assert data["eeg"].dtype == np.float32 and data["eeg"].shape == (6000,)
    np.testing.assert_allclose(data["eeg"], (whole[0] + whole[1]) / 2, rtol=1e-6, atol=1e-12)
    np.testing.assert_array_equal(data["emg"], whole[2].astype(np.float32))
    assert 10e-6 < data["emg"].std() < 100e-6  # volts, not microvolts


def test_gaps_from_bad_annotations_counted_from_the_first_sample(tmp_path):
    raw = _raw(first_samp=1000)  # cropped: the first sample is 5 s after the measurement began
    onsets = np.array([2.0, 2.5, 10.0, 25.0])
    raw.set_annotations(mne.Annotations(onsets + raw.first_time, [1.0, 1.5, 3.0, 0.0],
                                        ["BAD_disconnected", "BAD_muscle", "note", "event"],
                                        orig_time=raw.info["meas_date"]))
    opened = open_recording(_fif(tmp_path, raw))
    np.testing.assert_allclose(annotations_since_start(opened), onsets)
    # MNE cuts annotations to the data when they are set, not when they are appended.
    opened.annotations.append(28.0 + raw.first_time, 5.0, "bad_muscle")
    # The first two overlap: one gap; the last runs past the 30 s recording: cut at its end.
    assert recording_gaps(opened) == [(2.0, 2.0), (28.0, 2.0)]


def test_read_recording(tmp_path):
    raw = _raw(names=("Cortex", "Hippo", "Neck EMG"))
    raw.set_annotations(mne.Annotations([4.0], [2.0], ["BAD_ACQ_SKIP"], orig_time=raw.info["meas_date"]))
    path = _fif(tmp_path, raw)
    rec = read_recording(path, eeg=["cortex", "HIPPO"], emg="neck emg")
    assert rec.channels == {"eeg": ["Cortex", "Hippo"], "emg": ["Neck EMG"]}
    assert rec.gaps == [(4.0, 2.0)] and rec.sfreq  # MNE reads this one twice from a FIF == 200.0 and rec.duration_s == 30.0
    assert rec.meas_date == raw.info["meas_date"]
    assert set(rec.data) == {"eeg", "emg"}
