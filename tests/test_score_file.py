"""`ephys score` on recordings a lab already has (EDF here) and `ephys train` on scored
ones: through the CLI, with the messages a person sees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

mne = pytest.importorskip("mne")
pytest.importorskip("edfio")

STATES = ("wake", "nrem", "rem")


def _band_noise(rng, n, rate, lo, hi):
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, [lo, min(hi, 0.45 * rate)], btype="bandpass", fs=rate, output="sos")
    x = sosfiltfilt(sos, rng.standard_normal(n))
    return x / x.std()


def make_edf(path: Path, *, seed: int, minutes: float = 40, rate: float = 200.0, emg: bool = True,
             gain: float = 1.0) -> Path:
    """A small EEG/EEG/EMG recording with bouts of wake, NREM and REM and its scores
    (`<stem>.tsv`: onset, duration, state). Not the project's synthetic animal: a quick,
    independent one, so these tests check the command, not the generator."""
    rng = np.random.default_rng(seed)
    epoch = 4.0
    n_epochs = int(minutes * 60 / epoch)
    states, t = [], 0
    order = ["wake", "nrem", "rem", "nrem", "wake", "nrem", "nrem", "rem"]
    while t < n_epochs:
        s = order[len(states) % len(order)] if not states or rng.random() < 0.9 else "wake"
        length = {"wake": rng.integers(10, 40), "nrem": rng.integers(20, 60), "rem": rng.integers(10, 25)}[s]
        states.append((s, int(min(length, n_epochs - t))))
        t += length
    labels = np.concatenate([[s] * k for s, k in states])[:n_epochs]
    n_per = int(epoch * rate)
    amp = {"wake": (0.6, 1.0, 1.0), "nrem": (2.5, 0.4, 0.35), "rem": (0.6, 1.8, 0.12)}  # delta, theta, emg
    per_sample = np.repeat(labels, n_per)
    n = len(per_sample)

    d, th, em = (np.array([amp[s][i] for s in per_sample]) for i in range(3))
    uv = 1e-6 * gain
    eeg1 = uv * (40 * d * _band_noise(rng, n, rate, 1, 4) + 15 * th * _band_noise(rng, n, rate, 6, 9)
                 + 8 * _band_noise(rng, n, rate, 10, 40))
    eeg2 = uv * (25 * d * _band_noise(rng, n, rate, 1, 4) + 35 * th * _band_noise(rng, n, rate, 6, 9)
                 + 8 * _band_noise(rng, n, rate, 10, 40))
    data = [eeg1, eeg2]
    names = ["EEG1", "EEG2"]
    if emg:
        data.append(uv * 30 * em * _band_noise(rng, n, rate, 30, 90))
        names.append("EMG")
    info = mne.create_info(names, rate, ["eeg"] * len(names))
    raw = mne.io.RawArray(np.array(data), info, verbose=False)
    mne.export.export_raw(path, raw, fmt="edf", overwrite=True, verbose=False)
    with open(path.with_suffix(".tsv"), "w") as f:
        f.write("onset\tduration\tstate\n")
        onset = 0.0
        for s, k in states:
            f.write(f"{onset:g}\t{k * epoch:g}\t{s}\n")
            onset += k * epoch
    return path


def ephys(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


@pytest.fixture(scope="module")
def animals(tmp_path_factory):
    d = tmp_path_factory.mktemp("edf")
    return [make_edf(d / f"m{i}.edf", seed=i, gain=[1.0, 0.6, 1.7][i]) for i in range(3)]


def test_an_edf_is_scored_in_one_command_and_agrees_with_its_scores(animals, tmp_path):
    edf = animals[0]
    out = tmp_path / "scored"
    r = ephys("score", edf, "--eeg", "EEG1,EEG2", "--emg", "EMG", "--out", out, "--truth", edf.with_suffix(".tsv"))
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    print(result["accuracy"], result["kappa"], result["per_state"])
    assert result["accuracy"] >= 0.9
    assert result["per_state"]["rem"]["f1"] >= 0.8
    for name in ("hypnogram.tsv", "probabilities.tsv", "hypnogram-annot.fif", "summary.json", "review.tsv",
                 "features.tsv", "agreement.json"):
        assert (out / name).stat().st_size > 0, name
    header = (out / "hypnogram.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["onset", "duration", "state", "confidence"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "label-free" and summary["second_pass"]
    assert len(summary["minutes_per_hour"]["nrem"]) == 1  # 40 minutes: one hour row
    annotations = mne.read_annotations(out / "hypnogram-annot.fif")
    assert set(annotations.description) <= {"sleep_wake", "sleep_nrem", "sleep_rem", "sleep_unclassified"}
    # A 200 Hz file works with the default bands: gamma above 100 Hz is left out with a note.
    assert "the high band (80-150 Hz) is left out" in r.stderr


def test_without_an_emg_the_scorer_says_what_it_uses_instead(animals, tmp_path):
    r = ephys("score", animals[0], "--eeg", "EEG1,EEG2", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    assert "no muscle tone: there is no EMG channel and the LFP's rate is too low" in r.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert any("no EMG channel was given" in n for n in summary["notes"])


def test_a_channel_the_file_lacks_is_named_with_the_channels_it_has(animals, tmp_path):
    r = ephys("score", animals[0], "--eeg", "EEG1,EEG3", "--emg", "EMG", "--out", tmp_path / "o")
    assert r.returncode == 2
    assert "has no channel 'EEG3'; its channels are: EEG1, EEG2, EMG" in r.stderr
    assert not (tmp_path / "o" / "hypnogram.tsv").exists()


def test_a_scoring_file_with_an_unknown_state_is_refused_naming_the_line(animals, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("onset\tduration\tstate\n0\t40\twake\n40\t40\tdrowsy\n")
    r = ephys("score", animals[0], "--eeg", "EEG1,EEG2", "--emg", "EMG", "--out", tmp_path / "o", "--truth", bad)
    assert r.returncode == 2
    assert "bad.tsv: line 3" in r.stderr and "state 'drowsy' is not a sleep state" in r.stderr


@pytest.mark.slow
def test_a_model_trained_on_scored_animals_scores_a_new_one_and_refuses_other_features(animals, tmp_path):
    manifest = tmp_path / "manifest.tsv"
    lines = ["source\ttruth\tanimal"] + [f"{p}\t{p.with_suffix('.tsv')}\t{p.stem}" for p in animals[:2]]
    manifest.write_text("\n".join(lines) + "\n")
    model = tmp_path / "lab.json"
    r = ephys("train", manifest, "--out", model, "--name", "test", "--eeg", "EEG1,EEG2", "--emg", "EMG")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["version"].startswith("xgboost-test-")
    ev = report["evaluation"]
    assert ev["method"] == "leave-one-animal-out" and set(ev["per_animal_accuracy"]) == {"m0", "m1"}
    assert ev["accuracy"] >= 0.85, ev
    assert {"kappa", "per_state", "confusion"} <= set(ev)
    header = json.loads(model.read_text())
    assert header["epoch_s"] == 4.0 and "emg_log_power" in header["feature_names"]
    names = header["feature_names"]
    base = [n for n in names if not n.endswith(("_c12s", "_c60s", "_p30s", "_p120s"))]
    assert len(names) == 5 * len(base) and len(base) >= 25  # each base feature normalised, and in 4 windows

    third = animals[2]
    r = ephys("score", third, "--eeg", "EEG1,EEG2", "--emg", "EMG", "--out", tmp_path / "s", "--model", model,
              "--truth", third.with_suffix(".tsv"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["accuracy"] >= 0.85
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["method"] == "xgboost" and summary["model_version"] == report["version"]

    # Without the EMG the features differ: refused, saying what differs.
    r = ephys("score", third, "--eeg", "EEG1,EEG2", "--out", tmp_path / "t", "--model", model)
    assert r.returncode == 2
    assert "was trained on other features than this recording has: the recording lacks" in r.stderr
    assert "emg_log_power" in r.stderr
    # Another epoch length: refused, saying both.
    r = ephys("score", third, "--eeg", "EEG1,EEG2", "--emg", "EMG", "--out", tmp_path / "u", "--model", model,
              "--epoch-s", "5")
    assert r.returncode == 2
    assert "was trained on 4-s epochs, but this recording is scored in 5-s epochs" in r.stderr
