"""Head speed from a DeepLabCut CSV: the reader on hand-made files, the speed against a
hand computation, the tracking stage's notes and errors, classify's extra features, and
the synthetic video matching the synthetic recording."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.io.recording_info import RecordingInfo
from pipeline.io.tracking import find_tracking_file, read_dlc_csv, read_head_speed
from pipeline.tracking import compute_head_speed

FPS = 30.0


def write_dlc(path: Path, parts: dict[str, np.ndarray], *, header=("scorer", "bodyparts", "coords")) -> Path:
    """A DeepLabCut CSV: `parts` maps a body part to (frames, 3) x, y, likelihood."""
    names = list(parts)
    n = len(next(iter(parts.values())))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([header[0]] + ["DLC_resnet50_testshuffle1_1000"] * (3 * len(names)))
        w.writerow([header[1]] + [p for p in names for _ in range(3)])
        w.writerow([header[2]] + ["x", "y", "likelihood"] * len(names))
        for i in range(n):
            w.writerow([i] + [f"{v:.6g}" for p in names for v in parts[p][i]])
    return path


def track(x, y, likelihood=0.99) -> np.ndarray:
    x, y = np.asarray(x, float), np.asarray(y, float)
    return np.column_stack([x, y, np.broadcast_to(likelihood, x.shape)])


def fake_info(duration_s: float) -> RecordingInfo:
    """Only what the tracking stage reads of recording.json: the recording's length."""
    info = RecordingInfo.__new__(RecordingInfo)
    info.duration_s, info.recording_id, info.raw_path = duration_s, "rec", "-"
    return info


def head_speed(folder: Path, duration_s: float, **settings):
    return compute_head_speed(fake_info(duration_s), folder, folder / "out" / "head_speed.tsv",
                              folder / "out" / "head_speed.json", epoch_s=4.0,
                              settings={"fps": FPS, **settings})


# -- the reader -----------------------------------------------------------------------------
def test_a_dlc_csv_is_read_part_by_part(tmp_path):
    n = 10
    path = write_dlc(tmp_path / "recDLC_resnet50.csv", {"nose": track(np.arange(n), 2 * np.arange(n), 0.95),
                                                        "tailbase": track(np.full(n, 5.0), np.ones(n), 0.5)})
    table = read_dlc_csv(path)
    assert table.bodyparts == ["nose", "tailbase"] and table.n_frames == n
    assert table.scorer == "DLC_resnet50_testshuffle1_1000"
    np.testing.assert_allclose(table.x[:, 0], np.arange(n))
    np.testing.assert_allclose(table.y[:, 0], 2 * np.arange(n))
    np.testing.assert_allclose(table.likelihood[:, 1], 0.5)


@pytest.mark.parametrize("text, says", [
    ("time,x,y\n0,1,2\n1,2,3\n", "is not a DeepLabCut CSV"),
    ("scorer,a,a,a\nbodyparts,nose,nose,nose\ncoords,x,y\n", "is not a DeepLabCut CSV"),
    ("scorer,a,a,a\nindividuals,m1,m1,m1\nbodyparts,nose,nose,nose\ncoords,x,y,likelihood\n", "multi-animal"),
    ("scorer,a,a,a\nbodyparts,nose,nose,nose\ncoords,x,y,likelihood\n0,1,2\n", "line 4 has 3 columns"),
    ("scorer,a,a,a\nbodyparts,nose,nose,nose\ncoords,x,y,likelihood\n0,1,2,high\n", "not a number"),
])
def test_a_file_that_is_not_a_dlc_csv_is_refused_naming_it(tmp_path, text, says):
    path = tmp_path / "tracking.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=says) as e:
        read_dlc_csv(path)
    assert str(path) in str(e.value)


def test_the_tracking_file_is_found_by_dlc_naming_or_as_tracking_csv(tmp_path):
    assert find_tracking_file(tmp_path) is None
    (tmp_path / "notes.csv").write_text("x")
    assert find_tracking_file(tmp_path) is None
    (tmp_path / "m1DLC_resnet50_sleepJan5shuffle1_100000.csv").write_text("x")
    assert find_tracking_file(tmp_path).name == "m1DLC_resnet50_sleepJan5shuffle1_100000.csv"
    (tmp_path / "m1DLC_resnet50_sleepJan5shuffle1_100000_filtered.csv").write_text("x")
    with pytest.raises(DataError, match="2 DeepLabCut files .* or name it tracking.csv"):
        find_tracking_file(tmp_path)
    (tmp_path / "tracking.csv").write_text("x")
    assert find_tracking_file(tmp_path).name == "tracking.csv"


