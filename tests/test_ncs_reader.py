"""Tests of the Neuralynx .ncs reader (pipeline.io.ncs) and the folder reader (pipeline.io.neuralynx).

Reference values come from outside the code under test: the vendor's own converter
(Nlx2MatCSC, the .mat file next to every real .ncs), the data set's README (where the
gaps were cut), neo's independent NeuralynxRawIO, and small synthetic files written here
record by record.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.dsp.fir_kernel import block_rows
from pipeline.errors import RawDataError
from pipeline.io.ncs import HEADER_SIZE, NCS_RECORD_DTYPE, Gap, NcsFile, format_ncs_header
from pipeline.io.raw import open_recording
from pipeline.io.recording import RawRecording, RecordingGap

REAL = Path(__file__).resolve().parents[2] / "shared/data/real-formats/neuralynx-mne-testing-data"
REAL_NCS = sorted(p.name for p in REAL.glob("*.ncs")) if REAL.is_dir() else []
_NO_REAL = f"real Neuralynx test data not found at {REAL}"
GAP_FREE = [n for n in REAL_NCS if "gaps" not in n]
GAP_FILES = [n for n in REAL_NCS if "gaps" in n]

# From the data set's README: Nlx2MatCSC/Mat2NlxCSC were used to mark the last
# 100, 7 and 23 samples of (MATLAB, 1-based) records 10, 16 and 21 invalid.
README_GAP_RECORDS = (10, 16, 21)
README_GAP_SIZES = (100, 7, 23)
SAMPLES_PER_RECORD = 512


def _real_params(names):
    if names:
        return names
    return [pytest.param(None, marks=pytest.mark.skip(reason=_NO_REAL))]


@pytest.fixture
def real_dir() -> Path:
    if not REAL.is_dir():
        pytest.skip(_NO_REAL)
    return REAL


def load_mat(path: Path) -> dict:
    sio = pytest.importorskip("scipy.io")
    m = sio.loadmat(path)
    header = {}
    for cell in m["Header"].ravel():
        line = str(cell[0]) if cell.size else ""
        match = re.match(r"^-(\S+)\s*(.*)$", line.strip())
        if match:
            header[match.group(1)] = match.group(2).strip().strip('"').strip()
    return {
        "timestamps": m["Timestamps"].ravel(),
        "channels": m["ChannelNumbers"].ravel(),
        "rates": m["SampleFrequencies"].ravel(),
        "n_valid": m["NumberOfValidSamples"].ravel(),
        "samples": m["Samples"],  # 512 x records
        "header": header,
    }


def mat_valid_stream(mat: dict) -> np.ndarray:
    """The valid samples of every record, in file order (vendor's view of the data)."""
    s = mat["samples"]
    return np.concatenate([s[: int(nv), r] for r, nv in enumerate(mat["n_valid"])]).astype(np.int16)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------
# A writer for small synthetic .ncs files (independent of pipeline.synth).
# --------------------------------------------------------------------------------------
def write_ncs(
    path: Path,
    n_records: int = 4,
    *,
    rate: float = 2000,
    channel: int = 3,
    name: str | None = None,
    ad_bit_volts: object = 1e-7,
    inverted: bool = False,
    t0_us: int = 1_000_000_000,
    samples: np.ndarray | None = None,
    n_valid: np.ndarray | None = None,
    timestamps: np.ndarray | None = None,
    channels: np.ndarray | None = None,
    rates: np.ndarray | None = None,
    header: dict | None = None,
    omit: tuple[str, ...] = (),
) -> Path:
    """Write a valid .ncs of `n_records` full records; keyword arguments break it on purpose."""
    fields = {
        "FileType": "NCS",
        "FileVersion": "3.4",
        "RecordSize": NCS_RECORD_DTYPE.itemsize,
        "SamplingFrequency": f"{rate:g}",
        "ADMaxValue": 32767,
        "ADBitVolts": ad_bit_volts if isinstance(ad_bit_volts, str) else repr(float(ad_bit_volts)),
        "AcqEntName": name or path.stem,
        "InputInverted": inverted,
        "TimeCreated": "2024/01/02 03:04:05",
    }
    fields.update(header or {})
    for key in omit:
        fields.pop(key, None)
    rec = np.zeros(n_records, dtype=NCS_RECORD_DTYPE)
    if timestamps is None:
        timestamps = t0_us + np.round(np.arange(n_records) * SAMPLES_PER_RECORD * 1e6 / rate).astype(np.int64)
    rec["timestamp"] = timestamps
    rec["channel"] = channel if channels is None else channels
    rec["sampling_rate"] = round(rate) if rates is None else rates
    rec["n_valid"] = SAMPLES_PER_RECORD if n_valid is None else n_valid
    if samples is None:
        k = np.arange(n_records * SAMPLES_PER_RECORD, dtype=np.int64)
        samples = ((k * 37 + channel * 1013) % 20001 - 10000).astype(np.int16)
    rec["samples"] = np.asarray(samples, dtype=np.int16).reshape(n_records, SAMPLES_PER_RECORD)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(format_ncs_header(fields))
        f.write(rec.tobytes())
    return path


def test_writer_roundtrip(tmp_path):
    """The test helper itself writes files the reader accepts, with the values given."""
    samples = np.arange(3 * 512, dtype=np.int16) - 700
    p = write_ncs(tmp_path / "CSC7.ncs", 3, channel=7, samples=samples, ad_bit_volts=2e-7)
    f = NcsFile(p)
    assert (f.n_records, f.channel_number, f.sampling_rate, f.name) == (3, 7, 2000.0, "CSC7")
    assert np.array_equal(f.read_stream(0, 3 * 512), samples)
    assert f.path.stat().st_size == HEADER_SIZE + 3 * NCS_RECORD_DTYPE.itemsize


# --------------------------------------------------------------------------------------
# Real files against the vendor's .mat export
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", _real_params(REAL_NCS))
def test_real_file_matches_vendor_mat(name):
    path = REAL / name
    mat_path = path.with_suffix(".mat")
    assert mat_path.is_file(), f"{mat_path} missing: every .ncs of the data set has a .mat"
    mat = load_mat(mat_path)
    f = NcsFile(path)

    assert f.n_records == mat["samples"].shape[1] == len(mat["timestamps"])
    # Timestamps are < 2**53 us, so float64 in the .mat holds them exactly.
    assert np.all(mat["timestamps"] < 2.0**53)
    assert np.array_equal(f.timestamps.astype(np.int64), mat["timestamps"].astype(np.int64))
    assert np.array_equal(f.n_valid, mat["n_valid"].astype(np.int64))
    assert np.array_equal(np.asarray(f.records["channel"]), mat["channels"].astype(np.uint32))
    assert f.channel_number == int(mat["channels"][0])
    assert np.array_equal(np.asarray(f.records["sampling_rate"]), mat["rates"].astype(np.uint32))
    # Raw int16 samples, invalid tails included, exactly as the vendor reads them.
    assert np.array_equal(np.asarray(f.records["samples"]), mat["samples"].T)
    stream = f.read_stream(0, int(mat["n_valid"].sum()))
    assert stream.dtype == np.int16
    assert np.array_equal(stream, mat_valid_stream(mat))

    h = mat["header"]
    for key in ("SamplingFrequency", "ADBitVolts", "InputInverted", "AcqEntName"):
        assert f.header[key] == h[key], key
    assert f.sampling_rate == float(h["SamplingFrequency"])
    assert f.sampling_rate == float(mat["rates"][0])
    assert f.ad_bit_volts == float(h["ADBitVolts"])
    assert f.name == h["AcqEntName"]
    inverted = h["InputInverted"].lower() == "true"
    assert f.volts_per_bit == (-1 if inverted else 1) * float(h["ADBitVolts"])


@pytest.mark.parametrize("name", _real_params(GAP_FREE))
def test_real_gap_free_file_scaled_on_the_grid(name):
    """Without gaps every valid sample has its own grid position, scaled to volts."""
    path = REAL / name
    mat = load_mat(path.with_suffix(".mat"))
    f = NcsFile(path)
    n = int(mat["n_valid"].sum())
    assert f.grid_end(f.t0_us) == n
    assert f.gaps(f.t0_us, n) == []
    sign = -1.0 if mat["header"]["InputInverted"].lower() == "true" else 1.0
    expected = (mat_valid_stream(mat) * float(mat["header"]["ADBitVolts"]) * sign).astype(np.float32)
    got = f.read_grid(0, n)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=3e-7, atol=0)
    # The whole records (all but the last one, which is partial) as in the scaling spec.
    full = int(np.flatnonzero(mat["n_valid"] != 512)[0]) * 512 if np.any(mat["n_valid"] != 512) else n
    np.testing.assert_allclose(
        f.read_grid(0, full),
        (mat["samples"][:, : full // 512].T.ravel() * float(mat["header"]["ADBitVolts"]) * sign).astype(np.float32),
        rtol=3e-7, atol=0,
    )


@pytest.mark.parametrize("inverted", [True, False])
def test_scaling_all_full_records(tmp_path, inverted):
    rng = np.random.default_rng(5)
    samples = rng.integers(-32768, 32768, size=6 * 512).astype(np.int16)
    bit = 3.0517578125e-08
    p = write_ncs(tmp_path / "CSC1.ncs", 6, samples=samples, ad_bit_volts=bit, inverted=inverted)
    got = NcsFile(p).read_grid(0, 6 * 512)
    expected = (samples.astype(np.float64) * bit * (-1 if inverted else 1)).astype(np.float32)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=3e-7, atol=0)
    # A sign error would not hide behind the tolerance.
    assert np.all(np.sign(got[samples != 0]) == np.sign(expected[samples != 0]))


# --------------------------------------------------------------------------------------
# The gap files
# --------------------------------------------------------------------------------------
def _readme_gaps() -> list[Gap]:
    # Record r (1-based) keeps its first 512 - size samples, so the gap starts
    # r * 512 - size samples into the recording and lasts `size` samples.
    return [Gap(r * SAMPLES_PER_RECORD - s, s) for r, s in zip(README_GAP_RECORDS, README_GAP_SIZES)]


@pytest.mark.parametrize("name", _real_params(GAP_FILES))
def test_gap_file_gaps_and_grid(name):
    gap_path = REAL / name
    orig_path = REAL / name.replace("_3_gaps", "")
    g, f = NcsFile(gap_path), NcsFile(orig_path)
    mat_orig = load_mat(orig_path.with_suffix(".mat"))
    n = int(mat_orig["n_valid"].sum())  # the gap-free file's length, from the vendor export

    assert g.t0_us == f.t0_us
    assert g.grid_end(g.t0_us) == n
    assert g.gaps(g.t0_us, n) == _readme_gaps()
    # The gap files hold 130 fewer valid samples than the originals.
    assert int(g.n_valid.sum()) == n - sum(README_GAP_SIZES)

    vg, vf = g.read_grid(0, n), f.read_grid(0, n)
    in_gap = np.zeros(n, dtype=bool)
    for gap in _readme_gaps():
        in_gap[gap.start : gap.start + gap.length] = True
    # Every valid sample of the gap file sits at the grid position of the same sample
    # in the gap-free original.
    assert np.array_equal(vg[~in_gap], vf[~in_gap])
    # The gap file's records hold zeros in the gaps (see README); the reader must not
    # show them, and fills linearly between the valid samples on either side instead.
    assert not np.array_equal(vg[in_gap], np.zeros(in_gap.sum(), np.float32))
    for gap in _readme_gaps():
        left, right = gap.start - 1, gap.start + gap.length
        pos = np.arange(gap.start, right)
        expected = np.interp(pos, [left, right], [vg[left], vg[right]])
        np.testing.assert_allclose(vg[pos], expected, rtol=1e-6, atol=1e-12)


def _gap_folder(real_dir, tmp_path) -> Path:
    """A recording folder holding copies of the two real files with gaps."""
    folder = tmp_path / "rec"
    folder.mkdir()
    for name in ("LAHC1_3_gaps.ncs", "LAHC2_3_gaps.ncs"):
        shutil.copyfile(real_dir / name, folder / name)
    return folder


def test_gap_files_through_open_recording(real_dir, tmp_path):
    rec = open_recording(_gap_folder(real_dir, tmp_path))
    assert rec.channel_names == ["LAHC1", "LAHC2"]
    assert rec.sampling_rate == 2000.0
    assert rec.n_samples == int(load_mat(real_dir / "LAHC1.mat")["n_valid"].sum())
    assert rec.gaps() == [RecordingGap(g.start, g.length, ("LAHC1", "LAHC2")) for g in _readme_gaps()]

    # Reading any slice gives the same values as the same part of a whole read (past
    # the end: the last value, held).
    whole = rec.read(0, rec.n_samples)
    whole = np.concatenate([whole, np.repeat(whole[:, -1:], 200, axis=1)], axis=1)
    for start, stop in [(0, 1), (5000, 5200), (5019, 5121), (5030, 5050), (8180, 8200), (10700, 11691),
                        (11000, 11800), (11700, 11750)]:
        part = rec.read(start, stop)
        assert part.shape == (2, stop - start)
        assert np.array_equal(part, whole[:, start:stop])


# --------------------------------------------------------------------------------------
# Cross-check with neo
# --------------------------------------------------------------------------------------
def _neo_reader(folder: Path, gap_tolerance_ms: float):
    neo_rawio = pytest.importorskip("neo.rawio")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = neo_rawio.NeuralynxRawIO(dirname=str(folder), gap_tolerance_ms=gap_tolerance_ms)
        r.parse_header()
    return r


def _neo_channel(r, channel_name: str, seg_index: int = 0):
    """(raw int16, volts float64, t_start s) of one channel, found by name (neo sorts by name)."""
    chans = r.header["signal_channels"]
    stream_ids = r.header["signal_streams"]["id"]
    row = int(np.flatnonzero(chans["name"] == channel_name)[0])
    stream_index = int(np.flatnonzero(stream_ids == chans["stream_id"][row])[0])
    raw = r.get_analogsignal_chunk(block_index=0, seg_index=seg_index, i_start=None, i_stop=None,
                                   stream_index=stream_index, channel_names=[channel_name])
    scaled = r.rescale_signal_raw_to_float(raw, dtype="float64", stream_index=stream_index,
                                           channel_names=[channel_name])
    units = str(chans["units"][row])
    factor = {"uV": 1e-6, "mV": 1e-3, "V": 1.0}[units]
    t_start = r.get_signal_t_start(block_index=0, seg_index=seg_index, stream_index=stream_index)
    return raw[:, 0], scaled[:, 0] * factor, t_start


@pytest.mark.parametrize("names", [("LAHCu1.ncs",), ("LAHC1.ncs", "LAHC2.ncs", "LAHC3.ncs")])
def test_against_neo(real_dir, tmp_path, names):
    folder = tmp_path / "neo"
    folder.mkdir()
    for n in names:
        shutil.copyfile(real_dir / n, folder / n)
    # 1 ms tolerance: above the 1 us timestamp jitter of these files (which neo's
    # default strict mode splits into segments), below any real gap.
    r = _neo_reader(folder, gap_tolerance_ms=1.0)
    assert r.header["nb_segment"][0] == 1
    rec = open_recording(folder)
    assert rec.channel_names == [Path(n).stem for n in names]
    ours = rec.read(0, rec.n_samples)
    for i, ch in enumerate(rec.channel_names):
        raw, volts, _ = _neo_channel(r, ch)
        f = rec.files[i]
        assert len(raw) == rec.n_samples
        assert np.array_equal(f.read_stream(0, len(raw)), raw)
        np.testing.assert_allclose(ours[i], volts, rtol=1e-6, atol=0)
        # Same sign convention (InputInverted) as neo.
        big = np.abs(volts) > 1e-6
        assert np.all(np.sign(ours[i][big]) == np.sign(volts[big]))


def test_gap_file_against_neo(real_dir, tmp_path):
    folder = tmp_path / "neo_gaps"
    folder.mkdir()
    shutil.copyfile(real_dir / "LAHC1_3_gaps.ncs", folder / "LAHC1_3_gaps.ncs")
    r = _neo_reader(folder, gap_tolerance_ms=1.0)  # neo makes one segment per gap-free run
    n_seg = int(r.header["nb_segment"][0])
    assert n_seg == len(README_GAP_SIZES) + 1
    f = NcsFile(folder / "LAHC1_3_gaps.ncs")
    grid = f.read_grid(0, f.grid_end(f.t0_us))
    starts = f.block_grid_starts(f.t0_us)
    assert len(starts) == n_seg
    for s in range(n_seg):
        raw, volts, t_start = _neo_channel(r, "LAHC1", seg_index=s)
        start = int(round(t_start * f.sampling_rate))
        assert start == starts[s]
        assert len(raw) == f.block_length[s]
        np.testing.assert_allclose(grid[start : start + len(raw)], volts, rtol=1e-6, atol=0)


# --------------------------------------------------------------------------------------
# Folders: channel order, early ends, late starts
# --------------------------------------------------------------------------------------
def test_natural_channel_order(tmp_path):
    folder = tmp_path / "rec"
    values = {"CSC10": 10, "CSC2": 2, "CSC1": 1}
    for name, v in values.items():  # written in non-natural order on purpose
        write_ncs(folder / f"{name}.ncs", 2, channel=v, samples=np.full(1024, v * 100, np.int16))
    rec = open_recording(folder)
    assert rec.channel_names == ["CSC1", "CSC2", "CSC10"]
    data = rec.read(0, 1024)
    for row, name in zip(data, rec.channel_names):
        np.testing.assert_allclose(row, values[name] * 100 * 1e-7, rtol=1e-6)
    sub = rec.read(10, 20, channels=["CSC10", "CSC1"])
    np.testing.assert_allclose(sub[0], 10 * 100 * 1e-7, rtol=1e-6)
    np.testing.assert_allclose(sub[1], 1 * 100 * 1e-7, rtol=1e-6)


def test_channel_that_ends_early(tmp_path):
    folder = tmp_path / "rec"
    long_samples = np.arange(6 * 512, dtype=np.int16)
    short_samples = (1000 - np.arange(4 * 512)).astype(np.int16)
    write_ncs(folder / "CSC1.ncs", 6, channel=1, samples=long_samples)
    write_ncs(folder / "CSC2.ncs", 4, channel=2, samples=short_samples)
    rec = open_recording(folder)
    assert rec.channel_ends() == {"CSC1": 6 * 512, "CSC2": 4 * 512}
    assert rec.n_samples == 6 * 512
    data = rec.read(0, rec.n_samples + 50)  # even past the recording's end: no exception
    np.testing.assert_allclose(data[0, : 6 * 512], long_samples * 1e-7, rtol=1e-6)
    np.testing.assert_allclose(data[1, : 4 * 512], short_samples * 1e-7, rtol=1e-6)
    # CSC2 holds its last value after it ends; CSC1 holds its own past the end.
    assert np.all(data[1, 4 * 512 :] == np.float32(short_samples[-1] * np.float32(1e-7)))
    assert np.all(data[0, 6 * 512 :] == data[0, 6 * 512 - 1])
    assert rec.gaps() == [RecordingGap(4 * 512, 2 * 512, ("CSC2",))]
    # A read wholly inside CSC2's missing tail also works.
    tail = rec.read(5000, 5010, channels=["CSC2"])
    assert np.all(tail == data[1, -1])


def test_channel_that_starts_late(tmp_path):
    folder = tmp_path / "rec"
    t0 = 5_000_000_000
    write_ncs(folder / "CSC1.ncs", 6, channel=1, t0_us=t0)
    late = np.arange(4 * 512, dtype=np.int16) + 3
    write_ncs(folder / "CSC2.ncs", 4, channel=2, t0_us=t0 + 2 * 256_000, samples=late)
    rec = open_recording(folder)
    assert rec.t0_us == t0
    assert rec.n_samples == 6 * 512
    assert rec.channel_ends() == {"CSC1": 6 * 512, "CSC2": 6 * 512}
    assert rec.gaps() == [RecordingGap(0, 2 * 512, ("CSC2",))]
    data = rec.read(0, rec.n_samples)
    assert np.all(data[1, : 2 * 512] == data[1, 2 * 512])  # held first value
    np.testing.assert_allclose(data[1, 2 * 512 :], late * 1e-7, rtol=1e-6)


def test_missing_record_in_the_middle_is_a_gap(tmp_path):
    """A dropped record: timestamps jump by two records, the grid keeps its place."""
    samples = np.arange(5 * 512, dtype=np.int16)
    ts = 1_000_000 + np.array([0, 1, 2, 4, 5]) * 256_000  # record 3 never written
    p = write_ncs(tmp_path / "CSC1.ncs", 5, samples=samples, timestamps=ts)
    f = NcsFile(p)
    assert f.grid_end(f.t0_us) == 6 * 512
    assert f.gaps(f.t0_us, 6 * 512) == [Gap(3 * 512, 512)]
    v = f.read_grid(0, 6 * 512)
    np.testing.assert_allclose(v[: 3 * 512], samples[: 3 * 512] * 1e-7, rtol=1e-6)
    np.testing.assert_allclose(v[4 * 512 :], samples[3 * 512 :] * 1e-7, rtol=1e-6)


def test_leading_record_without_valid_samples(tmp_path):
    """A first record that holds no valid samples: its time is a gap at the start.

    Either reading works (the gap is held at the first valid sample) or the file is
    refused with a RawDataError naming it; an IndexError is neither.
    """
    samples = np.arange(4 * 512, dtype=np.int16) + 100
    p = write_ncs(tmp_path / "CSC1.ncs", 4, samples=samples, n_valid=np.array([0, 512, 512, 512]))
    try:
        f = NcsFile(p)
        f.read_grid(0, 4 * 512)
    except RawDataError as err:
        assert p.name in str(err)
        return
    n = f.grid_end(f.t0_us)
    assert n in (3 * 512, 4 * 512)  # the grid may start at the empty record or after it
    assert f.gaps(f.t0_us, n) == ([Gap(0, 512)] if n == 4 * 512 else [])
    v = f.read_grid(0, n)
    np.testing.assert_allclose(v[n - 3 * 512 :], samples[512:] * 1e-7, rtol=1e-6)
    assert np.all(v[: n - 3 * 512] == v[n - 3 * 512])


def test_file_without_any_valid_sample(tmp_path):
    p = write_ncs(tmp_path / "CSC1.ncs", 3, n_valid=np.array([0, 0, 0]))
    with pytest.raises(RawDataError) as err:
        NcsFile(p).read_grid(0, 10)
    assert p.name in str(err.value)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------
def _truncated(tmp_path):
    p = write_ncs(tmp_path / "CSC1.ncs", 5)
    with open(p, "r+b") as f:
        f.truncate(HEADER_SIZE + 4 * NCS_RECORD_DTYPE.itemsize + 500)
    return p


def _channel_mix(tmp_path):
    return write_ncs(tmp_path / "CSC1.ncs", 5, channel=3, channels=np.array([3, 3, 4, 3, 3]))


def _rate_mismatch(tmp_path):
    return write_ncs(tmp_path / "CSC1.ncs", 5, rate=2000, rates=np.array([2000, 2000, 2000, 1000, 2000]))


def _backwards(tmp_path):
    ts = 1_000_000 + np.array([0, 1, 2, 3, 4]) * 256_000
    ts[3] = ts[1] - 10
    return write_ncs(tmp_path / "CSC1.ncs", 5, timestamps=ts)


def _overlap(tmp_path):
    ts = 1_000_000 + np.array([0, 1, 2, 3, 4]) * 256_000
    ts[2] = ts[1] + 100_000  # starts while record 1's 512 samples (256 ms) still run
    ts[3:] = ts[2] + np.arange(1, 3) * 256_000
    return write_ncs(tmp_path / "CSC1.ncs", 5, timestamps=ts)


def _too_many_valid(tmp_path):
    return write_ncs(tmp_path / "CSC1.ncs", 3, n_valid=np.array([512, 600, 512]))


def _zero_records(tmp_path):
    return write_ncs(tmp_path / "CSC1.ncs", 0)


def _random_bytes(tmp_path):
    p = tmp_path / "CSC1.ncs"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, HEADER_SIZE + 3 * 1044, dtype=np.uint8).tobytes())
    return p


