"""Tests of the synthetic Neuralynx recording generator (the pipeline.synth package).

Everything is read back through pipeline.io.ncs, the reader the converter uses, so these
tests also check that the synthetic files look like real Cheetah/Pegasus files to it.
Recordings are small (5-12 channels, 2-3 kHz, at most 5 minutes) to keep the file fast.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import signal

from pipeline.io.ncs import HEADER_SIZE, NCS_RECORD_DTYPE, RECORD_SIZE, NcsFile, read_ncs_header
from pipeline.synth import default_layout, hypnogram, signals, write_synthetic_recording

REAL_NCS = Path(__file__).resolve().parents[2] / "shared/data/real-formats/neuralynx-mne-testing-data/LAHCu1.ncs"
# Header keys, in order, of the real Pegasus file above.
REAL_KEYS = [
    "FileType", "FileVersion", "FileUUID", "SessionUUID", "ProbeName", "OriginalFileName",
    "TimeCreated", "TimeClosed", "RecordSize", "ApplicationName", "AcquisitionSystem",
    "ReferenceChannel", "SamplingFrequency", "ADMaxValue", "ADBitVolts", "AcqEntName",
    "NumADChannels", "ADChannel", "InputRange", "InputInverted", "DSPLowCutFilterEnabled",
    "DspLowCutFrequency", "DspLowCutNumTaps", "DspLowCutFilterType", "DSPHighCutFilterEnabled",
    "DspHighCutFrequency", "DspHighCutNumTaps", "DspHighCutFilterType", "DspDelayCompensation",
    "DspFilterDelay_µs",
]
FS = 2000.0
N_CH = 12
DUR = 300.0
EPOCH = 4.0
START = datetime(2026, 1, 5, 7, 0, 0, tzinfo=timezone.utc)


# -- fixtures -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def make_rec(tmp_path_factory):
    """Write (once per argument set) a recording; return (folder, summary)."""
    cache = {}

    def make(seed=0, **kw):
        key = (seed, tuple(sorted(kw.items())))
        if key not in cache:
            kw = {"duration_s": DUR, "n_channels": N_CH, "sampling_rate": FS, **kw}
            out = tmp_path_factory.mktemp(f"seed{seed}") / "session"
            cache[key] = (out, write_synthetic_recording(out, seed=seed, **kw))
        return cache[key]

    return make


def load_truth(out):
    truth = yaml.safe_load((out / "ground_truth" / "truth.yaml").read_text())
    layout = yaml.safe_load((out / "channel_map.yaml").read_text())
    lines = (out / "ground_truth" / "hypnogram.tsv").read_text().splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    return truth, layout, lines[0], rows


def read_volts(out, name, n):
    return NcsFile(out / f"{name}.ncs").read_grid(0, n).astype(np.float64)


# -- layout ---------------------------------------------------------------------------
def test_default_layout_64_channels():
    lay = default_layout(64)
    names = lambda a, b: [f"CSC{i}" for i in range(a, b + 1)]  # noqa: E731
    assert lay == {
        "regions": {
            "cortex": names(1, 20),
            "hippocampus": names(21, 40),
            "thalamus": names(41, 60),
            "emg": names(61, 62),
        },
        "ignore": names(63, 64),
    }


@pytest.mark.parametrize("n", [5, 6, 7, 8, 9, 12, 15, 16, 17, 31, 32, 63, 65, 128])
def test_default_layout_other_sizes(n):
    lay = default_layout(n)
    regions = lay["regions"]
    assert list(regions) == ["cortex", "hippocampus", "thalamus", "emg"]
    ordered = regions["cortex"] + regions["hippocampus"] + regions["thalamus"] + regions["emg"] + lay["ignore"]
    assert ordered == [f"CSC{i}" for i in range(1, n + 1)]  # every channel once, in order
    assert len(regions["emg"]) == (2 if n >= 8 else 1)
    assert len(lay["ignore"]) == (2 if n >= 16 else 0)
    sizes = [len(regions[r]) for r in ("cortex", "hippocampus", "thalamus")]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_default_layout_too_few_channels():
    with pytest.raises(ValueError, match="at least 5"):
        default_layout(4)


# -- file format ----------------------------------------------------------------------
def test_header_is_like_a_real_file(make_rec):
    out, summary = make_rec()
    if REAL_NCS.exists():
        _, real = read_ncs_header(REAL_NCS)
        assert list(real) == REAL_KEYS
    session = set()
    file_uuids = set()
    for i in range(1, N_CH + 1):
        path = out / f"CSC{i}.ncs"
        raw = path.read_bytes()[:HEADER_SIZE]
        text, h = read_ncs_header(path)
        assert list(h) == REAL_KEYS
        assert raw.startswith(b"######## Neuralynx Data File Header\r\n")
        assert b"-DspFilterDelay_\xb5s " in raw  # latin-1 micro sign, as Cheetah writes it
        assert raw[len(text.encode("latin-1")) :] == b"\x00" * (HEADER_SIZE - len(text.encode("latin-1")))
        assert h["FileType"] == "NCS" and h["FileVersion"] == "3.4"
        assert h["RecordSize"] == "1044" and h["ADMaxValue"] == "32767"
        assert h["SamplingFrequency"] == "2000" and float(h["SamplingFrequency"]) == FS
        assert float(h["ADBitVolts"]) == 3000e-6 / 32767
        assert len(h["ADBitVolts"].split(".")[1]) == 24
        assert h["InputRange"] == "3000" and h["InputInverted"] == "True"
        assert h["AcqEntName"] == f"CSC{i}" and h["ADChannel"] == str(i - 1) and h["NumADChannels"] == "1"
        assert h["OriginalFileName"].endswith(f"CSC{i}.ncs")
        assert int(h["DspFilterDelay_µs"]) > 0
        fmt = "%Y/%m/%d %H:%M:%S"
        assert datetime.strptime(h["TimeCreated"], fmt) == START.replace(tzinfo=None)
        closed = datetime.strptime(h["TimeClosed"], fmt)
        assert closed == (START + timedelta(seconds=int(summary["duration_s"]))).replace(tzinfo=None)
        uuid.UUID(h["FileUUID"])
        session.add(uuid.UUID(h["SessionUUID"]))
        file_uuids.add(h["FileUUID"])
        nf = NcsFile(path)
        assert nf.name == f"CSC{i}" and nf.sampling_rate == FS
    assert len(session) == 1 and len(file_uuids) == N_CH


def test_records_and_timestamps(make_rec):
    out, summary = make_rec()
    n_rec = math.ceil(DUR * FS / 512)
    assert summary["n_records"] == n_rec and summary["duration_s"] == n_rec * 512 / FS
    t0 = int(START.timestamp()) * 1_000_000
    expected_ts = t0 + np.rint(np.arange(n_rec) * 512e6 / FS).astype(np.int64)
    for i in (1, 5, N_CH):
        path = out / f"CSC{i}.ncs"
        assert path.stat().st_size == HEADER_SIZE + n_rec * RECORD_SIZE
        recs = np.fromfile(path, dtype=NCS_RECORD_DTYPE, offset=HEADER_SIZE)
        assert RECORD_SIZE == 1044 and recs.size == n_rec
        np.testing.assert_array_equal(recs["timestamp"].astype(np.int64), expected_ts)
        assert np.all(recs["channel"] == i - 1)
        assert np.all(recs["sampling_rate"] == 2000)
        assert np.all(recs["n_valid"] == 512)
        nf = NcsFile(path)
        assert nf.gaps(nf.t0_us, n_rec * 512) == []


def _patch_signal(monkeypatch, func):
    """Replace the low-rate neural signal with func(t_seconds) on every channel."""

    def block(self, j0, n):
        t = (j0 + np.arange(n)) / self.low_fs
        return np.broadcast_to(func(t), (self.n_channels, n)).copy()

    monkeypatch.setattr(signals._LowRateSignal, "block", block)


def test_inverted_storage_and_scale(tmp_path, monkeypatch):
    # A constant +200 µV must be stored as about round(-200e-6 / ADBitVolts) and read back
    # as +200 µV by the reader (which undoes InputInverted).
    _patch_signal(monkeypatch, lambda t: np.full(t.shape, 200e-6))
    out = tmp_path / "rec"
    write_synthetic_recording(out, duration_s=20, n_channels=8, sampling_rate=FS, seed=1)
    truth, layout, _, _ = load_truth(out)
    recs = np.fromfile(out / "CSC2.ncs", dtype=NCS_RECORD_DTYPE, offset=HEADER_SIZE)
    expected_raw = -200e-6 / (3000e-6 / 32767)
    assert abs(np.median(recs["samples"]) - expected_raw) < 5
    medians = [np.median(read_volts(out, f"CSC{i}", 40000)) for i in range(1, 9)]
    assert np.allclose(medians, 200e-6, atol=3e-6)


@pytest.mark.parametrize("fs,duration", [(2000.0, 40.0), (3000.0, 30.0), (30000.0, 20.0)])
def test_upsampling_is_continuous_and_aligned(tmp_path, monkeypatch, fs, duration):
    # A 20 Hz sine made at the low rate must come out at full rate with no delay and no
    # jump at chunk edges (30 kHz: chunks of 465 records; the last chunk ends between
    # low-rate samples). A one-low-sample delay would leave ~60 µV of error.
    amp, f = 500e-6, 20.0
    _patch_signal(monkeypatch, lambda t: amp * np.sin(2 * np.pi * f * t))
    out = tmp_path / "rec"
    write_synthetic_recording(out, duration_s=duration, n_channels=6, sampling_rate=fs, seed=2)
    truth, _, _, _ = load_truth(out)
    n = int(duration * fs)
    expected = amp * np.sin(2 * np.pi * f * np.arange(n) / fs)
    for i in range(1, 7):
        if f"CSC{i}" == truth["noisy_channel"]:
            continue
        resid = read_volts(out, f"CSC{i}", n) - expected
        assert np.sqrt(np.mean(resid**2)) < 15e-6, f"CSC{i}"


def test_real_signal_continuous_at_chunk_edges(make_rec):
    # Filter states and the interpolation carry over between chunks: the step between two
    # samples at a chunk edge is like any other step (a restarted filter would jump).
    out, _ = make_rec()
    truth, layout, _, _ = load_truth(out)
    chunk = 31 * 512  # records per chunk at 2 kHz, as the generator chooses them
    n = int(DUR * FS)
    edges = np.arange(chunk, n, chunk)
    for name in layout["regions"]["cortex"] + layout["regions"]["hippocampus"]:
        if name in (truth["dead_channel"], truth["noisy_channel"]):
            continue
        x = read_volts(out, name, n)
        x = signal.sosfiltfilt(signal.butter(4, 100, fs=FS, output="sos"), x)  # remove white noise
        step = np.abs(np.diff(x))
        assert np.max(step[edges - 1]) < 6 * np.median(step) + 1e-6, name


# -- reproducibility, gaps, atomicity -------------------------------------------------
def test_same_seed_same_bytes_different_seed_different(tmp_path):
    kw = dict(duration_s=30, n_channels=8, sampling_rate=FS)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_synthetic_recording(a, seed=7, **kw)
    write_synthetic_recording(b, seed=7, **kw)
    write_synthetic_recording(c, seed=8, **kw)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 8 + 3
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    for i in range(1, 9):
        data_a = (a / f"CSC{i}.ncs").read_bytes()[HEADER_SIZE:]
        data_c = (c / f"CSC{i}.ncs").read_bytes()[HEADER_SIZE:]
        assert data_a != data_c
    assert (a / "ground_truth/truth.yaml").read_text() != (c / "ground_truth/truth.yaml").read_text()


def test_gap_removes_records(make_rec):
    out, summary = make_rec(seed=3, duration_s=180.0, gap=(60.0, 20.0))
    k0, k1 = math.ceil(60.0 * FS / 512), math.ceil(80.0 * FS / 512)
    n_total = math.ceil(180.0 * FS / 512)
    assert summary["n_records"] == n_total - (k1 - k0)
    for i in (1, 7, N_CH):
        nf = NcsFile(out / f"CSC{i}.ncs")
        assert nf.n_records == n_total - (k1 - k0)
        gaps = nf.gaps(nf.t0_us, n_total * 512)
        assert [(g.start, g.length) for g in gaps] == [(k0 * 512, (k1 - k0) * 512)]
        jump = int(nf.timestamps[k0]) - int(nf.timestamps[k0 - 1])
        assert abs(jump - (k1 - k0 + 1) * 512e6 / FS) <= 1
    truth, _, _, rows = load_truth(out)
    assert truth["gap"]["records_dropped"] == k1 - k0
    miss0, miss1 = k0 * 512 / FS, k1 * 512 / FS
    for onset, duration, state in rows:
        on, du = float(onset), float(duration)
        missing = max(0.0, min(on + du, miss1) - max(on, miss0))
        assert (state == "gap") == (missing >= du / 2), onset
    assert sum(state == "gap" for _, _, state in rows) == 5
    # The gap does not disturb the rest: the hypnogram is that of the same seed without gap.
    nogap_out, _ = make_rec(seed=3, duration_s=180.0)
    _, _, _, nogap_rows = load_truth(nogap_out)
    assert len(rows) == len(nogap_rows)
    assert all(r[2] in ("gap", r0[2]) for r, r0 in zip(rows, nogap_rows))


def test_bad_gap_rejected(tmp_path):
    with pytest.raises(ValueError, match="gap"):
        write_synthetic_recording(tmp_path / "r", duration_s=20, n_channels=5, sampling_rate=FS, gap=(15.0, 10.0))


def test_refuses_folder_with_ncs_files(tmp_path):
    (tmp_path / "CSC1.ncs").write_bytes(b"old data")
    with pytest.raises(ValueError, match="already contains .ncs"):
        write_synthetic_recording(tmp_path, duration_s=10, n_channels=5, sampling_rate=FS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CSC1.ncs"]
    assert (tmp_path / "CSC1.ncs").read_bytes() == b"old data"


FINAL_NAMES = {f"CSC{i}.ncs" for i in range(1, 7)} | {"channel_map.yaml", "hypnogram.tsv", "truth.yaml"}


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_interrupted_run_leaves_nothing_complete_looking(tmp_path, error):
    calls = []
    during = []

    def progress(done, total):
        calls.append(done)
        during.append(sorted(p.name for p in out.rglob("*") if p.is_file()))
        if len(calls) == 2:
            raise error("stopped mid-way")

    out = tmp_path / "rec"
    kw = dict(duration_s=60, n_channels=6, sampling_rate=FS, seed=1)
    with pytest.raises(error):
        write_synthetic_recording(out, progress=progress, **kw)
    # While writing, every file exists only under a temporary name beside its target.
    for names in during:
        assert not FINAL_NAMES & set(names)
        assert len(names) == len(FINAL_NAMES) and all(n.startswith(".") for n in names)
    # Afterwards nothing is left: no file under its final name, no temporary.
    left = [p for p in out.rglob("*") if p.is_file()]
    assert left == []

    # A killed run (no cleanup) leaves temporaries; the next run clears them, is not
    # refused, and writes the same files as a run into a fresh folder.
    for name in ("CSC1.ncs", "channel_map.yaml", "ground_truth/truth.yaml"):
        stale = out / name
        (stale.parent / f".{stale.name}.k1ll3d.tmp").write_bytes(b"half")
    write_synthetic_recording(out, **kw)
    fresh = tmp_path / "fresh"
    write_synthetic_recording(fresh, **kw)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert {Path(f).name for f in files} == FINAL_NAMES and len(files) == len(FINAL_NAMES)
    assert files == sorted(str(p.relative_to(fresh)) for p in fresh.rglob("*") if p.is_file())
    for rel in files:
        assert (out / rel).read_bytes() == (fresh / rel).read_bytes(), rel


def test_progress_reports_every_chunk(tmp_path):
    calls = []
    write_synthetic_recording(tmp_path / "r", duration_s=40, n_channels=5, sampling_rate=FS,
                              progress=lambda d, t: calls.append((d, t)))
    total = math.ceil(40 * FS / 512) * 512 / FS
    assert len(calls) == math.ceil(math.ceil(40 * FS / 512) / 31)
    assert all(t == total for _, t in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == total


# -- ground truth ---------------------------------------------------------------------
def test_ground_truth_files(make_rec):
    out, summary = make_rec()
    truth, layout, header, rows = load_truth(out)
    assert layout == default_layout(N_CH)
    assert header == "onset_s\tduration_s\tstate"
    n_epochs = math.ceil(DUR / EPOCH)
    assert len(rows) == n_epochs == summary["n_epochs"]
    assert [float(r[0]) for r in rows] == [k * EPOCH for k in range(n_epochs)]
    assert all(float(r[1]) == EPOCH for r in rows)
    assert {r[2] for r in rows} <= {"wake", "nrem", "rem"}
    assert truth["seed"] == 0 and truth["line_freq"] == 60 and truth["gap"] is None
    assert datetime.fromisoformat(truth["start_time"]) == START
    lfp = [c for r in ("cortex", "hippocampus", "thalamus") for c in layout["regions"][r]]
    assert truth["dead_channel"] in lfp and truth["noisy_channel"] in lfp
    assert truth["dead_channel"] != truth["noisy_channel"]
    assert set(truth["region_gains"]) == {"cortex", "hippocampus", "thalamus", "emg"}
    assert all(0.5 <= g <= 2.0 for g in truth["region_gains"].values())
    assert all(5 <= a <= 30 for c, a in truth["line_amplitude_uV"].items() if c != truth["dead_channel"])
    fr = {s: sum(r[2] == s for r in rows) / n_epochs for s in ("wake", "nrem", "rem")}
    assert fr == pytest.approx(summary["state_fractions"])
    assert not list(out.rglob("*.partial"))
    assert not list(out.rglob(".*.tmp*"))  # atomic_path's temporaries


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_30_min_state_fractions_are_mouse_like(seed):
    # The 30-minute demo recording: all three states in realistic proportions.
    n = int(1800 / EPOCH)
    states, move, depth = hypnogram._hypnogram(seed, n, EPOCH, START)
    fr = np.bincount(states, minlength=3) / n
    assert 0.35 <= fr[hypnogram.WAKE] <= 0.50
    assert 0.40 <= fr[hypnogram.NREM] <= 0.55
    assert 0.05 <= fr[hypnogram.REM] <= 0.12
    check_rem_follows_nrem([hypnogram.STATE_NAMES[s] for s in states])
    # Bouts: REM bouts last 20 s to 3 min (allowing the recording's ends).
    bouts = bout_lengths(states)
    rem = [d * EPOCH for s, d, inner in bouts if s == hypnogram.REM and inner]
    assert all(20 <= d <= 180 for d in rem)


def bout_lengths(states):
    """(state, epochs, not touching the recording's ends) of every bout."""
    change = np.flatnonzero(np.diff(states)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(states)]])
    return [(states[a], b - a, a > 0 and b < len(states)) for a, b in zip(starts, ends)]


