"""Reading human sleep scores: each format laid on a recording's epochs, and each mistake
refused with the message a lab member sees."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.sleep.truth import epoch_labels, normalise_state, read_intervals, write_intervals


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(path, **kw) -> str:
    kw = {"epoch_s": 4.0, "n_epochs": 10, **kw}
    with pytest.raises(DataError) as e:
        epoch_labels(path, **kw)
    return str(e.value)


# --- formats read correctly ---------------------------------------------------------

def test_bouts_are_laid_on_epochs_by_majority(tmp_path):
    # wake 0-9 s, NREM 9-30 s, REM 30-37 s, nothing after; ten 4 s epochs (40 s).
    path = _write(tmp_path, "bouts.tsv", "onset\tduration\tstate\n0\t9\twake\n9\t21\tnrem\n30\t7\trem\n")
    labels = epoch_labels(path, epoch_s=4.0, n_epochs=10)
    assert labels.tolist() == ["wake", "wake",
                               "nrem",  # 8-12 s: 1 s wake, 3 s NREM
                               "nrem", "nrem", "nrem", "nrem",
                               "unclassified",  # 28-32 s: 2 s NREM, 2 s REM: no majority
                               "rem",
                               "unclassified"]  # 36-40 s: 1 s REM, 3 s not scored


def test_bids_events_with_other_names_and_columns(tmp_path):
    text = ("onset_s\tduration_s\ttrial_type\tscorer\n"
            "8\t8\tSleep stage W\tAB\n"
            "0\t8\tNREM\tAB\n"         # rows need not be in time order
            "16\t8\tsleep_rem\tAB\n"   # this pipeline's own annotation names
            "24\t8\tArtefact\tAB\n")
    path = _write(tmp_path, "sub-01_events.tsv", text)
    assert epoch_labels(path, epoch_s=8.0, n_epochs=4).tolist() == ["nrem", "wake", "rem", "unclassified"]


@pytest.mark.parametrize("label, state", [
    ("W", "wake"), ("Active Wake", "wake"), ("quiet-wake", "wake"), ("AW", "wake"), ("QW", "wake"),
    ("NREM sleep", "nrem"), ("SWS", "nrem"), ("n2", "nrem"), ("Sleep stage 3", "nrem"), ("S", "nrem"),
    ("R", "rem"), ("Paradoxical sleep", "rem"), ("PS", "rem"), ("Sleep stage R", "rem"),
    ("?", "unclassified"), ("Movement time", "unclassified"), ("unscored", "unclassified"),
    ("gap", "unclassified"),
])
def test_state_names(label, state):
    assert normalise_state(label) == state


def test_one_state_per_line_without_header(tmp_path):
    path = _write(tmp_path, "scores.txt", "W\nNR\nR\n?\nwake\n\n")  # a trailing blank line is no epoch
    assert epoch_labels(path, epoch_s=4.0, n_epochs=5).tolist() == ["wake", "nrem", "rem", "unclassified", "wake"]


def test_one_state_per_line_with_header_and_other_columns(tmp_path):
    path = _write(tmp_path, "scores.tsv", "epoch\tstage\n1\tNREM\n2\tREM\n3\tWake\n")
    assert epoch_labels(path, epoch_s=4.0, n_epochs=3).tolist() == ["nrem", "rem", "wake"]


def test_numeric_codes_with_their_meaning(tmp_path):
    path = _write(tmp_path, "sirenia.txt", "1\n2\n3\n2\n")
    assert epoch_labels(path, epoch_s=10.0, n_epochs=4, codes={1: "wake", "2": "NREM", "3": "r"}).tolist() == \
        ["wake", "nrem", "rem", "nrem"]


def test_one_interval_per_epoch_with_a_short_last_epoch(tmp_path):
    # This pipeline's hypnogram and the synthetic ground truth: one row per epoch, the
    # last cut by the end of the recording (here 2.5 s of a 4 s epoch: the majority).
    text = "onset_s\tduration_s\tstate\tconfidence\n0.000\t4\twake\t0.9\n4.000\t4\tgap\t0\n8.000\t2.5\tnrem\t0.8\n"
    path = _write(tmp_path, "hypnogram.tsv", text)
    assert epoch_labels(path, epoch_s=4.0, n_epochs=3).tolist() == ["wake", "unclassified", "nrem"]


def test_start_s_skips_scores_before_the_recording(tmp_path):
    path = _write(tmp_path, "bouts.tsv", "onset\tduration\tstate\n0\t100\twake\n100\t40\tnrem\n")
    assert epoch_labels(path, epoch_s=10.0, n_epochs=4, start_s=100.0).tolist() == ["nrem"] * 4


def test_write_intervals_round_trip(tmp_path):
    path = tmp_path / "out" / "truth.tsv"
    write_intervals(path, [0, 12, 20.5], [12, 8.5, 4], ["W", "nrem", "Paradoxical"])
    assert path.read_text() == "onset\tduration\tstate\n0\t12\twake\n12\t8.5\tnrem\n20.5\t4\trem\n"
    assert not list(path.parent.glob(".*tmp*"))  # written through a temporary, renamed
    iv = read_intervals(path)
    assert iv.onsets.tolist() == [0, 12, 20.5] and iv.durations.tolist() == [12, 8.5, 4]
    assert iv.states == ["wake", "nrem", "rem"]
    labels = epoch_labels(path, epoch_s=4.0, n_epochs=7)
    assert labels.tolist() == ["wake"] * 3 + ["nrem"] * 2 + ["rem", "unclassified"]
    # Written back as one row per epoch, the states come back the same.
    again = tmp_path / "again.tsv"
    write_intervals(again, np.arange(7) * 4.0, [4.0] * 7, labels)
    assert epoch_labels(again, epoch_s=4.0, n_epochs=7).tolist() == labels.tolist()


def _raw(n_seconds=60, sfreq=100.0, first_samp=0):
    import mne

    info = mne.create_info(["EEG1", "EMG"], sfreq, ["eeg", "emg"])
    data = np.random.default_rng(0).normal(0, 20e-6, (2, int(n_seconds * sfreq)))
    raw = mne.io.RawArray(data, info, first_samp=first_samp, verbose="error")
    raw.set_meas_date(1_700_000_000)
    return raw


def test_mne_annotation_file(tmp_path):
    import mne

    annotations = mne.Annotations([0, 20, 40], [20, 20, 20], ["sleep_wake", "sleep_nrem", "sleep_rem"])
    path = tmp_path / "scores-annot.fif"
    annotations.save(path, verbose="error")
    assert epoch_labels(path, epoch_s=10.0, n_epochs=6).tolist() == ["wake"] * 2 + ["nrem"] * 2 + ["rem"] * 2


def test_scores_inside_a_fif_recording_that_was_cropped(tmp_path):
    import mne

    raw = _raw(first_samp=500)  # its first sample is 5 s after the measurement began
    # Onsets from the first sample; events (no duration) and gaps (BAD_) are not scores.
    raw.set_annotations(mne.Annotations(np.array([0, 30, 45, 10]) + raw.first_time, [30, 30, 0, 5],
                                        ["Wake", "NREM", "lights off", "BAD_ACQ_SKIP"],
                                        orig_time=raw.info["meas_date"]))
    path = tmp_path / "rec_raw.fif"
    raw.save(path, verbose="error")
    assert epoch_labels(path, epoch_s=10.0, n_epochs=6).tolist() == ["wake"] * 3 + ["nrem"] * 3


def test_scores_inside_an_edf(tmp_path):
    import mne

    pytest.importorskip("edfio")  # MNE's EDF writer
    raw = _raw()
    raw.set_annotations(mne.Annotations([0, 20, 40], [20, 20, 20], ["W", "N", "R"],
                                        orig_time=raw.info["meas_date"]))
    path = tmp_path / "scored.edf"
    mne.export.export_raw(path, raw, verbose="error")
    assert epoch_labels(path, epoch_s=10.0, n_epochs=6).tolist() == ["wake"] * 2 + ["nrem"] * 2 + ["rem"] * 2


# --- mistakes, as a lab member sees them ---------------------------------------------

def test_unknown_state_names_the_line_and_the_accepted_names(tmp_path):
    path = _write(tmp_path, "t.tsv", "onset\tduration\tstate\n0\t8\twake\n8\t8\tdrowsy\n16\t8\tfoo\n")
    msg = _error(path)
    assert msg.startswith(f"{path}: line 3 '8 8 drowsy': state 'drowsy' is not a sleep state; accepted: "
                          "wake: wake, w, awake, aw, qw, active wake, quiet wake, wakefulness; nrem: nrem, n, ")
    assert "rem: rem, r, rem sleep, paradoxical" in msg and "unclassified: unclassified, unscored" in msg


def test_numeric_labels_need_their_meaning(tmp_path):
    path = _write(tmp_path, "t.txt", "wake\n1\n2\n")
    assert _error(path, n_epochs=3) == (
        f"{path}: line 2 '1': state '1' is a numeric code, and scoring programs number states differently "
        "(1 is wake in some, NREM in others): say what each code means, e.g. codes 1=wake, 2=nrem, 3=rem")


def test_a_code_given_a_wrong_state(tmp_path):
    path = _write(tmp_path, "t.txt", "1\n")
    assert _error(path, n_epochs=1, codes={"1": "asleep"}) == (
        "the code '1' is given the state 'asleep', which is not a sleep state; "
        "accepted: wake, nrem, rem, unclassified")


def test_overlapping_intervals(tmp_path):
    path = _write(tmp_path, "t.tsv", "onset\tduration\tstate\n0\t12\twake\n20\t8\trem\n8\t12\tnrem\n")
    assert _error(path) == (f"{path}: line 4 '8 12 nrem' overlaps line 2 '0 12 wake': it starts at 8 s, "
                            "before that interval ends at 12 s; each moment has one state")


@pytest.mark.parametrize("row, complaint", [
    ("-4\t8\twake", "line 3 '-4 8 wake': the onset -4 is negative"),
    ("8\tabc\twake", "line 3 '8 abc wake': the duration 'abc' is not a number of seconds"),
    ("8\tn/a\twake", "line 3 '8 n/a wake': the duration 'n/a' is not a number of seconds"),
    ("nan\t8\twake", "line 3 'nan 8 wake': the onset 'nan' is not a number of seconds"),
    ("8\t0\twake", "line 3 '8 0 wake': the duration is 0; a scored interval lasts some time"),
    ("8\t8", "line 3 '8 8' has 2 column(s), the header 3 or more"),
])
def test_bad_numbers(tmp_path, row, complaint):
    path = _write(tmp_path, "t.tsv", f"onset\tduration\tstate\n0\t8\twake\n{row}\n16\t8\tfoo\n")
    assert _error(path) == f"{path}: {complaint}"


def test_long_lines_are_shortened_in_messages(tmp_path):
    long_label = "wake with a very long comment that the scorer typed into the state column by mistake"
    path = _write(tmp_path, "t.tsv", f"onset\tduration\tstate\n0\t8\t{long_label}\n")
    msg = _error(path)
    assert msg.startswith(f"{path}: line 2 '0 8 wake with a very long comment that the scorer typed i...': "
                          "state 'wake with a very long comme...' is not a sleep state")


def test_intervals_past_the_end_of_the_recording(tmp_path):
    # The recording is 10 epochs of 4 s: 40 s. Up to one epoch past it is a rounding.
    ok = _write(tmp_path, "ok.tsv", "onset\tduration\tstate\n0\t20\twake\n20\t24\tnrem\n")
    assert epoch_labels(ok, epoch_s=4.0, n_epochs=10)[-1] == "nrem"
    path = _write(tmp_path, "t.tsv", "onset\tduration\tstate\n0\t20\twake\n20\t600\tnrem\n")
    assert _error(path) == (f"{path}: line 3 '20 600 nrem' ends at 620 s, more than one epoch after the "
                            "recording's end (40 s): are these the scores of another recording?")


def test_one_state_per_line_with_another_number_of_epochs(tmp_path):
    path = _write(tmp_path, "t.txt", "wake\n" * 4)
    assert _error(path) == (f"{path} has 4 scores (one per line) but the recording has 10 epochs of 4 s; "
                            "4 scores over the recording's 40 s would be epochs of 10 s: "
                            "score it in 4 s epochs, one line per epoch")
    headed = _write(tmp_path, "h.tsv", "state\n" + "wake\n" * 12)
    assert _error(headed).startswith(f"{headed} has 12 scores (one per line) but the recording has 10 epochs")


def test_epoch_rows_of_another_epoch_length(tmp_path):
    rows = "".join(f"{10 * i}\t10\t{s}\n" for i, s in enumerate(["wake", "wake", "nrem", "rem"]))
    path = _write(tmp_path, "t.tsv", "onset\tduration\tstate\n" + rows)
    assert _error(path) == (f"{path} scores epochs of 10 s but the recording is scored in 4 s epochs: "
                            "score it in 4 s epochs, or score the recording with 10 s epochs")


def test_epoch_rows_off_the_recordings_epochs(tmp_path):
    rows = "".join(f"{2 + 4 * i}\t4\twake\n" for i in range(5))
    path = _write(tmp_path, "t.tsv", "onset\tduration\tstate\n" + rows)
    assert _error(path) == (f"{path}: line 2 '2 4 wake' starts at 2 s, between two of the recording's 4 s "
                            "epochs (which start at 0 s and every 4 s after): the scores are not on the "
                            "recording's epochs")


def test_intervals_shorter_than_an_epoch(tmp_path):
    path = _write(tmp_path, "t.tsv", "onset\tduration\tstate\n0\t12\twake\n12\t2\trem\n14\t20\tnrem\n")
    assert _error(path) == (f"{path}: line 3 '12 2 rem' lasts 2 s, less than one 4 s epoch: the file was "
                            "scored in shorter epochs than the recording; score it in 4 s epochs")


def test_not_a_scoring_table(tmp_path):
    path = _write(tmp_path, "t.tsv", "time\tscore\n0\tW\n")
    assert _error(path) == (f"{path}: line 1 'time score' is not a header of intervals nor one state per line: "
                            "a table of intervals needs the columns onset, duration and state (missing: "
                            "onset or onset_s; duration or duration_s; state or stage or label or description "
                            "or trial_type); one state per epoch is one label per line")


def test_missing_and_empty_files(tmp_path):
    assert _error(tmp_path / "nope.tsv") == f"{tmp_path / 'nope.tsv'}: the scoring file does not exist"
    empty = _write(tmp_path, "empty.tsv", "\n\n")
    assert _error(empty) == f"{empty}: the scoring file is empty"
    header_only = _write(tmp_path, "h.tsv", "onset\tduration\tstate\n")
    assert _error(header_only) == f"{header_only}: the scoring file has a header but no intervals"


def test_annotations_with_an_unknown_state(tmp_path):
    import mne

    path = tmp_path / "scores-annot.fif"
    mne.Annotations([0, 20], [20, 20], ["sleep_wake", "drowsy"]).save(path, verbose="error")
    assert _error(path, epoch_s=10.0, n_epochs=4).startswith(
        f"{path}: annotation 2 'drowsy' at 20 s: state 'drowsy' is not a sleep state; accepted: wake: ")


def test_recording_without_scores(tmp_path):
    path = tmp_path / "rec_raw.fif"
    _raw().save(path, verbose="error")
    assert _error(path) == (f"{path}: the file has no annotation that scores a sleep state "
                            "(only events of no duration, gaps or none at all)")


def test_the_synthetic_recordings_ground_truth_reads_back(tmp_path):
    # ground_truth/hypnogram.tsv as `ephys synth` writes it: one row per epoch, `gap`
    # where the recording is missing, the last epoch cut at the end (here 2 s of 4 s).
    from pipeline.synth.ground_truth import epoch_labels as synth_epochs, hypnogram_tsv

    states = [0, 0, 1, 1, 1, 2, 2, 0, 1, 1]
    onsets, durations, names = synth_epochs(states, 10, 4.0, 38.0, missing_s=(12.0, 20.0))
    path = _write(tmp_path, "hypnogram.tsv", hypnogram_tsv(onsets, durations, names))
    assert epoch_labels(path, epoch_s=4.0, n_epochs=10).tolist() == [
        "wake", "wake", "nrem", "unclassified", "unclassified", "rem", "rem", "wake", "nrem",
        "unclassified"]  # the last epoch: 2 s of NREM is no majority of 4 s