def _text_file(tmp_path):
    p = tmp_path / "CSC1.ncs"
    p.write_text("time,value\n" + "".join(f"{i},{i * 0.5}\n" for i in range(3000)))
    assert p.stat().st_size > HEADER_SIZE
    return p


def _short(tmp_path):
    p = tmp_path / "CSC1.ncs"
    p.write_bytes(format_ncs_header({"SamplingFrequency": 2000, "ADBitVolts": 1e-7})[:1000])
    return p


BAD_FILES = {
    "truncated_last_record": (_truncated, [r"truncated|middle of a record", r"4 whole records"]),
    "no_adbitvolts": (lambda t: write_ncs(t / "CSC1.ncs", omit=("ADBitVolts",)), [r"no -ADBitVolts"]),
    "malformed_adbitvolts": (lambda t: write_ncs(t / "CSC1.ncs", ad_bit_volts="abc"), [r"ADBitVolts", r"'abc'", r"not a number"]),
    "negative_adbitvolts": (lambda t: write_ncs(t / "CSC1.ncs", ad_bit_volts="-1e-7"), [r"ADBitVolts", r"positive"]),
    "no_sampling_frequency": (lambda t: write_ncs(t / "CSC1.ncs", omit=("SamplingFrequency",)), [r"not a Neuralynx"]),
    "channel_mix": (_channel_mix, [r"record 2", r"channel number 4", r"\b3\b"]),
    "rate_mismatch": (_rate_mismatch, [r"record 3", r"1000 Hz", r"SamplingFrequency 2000"]),
    "timestamps_backwards": (_backwards, [r"record 3", r"backwards"]),
    "records_overlap": (_overlap, [r"record 2", r"overlap"]),
    "too_many_valid": (_too_many_valid, [r"record 1", r"600", r"512"]),
    "zero_records": (_zero_records, [r"no data records"]),
    "random_bytes": (_random_bytes, [r"not a Neuralynx"]),
    "text_file": (_text_file, [r"not a Neuralynx"]),
    "shorter_than_header": (_short, [r"shorter than the 16384-byte header"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_is_refused_with_a_clear_message(tmp_path, case):
    make, patterns = BAD_FILES[case]
    folder = tmp_path / "rec"
    folder.mkdir()
    path = make(folder)
    with pytest.raises(RawDataError) as err:
        NcsFile(path)
    msg = str(err.value)
    assert path.name in msg
    for pat in patterns:
        assert re.search(pat, msg, re.IGNORECASE), (pat, msg)

    # Through the folder reader too, next to a good channel, naming the bad file.
    write_ncs(folder / "CSC2.ncs", 3, channel=9)
    with pytest.raises(RawDataError) as err:
        open_recording(folder)
    assert path.name in str(err.value)


def test_folder_without_ncs_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RawDataError, match=re.escape(str(empty))) as err:
        open_recording(empty)
    assert ".ncs" in str(err.value)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("nothing here")
    (other / "Events.nev").write_bytes(b"\0" * 100)
    with pytest.raises(RawDataError, match=re.escape(str(other))):
        open_recording(other)
    missing = tmp_path / "does-not-exist"
    with pytest.raises(RawDataError, match=re.escape(str(missing))):
        open_recording(missing)


def test_folder_with_two_sampling_rates(tmp_path):
    folder = tmp_path / "rec"
    write_ncs(folder / "CSC1.ncs", 2, rate=2000, channel=1)
    write_ncs(folder / "CSC2.ncs", 2, rate=32000, channel=2)
    with pytest.raises(RawDataError) as err:
        open_recording(folder)
    msg = str(err.value)
    assert "2000 Hz" in msg and "32000 Hz" in msg
    assert "CSC1" in msg and "CSC2" in msg


def test_folder_with_two_files_of_one_channel(real_dir, tmp_path):
    folder = tmp_path / "rec"
    folder.mkdir()
    for n in ("LAHC1.ncs", "LAHC1_3_gaps.ncs"):  # both say -AcqEntName LAHC1
        shutil.copyfile(real_dir / n, folder / n)
    with pytest.raises(RawDataError) as err:
        open_recording(folder)
    msg = str(err.value)
    assert "LAHC1.ncs" in msg and "LAHC1_3_gaps.ncs" in msg


# --------------------------------------------------------------------------------------
# Raw files are never changed
# --------------------------------------------------------------------------------------
def test_raw_files_are_read_only(real_dir, tmp_path):
    everything = tmp_path / "all"
    recording = tmp_path / "rec"
    everything.mkdir()
    recording.mkdir()
    for p in real_dir.iterdir():
        shutil.copyfile(p, everything / p.name)  # writable copies: permissions prove nothing
    for n in ("LAHC1.ncs", "LAHC2.ncs", "LAHC3.ncs", "xAIR1.ncs", "xEKG1.ncs"):
        shutil.copyfile(real_dir / n, recording / n)
    files = sorted(everything.iterdir()) + sorted(recording.iterdir())
    before = {p: (sha256(p), p.stat().st_mtime_ns) for p in files}

    for p in sorted(everything.glob("*.ncs")):
        f = NcsFile(p)
        assert f.records.flags.writeable is False
        assert f.records.mode == "r"
        with pytest.raises(ValueError):
            f.records["samples"][0, 0] = 1
        n = f.grid_end(f.t0_us)
        v = f.read_grid(-10, n + 10)
        v[:] = 0  # scribbling on the returned array must not reach the file
        f.read_stream(0, 100)[:] = 0
        f.gaps(f.t0_us, n)
    rec = open_recording(recording)
    out = rec.read(0, rec.n_samples)
    out[:] = 0
    rec.gaps()
    rec.describe_files()
    with pytest.raises(RawDataError):
        open_recording(everything)  # two files of LAHC1 and two rates: refused, still untouched
    del f, rec

    after = {p: (sha256(p), p.stat().st_mtime_ns) for p in files}
    assert after == before


# --------------------------------------------------------------------------------------
# The converter's fast path: raw records handed over without a copy
# --------------------------------------------------------------------------------------
def _awkward_folder(tmp_path) -> Path:
    """Five channels, each with something a record-by-record reader could get wrong."""
    folder = tmp_path / "awkward"
    t0 = 1_000_000
    step = 256_000  # one 512-sample record at 2 kHz, in microseconds
    k = np.arange(8 * 512)
    write_ncs(folder / "CSC1.ncs", 8, channel=1, t0_us=t0, samples=(k % 3001) - 1500)  # clean
    # a partial record (100 valid samples) in the middle; the next record follows on in time
    nv = np.full(8, 512)
    nv[3] = 100
    ts = t0 + np.concatenate([np.arange(4) * step, 3 * step + 100 * 500 + np.arange(4) * step])
    write_ncs(folder / "CSC2.ncs", 8, channel=2, n_valid=nv, timestamps=ts, samples=(k * 7 % 2001) - 1000)
    write_ncs(folder / "CSC3.ncs", 5, channel=3, t0_us=t0, samples=(k[:5 * 512] * 3 % 999))  # ends early
    write_ncs(folder / "CSC4.ncs", 6, channel=4, t0_us=t0 + 2 * step, samples=-(k[:6 * 512] % 777))  # starts late
    ts = t0 + np.array([0, 1, 2, 4, 5, 6, 7, 8]) * step  # record 3 never written
    write_ncs(folder / "CSC10.ncs", 8, channel=10, timestamps=ts, samples=(k * 11 % 4001) - 2000)
    return folder


@pytest.mark.parametrize("a,b", [(0, 512), (-40, 300), (100, 1500), (1000, 1900), (1500, 2600), (2047, 2049),
                                 (1800, 4200), (3000, 4700), (4000, 4700), (4500, 4700), (-3, 4700)])
def test_read_block_equals_read(tmp_path, a, b):
    """Whatever path each channel takes (its records in place, or read_grid where a gap,
    a partial record or a channel's end is in the range), the samples are those `read`
    gives, in ADC units, with the recording's first and last samples held beyond its ends."""
    from concurrent.futures import ThreadPoolExecutor

    rec = open_recording(_awkward_folder(tmp_path))
    assert isinstance(rec, RawRecording)
    n = rec.n_samples
    lo, hi = max(a, 0), min(b, n)
    want = rec.read(lo, hi, scaled=False)
    want = np.concatenate([np.repeat(want[:, :1], lo - a, axis=1), want,
                           np.repeat(want[:, -1:], b - hi, axis=1)], axis=1)
    with ThreadPoolExecutor(3) as pool:
        block, buf = rec.read_block(a, b, rec.channel_names, pool=pool)
        assert np.array_equal(block_rows(block, b - a), want)
        # The buffer is reused for the next block.
        block2, buf2 = rec.read_block(a, b, rec.channel_names, buf)
        assert buf2 is buf
        assert np.array_equal(block_rows(block2, b - a), want)


def test_read_block_takes_records_in_place_where_it_can(tmp_path):
    rec = open_recording(_awkward_folder(tmp_path))
    names = rec.channel_names
    assert names == ["CSC1", "CSC2", "CSC3", "CSC4", "CSC10"]
    # Samples 100..1500: CSC1 and CSC3 are unbroken; CSC2 is too (its partial record is
    # later); CSC4 has not started; CSC10's missing record is later.
    block, _ = rec.read_block(100, 1500, names)
    assert [bool(r < 0) for r in block.row] == [True, True, True, False, True]
    # Samples 1500..2600 cross CSC2's partial record (samples 1536..1636), CSC3's end
    # (2560) and CSC10's missing record (1536..2048); CSC4 has started (1024).
    block, _ = rec.read_block(1500, 2600, names)
    assert [bool(r < 0) for r in block.row] == [True, False, False, True, False]
    # Samples 1700..2500: after CSC2's partial record, so its records are read in place.
    block, _ = rec.read_block(1700, 2500, names)
    assert [bool(r < 0) for r in block.row] == [True, True, True, True, False]


def test_read_block_on_the_real_gap_files(real_dir, tmp_path):
    rec = open_recording(_gap_folder(real_dir, tmp_path))
    n = rec.n_samples
    whole = rec.read(0, n, scaled=False)
    for a, b in [(0, 5000), (5000, 5200), (5019, 5121), (8000, 9000), (10700, n + 30), (-20, n + 5)]:
        lo, hi = max(a, 0), min(b, n)
        want = np.concatenate([np.repeat(whole[:, :1], lo - a, axis=1), whole[:, lo:hi],
                               np.repeat(whole[:, hi - 1:hi], b - hi, axis=1)], axis=1)
        block, _ = rec.read_block(a, b, rec.channel_names)
        assert np.array_equal(block_rows(block, b - a), want), (a, b)


@pytest.mark.parametrize("rate_out", [500.0, 250.0, 40.0])
def test_fast_path_decimates_exactly_like_read(tmp_path, rate_out):
    """The converter's path (records in place) and the plain one (read, then filter)
    give the same LFP, bit for bit, in blocks that start anywhere."""
    from pipeline.dsp.decimate import design_decimator

    rec = open_recording(_awkward_folder(tmp_path))
    dec = design_decimator(rec.sampling_rate, rate_out)
    n_out = dec.n_output(rec.n_samples)
    bounds = sorted({0, n_out, *np.linspace(0, n_out, 5).astype(int)[1:-1], n_out // 3 + 1})
    for j0, j1 in zip(bounds[:-1], bounds[1:]):
        a, b = dec.input_range(j0, j1)
        block, _ = rec.read_block(a, b, rec.channel_names)
        fast = dec.decimate_records(block, j0, j1)
        plain = dec.decimate_range(lambda s, e: rec.read(s, e, scaled=False), rec.n_samples, j0, j1)
        assert np.array_equal(fast, plain), (j0, j1)