# -- head speed ----------------------------------------------------------------------------
def test_head_speed_is_the_median_per_epoch_of_a_hand_computed_speed(tmp_path):
    """The nose moves 3 px per frame along x for 8 s, then stands still for 8 s: at 30
    frames/s and 10 px/cm that is 9 cm/s, then 0. One frame's wild jump (a tracker error
    with a high likelihood) changes nothing: the median filter takes it out."""
    n = int(16 * FPS)
    x = np.where(np.arange(n) < 8 * FPS, 3.0 * np.arange(n), 3.0 * 8 * FPS)
    x[50] += 400.0
    write_dlc(tmp_path / "tracking.csv", {"Nose": track(x, np.full(n, 100.0))})
    hs = head_speed(tmp_path, 16.0, px_per_cm=10.0)
    assert hs.unit == "cm/s" and not hs.notes
    np.testing.assert_allclose(hs.onsets, [0, 4, 8, 12])
    np.testing.assert_allclose(hs.speed, [9.0, 9.0, 0.0, 0.0], atol=1e-9)
    written = read_head_speed(tmp_path / "out" / "head_speed.tsv")
    np.testing.assert_allclose(written.speed, hs.speed, atol=1e-3)
    assert written.unit == "cm/s"


def test_without_a_scale_speed_is_in_pixels_and_the_offset_shifts_the_video(tmp_path):
    n = int(8 * FPS)
    write_dlc(tmp_path / "tracking.csv", {"head": track(2.0 * np.arange(n), np.zeros(n))})
    hs = head_speed(tmp_path, 16.0, offset_s=4.0)
    assert hs.unit == "px/s"
    # The video starts 4 s into the recording and lasts 8 s: epochs 1 and 2.
    assert np.isnan(hs.speed[0]) and np.isnan(hs.speed[3])
    np.testing.assert_allclose(hs.speed[1:3], 60.0)


def test_points_below_the_likelihood_threshold_are_left_out(tmp_path):
    """Two head parts: the ears are sure, the nose unsure (and far off) in the second
    epoch; with only the ears then counted the head stays still there. In the last epoch
    nothing is sure: no speed."""
    n = int(12 * FPS)
    nose_lk = np.where(np.arange(n) < 4 * FPS, 0.99, 0.2)
    nose_x = np.where(np.arange(n) < 4 * FPS, 50.0, np.random.default_rng(0).uniform(0, 500, n))
    ear_lk = np.where(np.arange(n) < 8 * FPS, 0.99, 0.1)
    nose_lk[np.arange(n) >= 8 * FPS] = 0.1
    write_dlc(tmp_path / "tracking.csv", {"nose": track(nose_x, np.zeros(n), nose_lk),
                                          "ear_left": track(np.full(n, 40.0), np.zeros(n), ear_lk),
                                          "ear_right": track(np.full(n, 60.0), np.zeros(n), ear_lk)})
    hs = head_speed(tmp_path, 12.0)
    np.testing.assert_allclose(hs.speed[:2], 0.0, atol=1e-9)
    assert np.isnan(hs.speed[2])


def test_a_file_without_head_parts_uses_every_part_and_says_so(tmp_path):
    n = int(4 * FPS)
    write_dlc(tmp_path / "tracking.csv", {"back": track(np.arange(n), np.zeros(n)),
                                          "tailbase": track(np.arange(n) + 10.0, np.zeros(n))})
    hs = head_speed(tmp_path, 4.0)
    np.testing.assert_allclose(hs.speed, [30.0])
    assert any("names no head part" in note and "back, tailbase" in note for note in hs.notes)


def test_no_usable_body_part_is_an_error_listing_the_parts_the_file_has(tmp_path):
    n = 100
    write_dlc(tmp_path / "tracking.csv", {"nose": track(np.zeros(n), np.zeros(n), 0.3),
                                          "tailbase": track(np.zeros(n), np.zeros(n), 0.99)})
    with pytest.raises(DataError, match=r"tracking.csv: no frame .* likelihood >= 0.9 .* the file has nose, tailbase"):
        head_speed(tmp_path, 4.0)


def test_a_video_shorter_than_the_recording_leaves_the_rest_unknown_with_a_note(tmp_path):
    n = int(6 * FPS)
    write_dlc(tmp_path / "tracking.csv", {"nose": track(np.arange(n), np.zeros(n))})
    hs = head_speed(tmp_path, 40.0)
    assert len(hs.speed) == 10 and np.isfinite(hs.speed[:1]).all() and np.isnan(hs.speed[2:]).all()
    assert any("ends 34 s before the recording" in note for note in hs.notes)


