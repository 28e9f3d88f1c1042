"""Sleep staging: the HMM's mathematics, and label-free accuracy against ground truth."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from pipeline.sleep.hmm import STATES, posteriors, transition_matrix, viterbi


def test_transition_matrix_rows_sum_to_one_and_rem_is_not_entered_from_wake():
    a = transition_matrix(4.0)
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    assert a[STATES.index("wake"), STATES.index("rem")] < 1e-4
    assert np.all(np.diag(a) > 0.9)


def test_viterbi_and_posteriors_against_brute_force():
    rng = np.random.default_rng(0)
    n, k = 6, 3
    log_lik = np.log(rng.dirichlet(np.ones(k), size=n))
    log_trans = np.log(transition_matrix(30.0))
    log_start = np.log(np.full(k, 1 / 3))
    import itertools

    best, best_path = -np.inf, None
    joint = {}
    for path in itertools.product(range(k), repeat=n):
        s = log_start[path[0]] + log_lik[0, path[0]]
        for t in range(1, n):
            s += log_trans[path[t - 1], path[t]] + log_lik[t, path[t]]
        joint[path] = s
        if s > best:
            best, best_path = s, path
    assert tuple(viterbi(log_lik, log_trans, log_start)) == best_path
    total = np.logaddexp.reduce(list(joint.values()))
    expected = np.zeros((n, k))
    for path, s in joint.items():
        for t in range(n):
            expected[t, path[t]] += np.exp(s - total)
    np.testing.assert_allclose(posteriors(log_lik, log_trans, log_start), expected, atol=1e-10)


def score_synthetic(tmp_path: Path, seed: int, duration_s: float, *, without_emg: bool = False):
    """Whole chain in process: synth -> inspect -> convert -> spectrogram -> features -> classify."""
    from pipeline.config import load_config
    from pipeline.convert import convert_segment, inspect_recording
    from pipeline.sleep.features import compute_features
    from pipeline.sleep.staging import classify
    from pipeline.spectral import compute_spectrogram
    from pipeline.synth import write_synthetic_recording

    from conftest import REPO

    cfg = load_config(REPO / "config.yaml")
    cfg["lfp"]["segment_s"] = 600
    raw = tmp_path / f"raw{seed}"
    write_synthetic_recording(raw, duration_s=duration_s, n_channels=10, sampling_rate=2000.0, seed=seed)
    out = tmp_path / f"out{seed}"
    cmap = cfg["channel_maps"]["default"]
    if without_emg:  # the EMG wires left unmapped, as in a lab without them
        import yaml

        own = yaml.safe_load((raw / "channel_map.yaml").read_text())
        own["regions"].pop("emg")
        own["roles"] = {"emg": None}
        (raw / "channel_map.yaml").write_text(yaml.safe_dump(own))
    info = inspect_recording(raw, out / "recording.json", lfp_rate=cfg["lfp"]["rate"], segment_s=cfg["lfp"]["segment_s"],
                             default_channel_map=cmap)
    tables = []
    for seg in info.segments:
        k = seg.index
        convert_segment(info, k, out / "lfp" / f"seg{k}.fif")
        compute_spectrogram(info, out / "lfp" / f"seg{k}.fif", out / "spec" / f"seg{k}.npz",
                            epoch_s=cfg["sleep"]["epoch_s"], **cfg["spectrogram"])
        compute_features(out / "spec" / f"seg{k}.npz", out / "feat" / f"seg{k}.tsv")
        tables.append(out / "feat" / f"seg{k}.tsv")
    sleep = out / "sleep"
    summary = classify(tables, {"hypnogram": sleep / "hypnogram.tsv", "probabilities": sleep / "probabilities.tsv",
                                "annotations": sleep / "hypnogram-annot.fif", "summary": sleep / "summary.json"},
                       epoch_s=4.0, channel_map=info.channel_map)
    with open(raw / "ground_truth" / "hypnogram.tsv") as f:
        truth = {round(float(r["onset_s"]), 3): r["state"] for r in csv.DictReader(f, delimiter="\t")}
    with open(out / "sleep" / "hypnogram.tsv") as f:
        pred = {round(float(r["onset"]), 3): r["state"] for r in csv.DictReader(f, delimiter="\t")}
    common = sorted(set(truth) & set(pred))
    t = np.array([truth[o] for o in common])
    p = np.array([pred[o] for o in common])
    return t, p, summary


def cohen_kappa(t, p):
    labels = sorted(set(t) | set(p))
    po = np.mean(t == p)
    pe = sum(np.mean(t == s) * np.mean(p == s) for s in labels)
    return (po - pe) / (1 - pe)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_label_free_scoring_agrees_with_ground_truth(tmp_path, seed):
    t, p, summary = score_synthetic(tmp_path, seed, 1800.0)
    assert len(t) >= 440
    accuracy = np.mean(t == p)
    kappa = cohen_kappa(t, p)
    recall = {s: np.mean(p[t == s] == s) for s in ("wake", "nrem", "rem")}
    print(f"seed {seed}: accuracy {accuracy:.3f}, kappa {kappa:.3f}, recall {recall}")
    assert accuracy >= 0.85, (accuracy, recall)
    assert kappa >= 0.75
    assert min(recall.values()) >= 0.7, recall
    assert summary["rem_found"]


@pytest.mark.slow
def test_without_an_emg_muscle_tone_comes_from_the_lfp_and_the_summary_says_so(tmp_path):
    t, p, summary = score_synthetic(tmp_path, 0, 1800.0, without_emg=True)
    accuracy = np.mean(t == p)
    print(f"without EMG: accuracy {accuracy:.3f}")
    assert "lfp_emg_c12s" in summary["markers"]
    assert any("muscle tone is estimated from the LFP" in n for n in summary["notes"])
    # Half an hour is too short for the LFP's muscle estimate to split wake off (it falls
    # back to delta, and REM is hard to tell from quiet wake): this guards what there is
    # here (72% measured, 54% before the combined wake marker). Six-hour animals without
    # EMG score 95.5% (bench/sleep.py).
    assert accuracy >= 0.68


def test_a_recording_without_rem_gets_no_rem():
    """Only wake and NREM: NREM must not be split in two to invent REM."""
    from pipeline.sleep.label_free import LabelFreeModel
    from pipeline.sleep.model import score
    from pipeline.sleep.table import build_table

    rng = np.random.default_rng(1)
    truth = np.repeat(np.tile([0, 1], 8), 30)  # bouts of 2 min: wake, NREM, wake, ...
    n = len(truth)
    wake = truth == 0
    feats = {
        "cortex_log_total": rng.normal(-9, 0.1, n),
        "cortex_rel_delta": np.where(wake, 0.3, 0.65) + rng.normal(0, 0.06, n),
        "hippocampus_log_total": rng.normal(-9, 0.1, n),
        "hippocampus_theta_delta": np.where(wake, 0.3, -0.9) + rng.normal(0, 0.15, n),
        "emg_log_power": np.where(wake, -8.8 + rng.normal(0, 0.3, n), -9.6 + rng.normal(0, 0.02, n)),
    }
    table = build_table(4.0 * np.arange(n), np.ones(n, bool), feats, 4.0)
    roles = {"slow_wave": "cortex", "theta": "hippocampus", "emg": "emg"}
    scored = score(table, LabelFreeModel(), roles)
    states, details = scored.states, scored.details
    assert not details["rem_found"]
    assert not np.any(states == STATES.index("rem"))
    assert np.mean(states == truth) > 0.9


def _features(rng, truth):
    """Marker features of epochs in states `truth` (0 wake, 1 NREM, 2 REM), with noise."""
    n = len(truth)
    wake, nrem, rem = truth == 0, truth == 1, truth == 2
    return {
        "cortex_log_total": rng.normal(-9, 0.1, n),
        "cortex_rel_delta": np.select([wake, nrem, rem], [0.3, 0.65, 0.3]) + rng.normal(0, 0.06, n),
        "hippocampus_log_total": rng.normal(-9, 0.1, n),
        "hippocampus_theta_delta": np.select([wake, nrem, rem], [0.3, -0.9, 1.0]) + rng.normal(0, 0.15, n),
        "emg_log_power": np.select([wake, nrem, rem], [-8.8, -9.6, -9.9]) + np.where(wake, rng.normal(0, 0.3, n),
                                                                                    rng.normal(0, 0.03, n)),
    }


def _score(truth, seed=2):
    from pipeline.sleep.label_free import LabelFreeModel
    from pipeline.sleep.model import score
    from pipeline.sleep.table import build_table

    rng = np.random.default_rng(seed)
    n = len(truth)
    table = build_table(4.0 * np.arange(n), np.ones(n, bool), _features(rng, truth), 4.0)
    return score(table, LabelFreeModel(), {"slow_wave": "cortex", "theta": "hippocampus", "emg": "emg"})


def test_a_recording_without_sleep_is_all_wake():
    truth = np.zeros(600, dtype=int)
    scored = _score(truth)
    assert scored.details.get("single_state") == "wake"
    assert np.mean(scored.states == 0) > 0.95


def test_a_recording_of_sleep_with_little_wake_keeps_its_nrem():
    """Three short arousals in two hours of NREM and REM: the muscle split must not carve
    a 'wake' group out of NREM (seen on real data: 88%)."""
    truth = np.ones(1800, dtype=int)
    for start in (300, 900, 1500):
        truth[start:start + 8] = 0  # 32 s arousals
    for start in (500, 1100, 1650):
        truth[start:start + 25] = 2
    scored = _score(truth)
    assert np.mean(scored.states[truth == 1] == 1) > 0.95
    # 1.3% wake is too little to form a group of its own here: the arousals and (through
    # them) the REM bouts are missed, which the overall figure allows for.
    assert np.mean(scored.states == truth) > 0.9


def test_the_summary_says_what_was_not_found_and_what_was_missing(tmp_path):
    from pipeline.sleep.staging import write_outputs

    truth = np.zeros(600, dtype=int)
    scored = _score(truth)
    summary = write_outputs(scored, 4.0 * np.arange(600), 4.0, {"summary": tmp_path / "s.json"}, duration_s=2500.0)
    notes = " | ".join(summary["notes"])
    assert "no NREM was found" in notes and "no REM was found" in notes
    assert "100 s of the recording are not in any epoch" in notes
    assert len(summary["minutes_per_hour"]["wake"]) == 1 and summary["minutes_per_hour"]["wake"][0] == pytest.approx(40.0)


def test_bouts_shorter_than_the_minimum_join_their_longer_neighbour_and_gaps_stay():
    from pipeline.sleep.model import enforce_min_bout

    s = np.array([0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1, 1, 2, 1, 1, -1, -1, 1, 1, 1])
    out = enforce_min_bout(s, 3)
    assert out.tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, 1, 1, 1]
    assert enforce_min_bout(s, 1).tolist() == s.tolist()


def test_transitions_learnt_from_scores_keep_the_default_as_a_prior():
    from pipeline.sleep.hmm import transition_matrix, transitions_from_labels

    labels = np.array([1] * 50 + [2] * 10 + [0] * 20 + [-1] * 3 + [1] * 30)
    a = transitions_from_labels(labels, 4.0)
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    default = transition_matrix(4.0)
    assert a[1, 2] > default[1, 2]  # NREM -> REM seen once in 80 NREM epochs, more than the prior's rate
    assert a[0, 2] < 1e-4  # never seen, and the prior forbids it


def test_a_state_with_few_sure_epochs_is_kept_not_dropped_by_the_second_pass():
    """One short REM bout in half an hour (the demo's recording had one of 100 s): after
    its edges are left out, too few REM epochs remain to teach XGBoost; REM must still be
    scored (the first pass stands), not vanish."""
    truth = np.array([1] * 200 + [2] * 14 + [1] * 61 + [0] * 175)
    scored = _score(truth, seed=4)
    assert np.mean(scored.states[truth == 2] == 2) > 0.8
    assert np.mean(scored.states == truth) > 0.9


def test_quiet_wake_in_the_sleep_group_is_told_from_rem_and_nrem_beside_rem_stays_nrem():
    """Without an EMG the muscle split leaves quiet wake (theta, some muscle tone) among the
    sleep epochs: it must become wake, REM (theta, atonia) stay REM, and NREM whose minute
    of theta is raised by REM beside it stay NREM (its muscle tone is NREM's)."""
    from pipeline.sleep.label_free import split_states

    rng = np.random.default_rng(3)
    n_wake, n_quiet, n_nrem, n_edge, n_rem = 600, 300, 2000, 200, 300
    #            delta        theta         muscle (standardised markers)
    groups = [((-0.8, 0.6), (0.9, 0.5), (4.0, 2.0)),   # active wake
              ((-0.7, 0.6), (0.8, 0.3), (0.6, 0.3)),   # quiet wake
              ((0.3, 0.5), (-0.3, 0.35), (-0.2, 0.3)),  # NREM
              ((0.3, 0.5), (0.5, 0.3), (-0.2, 0.3)),   # NREM beside REM
              ((-0.8, 0.5), (1.4, 0.3), (-0.4, 0.25))]  # REM
    sizes = [n_wake, n_quiet, n_nrem, n_edge, n_rem]
    z = np.vstack([np.column_stack([rng.normal(m, s, k) for m, s in g]) for g, k in zip(groups, sizes)])
    truth = np.repeat([0, 0, 1, 1, 2], sizes)
    labels, found = split_states(z)
    assert found["wake_marker"] == "muscle" and found["rem_found"]
    quiet = slice(n_wake, n_wake + n_quiet)
    edge = slice(n_wake + n_quiet + n_nrem, n_wake + n_quiet + n_nrem + n_edge)
    assert np.mean(labels[quiet] == 0) > 0.8, "quiet wake is wake"
    # 0.35 when all the rest is taken for quiet wake, as without the muscle rule
    assert np.mean(labels[edge] == 1) > 0.6, "NREM beside REM is NREM"
    assert np.mean(labels[truth == 2] == 2) > 0.8, "REM is REM"
    assert np.mean(labels == truth) > 0.9