def check_rem_follows_nrem(labels):
    assert labels[0] != "rem"
    for prev, cur in zip(labels, labels[1:]):
        if cur == "rem":
            assert prev in ("nrem", "rem")


def test_long_recording_follows_light_cycle():
    # 24 h from 07:00: much more sleep in the light phase than in the dark phase.
    n = int(86400 / EPOCH)
    states, _, _ = hypnogram._hypnogram(5, n, EPOCH, START)
    light, dark = states[: n // 2], states[n // 2 :]
    sleep = lambda s: np.mean(s != hypnogram.WAKE)  # noqa: E731
    assert 0.5 <= sleep(light) <= 0.8 and 0.15 <= sleep(dark) <= 0.5
    assert sleep(light) - sleep(dark) > 0.15
    check_rem_follows_nrem([hypnogram.STATE_NAMES[s] for s in states])


# -- the signal -----------------------------------------------------------------------
def epoch_band_power(out, names, n_epochs, lo, hi, notch=()):
    """Mean over channels of per-epoch Welch power in [lo, hi] Hz, optionally notched."""
    ep = int(EPOCH * FS)
    powers = []
    for name in names:
        x = read_volts(out, name, n_epochs * ep).reshape(n_epochs, ep)
        f, p = signal.welch(x, fs=FS, nperseg=int(2 * FS), axis=-1)
        sel = (f >= lo) & (f <= hi)
        for line in notch:
            sel &= np.abs(f - line) > 2.0
        powers.append(p[:, sel].sum(axis=1))
    return np.mean(powers, axis=0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_spectral_content_follows_states(make_rec, seed):
    out, _ = make_rec(seed=seed)
    truth, layout, _, rows = load_truth(out)
    states = np.array([r[2] for r in rows])
    check_rem_follows_nrem(list(states))
    for s in ("wake", "nrem", "rem"):
        assert np.sum(states == s) >= 3, f"a 5-minute recording should contain {s}"
    n = len(rows)
    bad = {truth["dead_channel"], truth["noisy_channel"]}
    good = lambda region: [c for c in layout["regions"][region] if c not in bad]  # noqa: E731
    med = lambda v, s: float(np.median(v[states == s]))  # noqa: E731

    # The states overlap as in real mice (d' around 2.5-3, measured on long animals in
    # test_separations_are_those_of_real_mice): in 5 minutes only the direction is certain.
    hip = good("hippocampus")
    theta_delta = epoch_band_power(out, hip, n, 6, 9) / epoch_band_power(out, hip, n, 1, 4)
    assert med(theta_delta, "rem") > 1.5 * med(theta_delta, "nrem")

    delta = epoch_band_power(out, good("cortex"), n, 1, 4)
    assert med(delta, "nrem") > 1.2 * med(delta, "wake")

    # Line noise sits inside 30-200 Hz; leave out its bins, as any EMG analysis would.
    line = truth["line_freq"]
    emg = epoch_band_power(out, layout["regions"]["emg"], n, 30, 200, notch=(line, 3 * line))
    assert med(emg, "wake") > 4 * med(emg, "rem")
    assert med(emg, "nrem") > med(emg, "rem")


def test_channel_amplitudes(make_rec):
    out, _ = make_rec()
    truth, layout, _, _ = load_truth(out)
    n = int(DUR * FS)
    names = [c for chans in layout["regions"].values() for c in chans]
    rms = {c: float(np.sqrt(np.mean(read_volts(out, c, n) ** 2))) for c in names}
    dead, noisy = truth["dead_channel"], truth["noisy_channel"]
    lfp_ok = [v for c, v in rms.items() if c not in (dead, noisy) and c not in layout["regions"]["emg"]]
    assert all(30e-6 < v < 400e-6 for v in lfp_ok)  # LFP of order 50-300 µV
    assert rms[dead] < 10e-6
    assert rms[noisy] > 3 * np.median(lfp_ok)


def test_ignored_channels_carry_only_noise_and_line(tmp_path):
    out = tmp_path / "rec"
    write_synthetic_recording(out, duration_s=32, n_channels=16, sampling_rate=FS, seed=4)
    truth, layout, _, _ = load_truth(out)
    n = int(32 * FS)
    for name in layout["ignore"]:
        x = read_volts(out, name, n)
        f, p = signal.welch(x, fs=FS, nperseg=int(2 * FS))
        df = f[1] - f[0]
        line_power = p[np.abs(f - 60) <= 1].sum() * df
        expected = (truth["line_amplitude_uV"][name] * 1e-6) ** 2 / 2
        assert line_power == pytest.approx(expected, rel=0.2)
        slow = p[(f >= 1) & (f <= 30)].sum() * df
        assert slow < (3e-6) ** 2  # no neural signal below 30 Hz


# -- low-rate EEG/EMG animals and how hard they are -------------------------------------
# Measured like real mouse data by bench/sleep.py; real mice give REM/NREM d' about 2.7 on
# theta/delta, wake/NREM d' about 3 on EMG power, NREM bouts of minutes, 5-12 brief
# arousals per NREM hour.
EDF_HOURS, EDF_RATE, EDF_SEEDS = 2.0, 250.0, (1, 2, 3)


def load_sleep_bench():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "sleep.py"
    spec = importlib.util.spec_from_file_location("sleep_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def edf_animals(tmp_path_factory):
    """(edf, truth, difficulty) of three 2-hour animals at 250 Hz."""
    bench = load_sleep_bench()
    files = bench.generate_animals(tmp_path_factory.mktemp("edf"), hours=EDF_HOURS, animals=len(EDF_SEEDS),
                                   rate=EDF_RATE, first_seed=EDF_SEEDS[0])
    return [(edf, truth, bench.difficulty(edf, truth)) for edf, truth in files]


def test_edf_round_trips_through_mne(edf_animals):
    import mne

    for edf, truth, _ in edf_animals:
        raw = mne.io.read_raw_edf(edf, preload=True, verbose="error")
        assert raw.ch_names == ["EEG_cortex", "EEG_hippocampus", "EMG"]
        assert raw.info["sfreq"] == EDF_RATE
        assert raw.n_times == int(EDF_HOURS * 3600 * EDF_RATE)
        assert raw.info["meas_date"] == START
        rms = np.sqrt(np.mean(raw.get_data() ** 2, axis=1))
        assert all(20e-6 < v < 500e-6 for v in rms[:2]), rms  # EEG of tens to hundreds of µV
        assert 2e-6 < rms[2] < 200e-6, rms  # EMG: a few to tens of µV
        lines = truth.read_text().splitlines()
        assert lines[0] == "onset\tduration\tstate"
        rows = [line.split("\t") for line in lines[1:]]
        onsets, durations = np.array([float(r[0]) for r in rows]), np.array([float(r[1]) for r in rows])
        assert onsets[0] == 0 and np.allclose(onsets[1:], onsets[:-1] + durations[:-1])  # contiguous
        assert onsets[-1] + durations[-1] == EDF_HOURS * 3600
        assert {r[2] for r in rows} == {"wake", "nrem", "rem"}
        assert all(a[2] != b[2] for a, b in zip(rows, rows[1:]))  # one row per bout
        check_rem_follows_nrem([r[2] for r in rows])


def test_separations_are_those_of_real_mice(edf_animals):
    figs = [fig for _, _, fig in edf_animals]
    rem_nrem = [f["d_rem_nrem_theta_delta"] for f in figs]
    emg = [f["d_wake_nrem_emg"] for f in figs]
    # Neither the old 5-8 nor so little that REM is not there.
    assert all(1.8 <= d <= 3.6 for d in rem_nrem), rem_nrem
    assert 2.2 <= np.mean(rem_nrem) <= 3.3, rem_nrem
    # Quiet wake has theta: without EMG, REM and quiet wake hardly separate.
    assert all(abs(f["d_rem_quiet_wake_theta_delta"]) < 1.5 for f in figs), figs
    assert all(2.0 <= d <= 4.0 for d in emg), emg
    assert 2.4 <= np.mean(emg) <= 3.6, emg
    assert all(f["d_nrem_rem_emg"] > 0.5 for f in figs)  # REM atonia, below the NREM tone


def test_bout_structure_is_mouse_like(edf_animals):
    for _, _, fig in edf_animals:
        b = fig["bouts"]
        assert 90 <= b["nrem"]["median_s"] <= 300, b["nrem"]
        assert 45 <= b["rem"]["median_s"] <= 100, b["rem"]
        assert b["rem"]["max_s"] <= 180
        assert 3 <= b["brief_arousals_per_nrem_h"] <= 15, b
        assert 0.04 <= b["fractions"]["rem"] <= 0.14 and 0.35 <= b["fractions"]["nrem"] <= 0.75, b["fractions"]
    # Bouts long enough to matter: NREM of 5+ minutes, wake of 10+ minutes in one of them.
    assert max(fig["bouts"]["nrem"]["max_s"] for _, _, fig in edf_animals) >= 300
    assert max(fig["bouts"]["wake"]["max_s"] for _, _, fig in edf_animals) >= 600


@pytest.mark.parametrize("seed", [1, 2])
def test_day_long_bouts_are_mouse_like(seed):
    # A day's hypnogram (cheap: no signal): REM 4-9 % and NREM 40-56 % of the day, NREM bouts
    # with a tail past 10 minutes, wake bouts from seconds to over half an hour, REM skewed.
    n = int(86400 / EPOCH)
    states, _, _ = hypnogram._hypnogram(seed, n, EPOCH, START)
    fr = np.bincount(states, minlength=3) / n
    assert 0.04 <= fr[hypnogram.REM] <= 0.09 and 0.40 <= fr[hypnogram.NREM] <= 0.56, fr
    bouts = bout_lengths(states)
    dur = {s: np.array([d * EPOCH for st, d, _ in bouts if st == s]) for s in (0, 1, 2)}
    assert dur[hypnogram.NREM].max() >= 600 and 100 <= np.median(dur[hypnogram.NREM]) <= 300
    assert dur[hypnogram.WAKE].min() <= 8 and dur[hypnogram.WAKE].max() >= 1800
    rem = dur[hypnogram.REM]
    assert 55 <= np.median(rem) <= 90 and np.mean(rem) > np.median(rem)  # skewed to long bouts
    assert rem.min() >= 20 and rem.max() <= 180


def test_emg_has_a_heartbeat(edf_animals):
    import mne

    bench = load_sleep_bench()
    for edf, truth, _ in edf_animals:
        x = mne.io.read_raw_edf(edf, preload=True, verbose="error").get_data(picks=["EMG"])[0]
        n = int(EPOCH * EDF_RATE)
        epochs = x[: x.size // n * n].reshape(-1, n)
        states = bench.epoch_states(bench.read_truth(truth), len(epochs))
        # In REM atonia the EMG's power envelope beats at the heart rate (7-10 Hz); line
        # noise is notched out first, or its products with the beat's harmonics show up too.
        b, a = signal.iirnotch(60.0, 10.0, fs=EDF_RATE)
        epochs = signal.filtfilt(b, a, epochs, axis=1)
        for state in ("rem",):
            env = epochs[states == state] ** 2
            f, p = signal.periodogram(env - env.mean(axis=1, keepdims=True), fs=EDF_RATE, axis=1)
            p = p.mean(axis=0)
            sel = (f >= 3) & (f <= 16)
            assert 6.5 <= f[sel][np.argmax(p[sel])] <= 10.5, (edf.name, state)
            assert p[sel].max() > 3 * np.median(p[sel]), (edf.name, state)


def test_seeds_give_animals_with_different_gains(tmp_path):
    from pipeline.synth import write_synthetic_edf

    a = write_synthetic_edf(tmp_path / "a.edf", hours=0.05, seed=11)
    b = write_synthetic_edf(tmp_path / "b.edf", hours=0.05, seed=12)
    again = write_synthetic_edf(tmp_path / "again.edf", hours=0.05, seed=11)
    assert (tmp_path / "a.edf").read_bytes() == (tmp_path / "again.edf").read_bytes()
    assert a["region_gains"] == again["region_gains"] != b["region_gains"]
    # Over many animals the gains span x0.5-2, not a narrow band around 1.
    gains = [g for s in range(40) for g in signals._LowRateSignal(
        s, default_layout(5), [f"CSC{i}" for i in range(1, 6)], np.zeros(3, dtype=np.int8), np.zeros(3),
        np.ones(3), {k: None for k in ("movement", "twitch", "spindle", "ripple", "artefact")}, EPOCH, 1000.0,
    ).region_gain.values()]
    assert 0.5 <= min(gains) < 0.6 and 1.7 < max(gains) <= 2.0


def test_cli_writes_an_edf(tmp_path):
    import mne

    from pipeline.cli import main

    out = tmp_path / "animal.edf"
    assert main(["synth", "--edf", str(out), "--hours", "0.1", "--rate", "1000", "--seed", "4"]) == 0
    raw = mne.io.read_raw_edf(out, verbose="error")
    assert raw.info["sfreq"] == 1000.0 and raw.n_times == 360 * 1000
    assert (tmp_path / "animal.truth.tsv").read_text().startswith("onset\tduration\tstate\n")