def test_the_frame_rate_comes_from_tracking_yaml_else_the_configuration(tmp_path):
    n = int(8 * FPS)
    write_dlc(tmp_path / "tracking.csv", {"nose": track(np.arange(n), np.zeros(n))})
    with pytest.raises(DataError, match="frame rate of tracking.csv is not known: write it into tracking.yaml"):
        head_speed(tmp_path, 8.0, fps=None)
    (tmp_path / "tracking.yaml").write_text("fps: 60\n")
    hs = head_speed(tmp_path, 8.0, fps=None)
    np.testing.assert_allclose(hs.speed[0], 60.0)  # 1 px per frame at 60 frames/s
    (tmp_path / "tracking.yaml").write_text("fps: fast\n")
    with pytest.raises(DataError, match="tracking.yaml: fps must be a positive number"):
        head_speed(tmp_path, 8.0)


# -- classify's extra features ------------------------------------------------------------
def test_head_speed_joins_the_feature_table_without_making_epochs_unscorable(tmp_path):
    from pipeline.sleep.features import write_feature_table
    from pipeline.sleep.staging import load_table

    onsets = 4.0 * np.arange(30)
    rng = np.random.default_rng(1)
    write_feature_table(tmp_path / "seg0.tsv", onsets, np.ones(30, bool),
                        {"cortex_log_total": rng.normal(size=30)})
    speed = rng.uniform(0, 5, 30)
    speed[10:15] = np.nan
    table = load_table([tmp_path / "seg0.tsv"], 4.0, {"head_speed": (onsets[:25], speed[:25])})
    assert "head_speed" in table.names and "head_speed_c60s" in table.names
    assert table.valid.all()
    known = np.r_[speed[:10], speed[15:25]]
    np.testing.assert_allclose(table.base["head_speed"][10:15], np.median(known))
    np.testing.assert_allclose(table.base["head_speed"][25:], np.median(known))
    assert any("head_speed is not known in 10 epochs" in n for n in table.notes)


# -- the synthetic video -----------------------------------------------------------------
def test_the_synthetic_video_moves_the_head_in_active_wake_only_and_matches_the_recording(synthetic_recording,
                                                                                          tmp_path):
    from pipeline.synth.tracking import states_and_movement, write_synthetic_tracking

    states, _ = states_and_movement(duration_s=180, sampling_rate=2000.0, seed=3, start_time=None, epoch_s=4.0)
    with open(synthetic_recording / "ground_truth" / "hypnogram.tsv", encoding="utf-8") as f:
        truth = [row["state"] for row in csv.DictReader(f, delimiter="\t")]
    assert [("wake", "nrem", "rem")[s] for s in states[:len(truth)]] == truth

    made = write_synthetic_tracking(tmp_path, duration_s=180, sampling_rate=2000.0, seed=3)
    hs = head_speed(tmp_path, 180.0, px_per_cm=made["px_per_cm"])
    want = made["epoch_speed_cm_s"][:len(hs.speed)]
    moving, asleep = want > 1.5, np.asarray(states[:len(hs.speed)]) > 0
    assert moving.any() and asleep.any()
    np.testing.assert_allclose(hs.speed[moving], want[moving], rtol=0.15)
    assert np.all(hs.speed[asleep] < 1.0)  # jitter only


def test_training_reads_a_results_folders_head_speed_as_its_classify_step_did(tmp_path):
    """`ephys train` on workflow results: a recording with video tracking gives the model
    the head speed features classify scored it with; one without gives none."""
    from pipeline import layout
    from pipeline.io.tracking import write_head_speed
    from pipeline.sleep.features import compute_features
    from pipeline.sleep.score_file import load_source
    from pipeline.synth.stage_outputs import StageOutputSpec, write_stage_outputs

    out = tmp_path / "rec1"
    paths = write_stage_outputs(out, StageOutputSpec(hours=0.5, n_channels=8, segment_s=900, seed=1))
    for k, spec_npz in enumerate(paths["spectrograms"]):
        compute_features(spec_npz, layout.output_in(out, "features", k))
    table, _, _ = load_source(out, epoch_s=4.0)
    assert not any(n.startswith("head_") for n in table.names)

    onsets = 4.0 * np.arange(450)
    speed = np.where(onsets < 900, 6.0, 0.3)
    write_head_speed(layout.output_in(out, "head_speed"), layout.output_in(out, "head_speed_json"), onsets, 4.0,
                     speed, {"unit": "cm/s"})
    table, _, _ = load_source(out, epoch_s=4.0)
    assert {"head_speed", "head_log_speed"} <= set(table.base)
    assert np.allclose(table.base["head_speed"], speed[: len(table)])
