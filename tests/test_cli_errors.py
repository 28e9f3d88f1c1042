"""Whose a failure of an `ephys` stage is, as its one `ERROR:` line and exit status say:
the data's or the configuration's (status 2, a sentence to act on) or a bug (status 3,
"internal error ... tell a maintainer", the traceback in the log). Real sub-commands,
each run once as the workflow runs them."""

from __future__ import annotations

import json

import numpy as np


def error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("ERROR: ")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def test_a_plain_value_error_in_a_stage_is_a_bug_to_report_not_the_data_s(project):
    # A spectrogram laid out as the spectrogram stage writes it, except that its roles
    # entry is not JSON: only a bug writes that, and json.loads raises a ValueError
    # (JSONDecodeError), which must not be passed off as something wrong with the data.
    freqs = np.arange(0.0, 100.0, 0.25)
    spec = project.dir / "seg0.npz"
    np.savez(spec, freqs=freqs, onsets_s=np.arange(3) * 4.0, regions=np.array(["hpc", "emg"]),
             power=np.ones((2, 3, freqs.size)), valid=np.ones(3, dtype=bool),
             roles=np.array(json.dumps({"emg": "emg"})[:-1]))
    out = project.dir / "seg0.tsv"
    proc = project.ephys("features", str(spec), str(out))
    assert proc.returncode == 3, proc.stderr[-3000:]
    line = error_line(proc.stderr)
    assert line.startswith("ERROR: internal error in `ephys features` (JSONDecodeError: "), line
    assert line.endswith("please tell a maintainer."), line
    assert "Traceback" in proc.stderr and "features.py" in proc.stderr, "the log has where it happened"
    assert not out.exists()


def test_a_data_error_and_a_configuration_error_are_sentences_with_status_2(project):
    missing = project.dir / "results" / "rec1" / "recording.json"
    proc = project.ephys("spectrogram", str(missing), "seg0.fif", "seg0.npz")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert error_line(proc.stderr) == f"ERROR: {missing} does not exist: the recording has not been inspected yet."
    assert "Traceback" not in proc.stderr

    proc = project.ephys("inspect", str(project.raw), "recording.json", "--channel-map", "{regions")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert error_line(proc.stderr).startswith("ERROR: --channel-map is not a JSON channel map ("), proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
