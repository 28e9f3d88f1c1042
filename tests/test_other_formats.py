"""Intan, Open Ephys (binary, legacy) and plain .dat recordings: readers and conversion.

Vendor samples come from the shared data folder (skipped when it is absent). Each reader
is checked against neo's own reading (get_analogsignal_chunk + rescale_signal_raw_to_float)
and, where the layout is simple, against a direct numpy parse of the files that knows
nothing of neo.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from datetime import datetime, timezone
from pathlib import Path

import mne
import numpy as np
import pytest
import yaml

from pipeline.dsp.decimate import design_decimator
from pipeline.dsp.fir_kernel import block_rows
from pipeline.errors import RawDataError
from pipeline.io import neo_formats
from pipeline.io.raw import open_recording
from pipeline.io.recording import RawRecording

from conftest import real_data as real

OEB_RECORDING = "Record Node 118/experiment1/recording1"
LEGACY_NODE = "Record Node 101"
# One record of a legacy .continuous file: timestamp, N, recording number, 1024 samples, marker.
LEGACY_RECORD = np.dtype([("timestamp", "<i8"), ("n", "<u2"), ("rec", "<u2"), ("samples", ">i2", 1024),
                          ("marker", "u1", 10)])


def checksums(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def copy_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    for p in [dest, *dest.rglob("*")]:  # the shared copies are read-only
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


def intan_folder(tmp_path: Path, name: str) -> Path:
    src = real(f"intan-rhd/{name}")
    dest = tmp_path / Path(name).stem
    dest.mkdir()
    shutil.copy(src, dest / name)
    (dest / name).chmod(0o644)
    return dest


def neo_volts(io, stream_index: int, names: list[str], seg: int = 0, i0=None, i1=None) -> np.ndarray:
    """(channels, samples) in volts, straight from neo."""
    raw = io.get_analogsignal_chunk(block_index=0, seg_index=seg, i_start=i0, i_stop=i1,
                                    stream_index=stream_index, channel_names=names)
    flt = io.rescale_signal_raw_to_float(raw, dtype="float64", stream_index=stream_index, channel_names=names)
    sid = io.header["signal_streams"][stream_index]["id"]
    chans = io.header["signal_channels"][io.header["signal_channels"]["stream_id"] == sid]
    units = {str(n): str(u) for n, u in zip(chans["name"], chans["units"])}
    factor = np.array([{"uV": 1e-6, "mV": 1e-3, "V": 1.0}[units[n]] for n in names])
    return flt.T * factor[:, None]


def check_reads(rec, reference_v: np.ndarray, rng: np.random.Generator) -> None:
    """`read` equals the reference (volts) on the whole and on any slicing, exactly joined."""
    whole = rec.read(0, rec.n_samples)
    assert whole.dtype == np.float32 and whole.shape == (len(rec.channel_names), rec.n_samples)
    vpb = rec.volts_per_bit()
    np.testing.assert_allclose(whole, reference_v, rtol=0, atol=0.01 * float(np.abs(vpb).min()))
    adc = rec.read(0, rec.n_samples, scaled=False)
    assert np.array_equal(adc, np.round(adc)) and np.abs(adc).max() <= 32768
    np.testing.assert_allclose(adc * vpb[:, None], reference_v, rtol=0, atol=0.01 * float(np.abs(vpb).min()))
    cuts = np.unique(np.concatenate([[0, 1, rec.n_samples - 1, rec.n_samples],
                                     rng.integers(1, rec.n_samples, 7)]))
    parts = [rec.read(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]
    assert np.array_equal(np.concatenate(parts, axis=1), whole)
    some = list(rng.permutation(rec.channel_names)[:5])
    a, b = sorted(int(x) for x in rng.integers(0, rec.n_samples, 2))
    b = max(b, a + 1)
    pos = [rec.channel_names.index(c) for c in some]
    assert np.array_equal(rec.read(a, b, some), whole[pos, a:b])
    assert np.array_equal(rec.read(a, b, some, scaled=False), adc[pos, a:b])
    np.testing.assert_array_equal(rec.volts_per_bit(some), vpb[pos])
    # The converter's view: `read` in ADC units, the first and last samples held beyond the ends.
    assert isinstance(rec, RawRecording)
    n = rec.n_samples
    for a, b in [(-7, min(n, 300)), (max(0, n - 300), n + 9)]:
        lo, hi = max(a, 0), min(b, n)
        want = np.concatenate([np.repeat(adc[:, lo:lo + 1], lo - a, axis=1), adc[:, lo:hi],
                               np.repeat(adc[:, hi - 1:hi], b - hi, axis=1)], axis=1)
        block, _ = rec.read_block(a, b, rec.channel_names)
        assert np.array_equal(block_rows(block, b - a), want), (a, b)
    # LFP-band signals of tens to hundreds of microvolts, not millivolts or nanovolts.
    rms = np.sqrt(np.mean((whole - whole.mean(axis=1, keepdims=True)) ** 2, axis=1))
    assert np.all(rms > 1e-7) and np.all(rms < 1e-3), rms
    assert np.abs(whole).max() < 5e-3


# -- Intan ---------------------------------------------------------------------------------
def parse_rhd_amplifier(path: Path, block: int, n_amp: int, block_bytes: int, n_samples: int):
    """Amplifier samples (uint16) and timestamps of a header-attached .rhd, by Intan's spec.

    A data block holds `block` int32 timestamps, then each amplifier channel's `block`
    uint16 samples one channel after the other, then the other signals (block_bytes in all).
    """
    n_blocks = n_samples // block
    data = path.read_bytes()
    header = len(data) - n_blocks * block_bytes
    assert 0 < header < 100_000
    blocks = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(n_blocks, block_bytes)
    ts = blocks[:, : 4 * block].copy().view("<i4").reshape(-1)
    amp = blocks[:, 4 * block: 4 * block + 2 * n_amp * block].copy().view("<u2").reshape(n_blocks, n_amp, block)
    return ts, amp.transpose(1, 0, 2).reshape(n_amp, -1)


def intan_names(n: int) -> list[str]:
    """Amplifier channels in Intan's order: 32 per headstage port A, B, ..."""
    return [f"{'ABCD'[i // 32]}-{i % 32:03d}" for i in range(n)]


# (file, samples per block, amplifier channels, bytes per data block, samples)
# v3.0: 128 x int32 timestamps + 64 x 128 amplifier + 6 aux x 32 (all uint16) = 17280 bytes.
# v1.5: 60 x int32 + 32 x 60 amp + 3 aux x 15 + 1 supply + 1 temperature + 2 ADC x 60 + DIN 60
#       + DOUT 60 (16-bit words) = 4654 bytes.
INTAN = [("sampledata_v3.0_64ch.rhd", 128, 64, 17280, 17664),
         ("sampledata_v1.5_tempsensor.rhd", 60, 32, 4654, 40320)]


@pytest.mark.parametrize("name, block, n_amp, block_bytes, n_samples", INTAN)
def test_intan_reads_what_the_file_holds(tmp_path, name, block, n_amp, block_bytes, n_samples):
    folder = intan_folder(tmp_path, name)
    rec = open_recording(folder)
    assert rec.format == "intan" and rec.stream_name == "RHD2000 amplifier channel"
    assert rec.channel_names == intan_names(n_amp)
    assert rec.sampling_rate == 20000.0 and rec.n_samples == n_samples
    assert rec.duration_s == pytest.approx(n_samples / 20000)
    assert rec.gaps() == [] and set(rec.channel_ends().values()) == {n_samples}
    np.testing.assert_allclose(rec.volts_per_bit(), 0.195e-6)
    assert rec.start_time.tzinfo is not None
    # Independent of neo: Intan's block layout, timestamps running on without a gap.
    ts, amp = parse_rhd_amplifier(folder / name, block, n_amp, block_bytes, n_samples)
    assert np.array_equal(ts, ts[0] + np.arange(n_samples))
    assert np.array_equal(rec.read(0, n_samples, scaled=False), amp.astype(np.float32) - 32768)
    files = rec.describe_files()
    assert [f["file"] for f in files] == [name] and files[0]["bytes"] == (folder / name).stat().st_size
    assert not any("index" in f for f in files)


def test_intan_v3_equals_neo(tmp_path):
    from neo.rawio import IntanRawIO

    folder = intan_folder(tmp_path, "sampledata_v3.0_64ch.rhd")
    rec = open_recording(folder)
    assert rec.duration_s == pytest.approx(0.8832)
    io = IntanRawIO(filename=str(folder / "sampledata_v3.0_64ch.rhd"))
    io.parse_header()
    assert io.header["signal_streams"][0]["name"] == "RHD2000 amplifier channel"
    check_reads(rec, neo_volts(io, 0, rec.channel_names), np.random.default_rng(1))
    # Slices read by neo itself match the same slices read by the recording.
    np.testing.assert_allclose(rec.read(1000, 5000, ["B-010", "A-003"]),
                               neo_volts(io, 0, ["B-010", "A-003"], i0=1000, i1=5000), rtol=0, atol=2e-9)


def test_intan_v15_temperature_sensor_file_is_read_despite_neo_bug(tmp_path):
    """neo 0.14.6 fails on this file (KeyError 'custom_channel_name' for the temperature
    sensor channel); the reader retries with the missing names filled in, and leaves neo
    as it found it."""
    from neo.rawio import IntanRawIO, intanrawio

    folder = intan_folder(tmp_path, "sampledata_v1.5_tempsensor.rhd")
    original = intanrawio.read_rhd
    rec = open_recording(folder)
    assert intanrawio.read_rhd is original
    assert len(rec.channel_names) == 32 and rec.duration_s == pytest.approx(2.016)
    # neo's own rescaling, on the reader's parsed neo object (neo alone cannot parse it).
    check_reads(rec, neo_volts(rec._io, 0, rec.channel_names), np.random.default_rng(2))
    try:
        IntanRawIO(filename=str(folder / "sampledata_v1.5_tempsensor.rhd")).parse_header()
    except KeyError as e:
        assert e.args[0] == "custom_channel_name"  # the bug the workaround is for


def test_unreadable_intan_file_names_the_file_and_the_reason(tmp_path):
    folder = intan_folder(tmp_path, "sampledata_v3.0_64ch.rhd")
    path = folder / "sampledata_v3.0_64ch.rhd"
    data = bytearray(path.read_bytes())
    data[:4] = b"\0\0\0\0"  # Intan's magic number
    path.write_bytes(bytes(data[:20000]))
    with pytest.raises(RawDataError) as err:
        open_recording(folder)
    assert "sampledata_v3.0_64ch.rhd" in str(err.value) and "cannot read" in str(err.value)
    shutil.copy(real("intan-rhd/sampledata_v1.5_tempsensor.rhd"), folder / "other.rhd")
    with pytest.raises(RawDataError, match="2 .rhd files"):
        open_recording(folder)


# -- Open Ephys binary ---------------------------------------------------------------------
def test_openephys_binary_equals_neo_and_the_dat_file():
    from neo.rawio import OpenEphysBinaryRawIO

    top = real("openephys-binary")
    rec = open_recording(top)
    assert rec.format == "openephys-binary"
    assert rec.stream_name == "Record Node 118#File_Reader-106.0"  # first of two 16-channel streams
    assert rec.channel_names == [f"CH{i}" for i in range(16)]
    assert rec.sampling_rate == 40000.0 and rec.n_samples == 122496
    assert rec.duration_s == pytest.approx(3.0624)
    assert rec.t0_us == 1368800  # sample number 54752 at 40 kHz
    assert rec.start_time == datetime(2021, 3, 22, 20, 5, 30, tzinfo=timezone.utc)
    assert rec.gaps() == []
    io = OpenEphysBinaryRawIO(dirname=str(top))
    io.parse_header()
    check_reads(rec, neo_volts(io, 0, rec.channel_names), np.random.default_rng(3))

    structure = json.loads((top / OEB_RECORDING / "structure.oebin").read_text())
    for stream_index, folder_name in ((0, "File_Reader-106.0"), (1, "File_Reader-114.0")):
        chosen = rec if stream_index == 0 else neo_formats.open_openephys_binary(top, stream=stream_index)
        assert chosen.stream_name.endswith(folder_name)
        info = next(c for c in structure["continuous"] if c["folder_name"].rstrip("/") == folder_name)
        assert {c["units"] for c in info["channels"]} == {"uV"}
        bit_uv = np.array([c["bit_volts"] for c in info["channels"]])
        dat = np.memmap(top / OEB_RECORDING / "continuous" / folder_name / "continuous.dat", dtype="<i2", mode="r")
        dat = np.asarray(dat).reshape(-1, info["num_channels"]).T
        assert np.array_equal(chosen.read(0, chosen.n_samples, scaled=False), dat.astype(np.float32))
        np.testing.assert_allclose(chosen.read(0, chosen.n_samples), dat * bit_uv[:, None] * 1e-6,
                                   rtol=1e-6, atol=1e-12)
    by_name = neo_formats.open_openephys_binary(top / OEB_RECORDING, stream="Record Node 118#File_Reader-114.0")
    assert by_name.n_samples == 122496
    with pytest.raises(RawDataError, match="no signal stream"):
        neo_formats.open_openephys_binary(top, stream="nope")
    files = rec.describe_files()
    assert any(f["file"].endswith("File_Reader-106.0/continuous.dat") and f["bytes"] == 3919872 for f in files)
    assert not any("index" in f for f in files)


def test_openephys_binary_with_dropped_samples_is_refused(tmp_path):
    top = copy_tree(real("openephys-binary"), tmp_path / "oeb")
    ts_path = top / OEB_RECORDING / "continuous" / "File_Reader-106.0" / "timestamps.npy"
    ts = np.load(ts_path)
    ts[5000:] += 100  # 100 samples lost
    np.save(ts_path, ts)
    with pytest.raises(RawDataError, match="samples were dropped"):
        open_recording(top)


# -- Open Ephys legacy ---------------------------------------------------------------------
def legacy_header(path: Path) -> dict[str, str]:
    text = path.read_bytes()[:1024].decode("ascii")
    return {k.strip().replace("header.", ""): v.strip().strip("'")
            for k, _, v in (item.partition("=") for item in text.split(";")) if v}


def test_openephys_legacy_equals_neo_and_the_continuous_files():
    from neo.rawio import OpenEphysRawIO

    top = real("openephys-legacy")
    rec = open_recording(top)
    assert rec.format == "openephys-legacy"
    assert rec.channel_names == [f"CH{i}" for i in range(1, 17)]
    assert rec.sampling_rate == 40000.0 and rec.n_samples == 133120 and rec.duration_s == pytest.approx(3.328)
    assert rec.start_time == datetime(2025, 4, 3, 13, 38, 45, tzinfo=timezone.utc)
    assert rec.gaps() == []
    io = OpenEphysRawIO(dirname=str(top / LEGACY_NODE))
    io.parse_header()
    check_reads(rec, neo_volts(io, 0, rec.channel_names), np.random.default_rng(4))
    # Independent of neo: the records of each file, big-endian samples times bitVolts (uV).
    adc = rec.read(0, rec.n_samples, scaled=False)
    for i, name in enumerate(rec.channel_names):
        path = top / LEGACY_NODE / f"100_example-data_{name}.continuous"
        head = legacy_header(path)
        records = np.fromfile(path, dtype=LEGACY_RECORD, offset=1024)
        assert np.all(np.diff(records["timestamp"]) == 1024)
        assert np.array_equal(adc[i], records["samples"].reshape(-1).astype(np.float32))
        assert rec.volts_per_bit([name])[0] == pytest.approx(float(head["bitVolts"]) * 1e-6)
    files = rec.describe_files()
    assert [f["channel"] for f in files] == rec.channel_names
    assert all(f["bytes"] == 270124 for f in files) and not any("index" in f for f in files)


def legacy_with_second_recording(tmp_path: Path, gap: int) -> Path:
    """The legacy sample plus a second recording (`_2` files) starting `gap` samples after it."""
    folder = copy_tree(real(f"openephys-legacy/{LEGACY_NODE}"), tmp_path / "legacy")
    for p in sorted(folder.glob("*_CH*.continuous")):
        second = folder / f"{p.stem}_2.continuous"
        shutil.copy(p, second)
        second.chmod(0o644)
        records = np.memmap(second, dtype=LEGACY_RECORD, mode="r+", offset=1024)
        records["timestamp"] += 133120 + gap
        records["samples"] = -records["samples"][::-1]  # different data from the first recording
        records.flush()
        del records
    return folder


def test_legacy_recordings_sit_on_one_clock_with_the_gap_interpolated(tmp_path):
    from neo.rawio import OpenEphysRawIO

    gap = 5003
    folder = legacy_with_second_recording(tmp_path, gap)
    rec = open_recording(folder)
    assert rec.n_samples == 2 * 133120 + gap
    [g] = rec.gaps()
    assert (g.start, g.length, len(g.channels)) == (133120, gap, 16)
    whole = rec.read(0, rec.n_samples, scaled=False)
    io = OpenEphysRawIO(dirname=str(folder))
    io.parse_header()
    assert io.segment_count(0) == 2
    for seg, start in ((0, 0), (1, 133120 + gap)):
        raw = io.get_analogsignal_chunk(0, seg, None, None, 0, channel_names=rec.channel_names).T
        assert np.array_equal(whole[:, start:start + 133120], raw.astype(np.float32))
    last, first = whole[:, 133119].astype(np.float64), whole[:, 133120 + gap].astype(np.float64)
    k = np.arange(1, gap + 1)
    expected = last[:, None] + (k / (gap + 1))[None, :] * (first - last)[:, None]
    np.testing.assert_allclose(whole[:, 133120:133120 + gap], expected, rtol=1e-6, atol=1e-3)
    cuts = [0, 133000, 133121, 135000, 138122, 138123, 200000, rec.n_samples]
    parts = [rec.read(a, b, scaled=False) for a, b in zip(cuts[:-1], cuts[1:])]
    assert np.array_equal(np.concatenate(parts, axis=1), whole)


def test_legacy_records_missing_inside_a_recording_are_refused(tmp_path):
    folder = copy_tree(real(f"openephys-legacy/{LEGACY_NODE}"), tmp_path / "legacy")
    for p in folder.glob("*.continuous"):
        data = p.read_bytes()
        p.write_bytes(data[:1024 + 50 * 2070] + data[1024 + 51 * 2070:])  # record 50 lost
    with pytest.raises(RawDataError, match="records are missing"):
        open_recording(tmp_path)


# -- plain .dat ----------------------------------------------------------------------------
def write_dat(folder: Path, n: int = 10007, n_ch: int = 5, seed: int = 0, **sidecar) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = rng.integers(-3000, 3000, size=(n, n_ch), dtype=np.int16)
    (folder / "rec.dat").write_bytes(data.astype("<i2").tobytes())
    if sidecar:
        (folder / "recording.yaml").write_text(yaml.safe_dump(sidecar))
    return data


def test_dat_with_sidecar(tmp_path):
    names = ["hpc1", "hpc2", "ctx1", "ctx2", "emg"]
    data = write_dat(tmp_path / "a", sampling_rate=2000, n_channels=5, uv_per_bit=0.195, channel_names=names,
                     start_time="2026-01-05T07:00:00")
    rec = open_recording(tmp_path / "a")
    assert rec.format == "dat" and rec.channel_names == names
    assert rec.sampling_rate == 2000.0 and rec.n_samples == 10007 and rec.duration_s == pytest.approx(5.0035)
    assert rec.start_time == datetime(2026, 1, 5, 7, 0, tzinfo=timezone.utc)
    np.testing.assert_allclose(rec.volts_per_bit(), 0.195e-6)
    assert np.array_equal(rec.read(0, rec.n_samples, scaled=False), data.T.astype(np.float32))
    check_reads(rec, data.T * 0.195e-6, np.random.default_rng(5))
    [f] = rec.describe_files()
    assert f["file"] == "rec.dat" and f["bytes"] == data.nbytes and "index" not in f

    # Per-channel scale, default names, a partial last frame, a header to skip.
    folder = tmp_path / "b"
    data = write_dat(folder, n=300, n_ch=3, seed=1)
    raw = (folder / "rec.dat").read_bytes()
    (folder / "rec.dat").write_bytes(b"H" * 64 + raw + b"\x01\x02\x03")
    (folder / "recording.json").write_text(json.dumps(
        {"sampling_rate": 1000.5, "n_channels": 3, "volts_per_bit": [1e-6, -2e-6, 5e-7], "header_bytes": 64}))
    rec = open_recording(folder)
    assert rec.channel_names == ["CH1", "CH2", "CH3"] and rec.n_samples == 300
    np.testing.assert_allclose(rec.read(0, 300), data.T * np.array([1e-6, -2e-6, 5e-7])[:, None], rtol=1e-6)


def test_dat_without_or_with_a_wrong_sidecar_says_what_is_needed(tmp_path):
    write_dat(tmp_path / "none")
    with pytest.raises(RawDataError) as err:
        open_recording(tmp_path / "none")
    msg = str(err.value)
    assert "rec.dat" in msg and "recording.yaml" in msg
    for key in ("sampling_rate", "n_channels", "volts_per_bit", "channel_names", "start_time"):
        assert key in msg
    write_dat(tmp_path / "typo", sample_rate=2000, n_channels=5, volts_per_bit=1e-7)
    with pytest.raises(RawDataError, match="unknown key.*sample_rate"):
        open_recording(tmp_path / "typo")
    write_dat(tmp_path / "names", sampling_rate=2000, n_channels=5, volts_per_bit=1e-7, channel_names=["a", "b"])
    with pytest.raises(RawDataError, match="channel_names"):
        open_recording(tmp_path / "names")


GOOD_SIDECAR = {"sampling_rate": 2000, "n_channels": 5, "volts_per_bit": 1e-7}


@pytest.mark.parametrize("change,expected", [
    ({"n_channels": None}, "missing n_channels; the keys are sampling_rate (Hz), n_channels"),
    ({"volts_per_bit": None}, "missing volts_per_bit (or uv_per_bit)"),
    ({"uv_per_bit": 0.195}, "give volts_per_bit or uv_per_bit, not both"),
    ({"sampling_rate": -5}, "sampling_rate must be a positive number of Hz (got -5)"),
    ({"sampling_rate": "fast"}, "sampling_rate must be a positive number of Hz (got 'fast')"),
    ({"n_channels": 2.5}, "n_channels must be a positive whole number"),
    ({"volts_per_bit": 0}, "volts_per_bit must be a non-zero number of volts per count"),
    ({"volts_per_bit": [1e-7, 2e-7]}, "volts_per_bit must be a number or a list of 5 numbers"),
    ({"channel_names": "hpc1"}, "channel_names must be a list of channel names"),
    ({"header_bytes": -1}, "header_bytes must be a whole number >= 0 (bytes to skip"),
    ({"start_time": "yesterday"}, "start_time must be an ISO 8601 date and time"),
])
def test_each_sidecar_mistake_gets_one_sentence_naming_the_key(tmp_path, change, expected):
    sidecar = {k: v for k, v in {**GOOD_SIDECAR, **change}.items() if v is not None}
    write_dat(tmp_path / "rec", **sidecar)
    with pytest.raises(RawDataError) as err:
        open_recording(tmp_path / "rec")
    assert str(err.value).startswith(f"{tmp_path / 'rec' / 'recording.yaml'}: ")
    assert expected in str(err.value)


def test_sidecar_numbers_as_json_and_people_write_them(tmp_path):
    """JSON writes 1e-06 and people write 1e-7: numbers, though YAML 1.1 reads them as text."""
    write_dat(tmp_path / "rec")
    (tmp_path / "rec" / "recording.yaml").write_text("sampling_rate: 2e3\nn_channels: 5\nvolts_per_bit: 1e-7\n"
                                                     "start_time: 2026-01-05T07:00:00\n")
    rec = open_recording(tmp_path / "rec")
    assert rec.sampling_rate == 2000.0 and rec.start_time == datetime(2026, 1, 5, 7, 0, tzinfo=timezone.utc)
    np.testing.assert_allclose(rec.volts_per_bit(), 1e-7)


def test_empty_folder_names_what_was_looked_for(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RawDataError, match="holds no raw data this pipeline can read") as err:
        open_recording(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(err.value) and ".rhd" in str(err.value)


def test_originals_are_left_untouched():
    from neo.rawio import IntanRawIO

    folders = [real("intan-rhd"), real("openephys-binary"), real("openephys-legacy")]
    before = {str(f): checksums(f) for f in folders}
    for path in sorted(folders[0].glob("*.rhd")):  # in place, each file on its own
        rec = neo_formats.NeoRecording(folders[0], IntanRawIO, {"filename": str(path)}, format="intan", source=path)
        rec.read(0, rec.n_samples)
    for f in folders[1:]:
        rec = open_recording(f)
        rec.read(0, rec.n_samples)
        rec.describe_files()
    assert {str(f): checksums(f) for f in folders} == before


# -- through the `ephys` command -----------------------------------------------------------
def raw_for(kind: str, project, tmp_path) -> Path:
    raw = project.raw / kind
    if kind == "intan":
        raw.mkdir()
        shutil.copy(real("intan-rhd/sampledata_v3.0_64ch.rhd"), raw / "rec_260105_070000.rhd")
        names = intan_names(64)
    elif kind == "intan-v1.5":
        raw.mkdir()
        shutil.copy(real("intan-rhd/sampledata_v1.5_tempsensor.rhd"), raw / "old.rhd")
        names = intan_names(32)
    elif kind == "openephys-binary":
        copy_tree(real("openephys-binary"), raw)
        names = [f"CH{i}" for i in range(16)]
    elif kind == "openephys-legacy":
        copy_tree(real("openephys-legacy"), raw)
        names = [f"CH{i}" for i in range(1, 17)]
    else:
        t = np.arange(130_000) / 20000.0
        rng = np.random.default_rng(0)
        sig = 2000 * np.sin(2 * np.pi * 6 * t)[:, None] + rng.normal(0, 300, (t.size, 4))
        raw.mkdir()
        (raw / "rec.dat").write_bytes(sig.astype("<i2").tobytes())
        names = ["HPC1", "HPC2", "CTX1", "EMG1"]
        (raw / "recording.yaml").write_text(yaml.safe_dump({
            "sampling_rate": 20000, "n_channels": 4, "uv_per_bit": 0.195, "channel_names": names}))
    for p in [raw, *raw.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    (raw / "channel_map.yaml").write_text(yaml.safe_dump({"regions": {"cortex": names}}))
    return raw


@pytest.mark.filterwarnings("ignore:This filename .* does not conform to MNE naming conventions")
@pytest.mark.parametrize("kind", ["intan", "intan-v1.5", "openephys-binary", "openephys-legacy", "dat"])
def test_inspect_and_convert_segment_through_the_cli(project, tmp_path, kind):
    raw = raw_for(kind, project, tmp_path)
    out = project.dir / "out"
    proc = project.ephys("inspect", str(raw), str(out / "recording.json"))
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "recording.json").read_text())
    assert info["format"] == kind.split("-v")[0]
    rec = open_recording(raw)
    assert info["n_samples"] == rec.n_samples and info["sampling_rate"] == rec.sampling_rate
    assert len(info["segments"]) == 1 and info["gaps"] == []
    if kind == "intan":
        assert info["start_time"] == "2026-01-05T07:00:00+00:00"  # from Intan's file name
    proc = project.ephys("convert-segment", str(out / "recording.json"), "0", str(out / "lfp" / "seg0.fif"))
    assert proc.returncode == 0, proc.stderr
    lfp = mne.io.read_raw_fif(out / "lfp" / "seg0.fif", preload=True, verbose=False)
    factor = int(round(rec.sampling_rate / 1000))
    assert lfp.info["sfreq"] == 1000.0
    assert lfp.ch_names == rec.channel_names
    assert lfp.n_times == math.ceil(rec.n_samples / factor) == info["n_lfp_samples"]
    dec = design_decimator(rec.sampling_rate, 1000.0)
    names = rec.channel_names
    ref = dec.decimate_range(lambda a, b: rec.read(a, b, names), rec.n_samples, 0, dec.n_output(rec.n_samples))
    np.testing.assert_allclose(lfp.get_data(), ref, rtol=0, atol=1e-6 * np.max(np.abs(ref)))


@pytest.mark.filterwarnings("ignore:This filename .* does not conform to MNE naming conventions")
def test_gap_between_legacy_recordings_is_annotated_in_the_lfp(project, tmp_path):
    folder = legacy_with_second_recording(tmp_path, gap=40_000)  # 1 s between the recordings
    raw = shutil.copytree(folder, project.raw / "two")
    (raw / "channel_map.yaml").write_text("regions:\n  cortex: CH1-CH16\n")
    out = project.dir / "out"
    assert project.ephys("inspect", str(raw), str(out / "recording.json")).returncode == 0
    info = json.loads((out / "recording.json").read_text())
    assert info["gaps"] == [{"start_s": 3.328, "duration_s": 1.0, "channels": "all"}]
    proc = project.ephys("convert-segment", str(out / "recording.json"), "0", str(out / "lfp" / "seg0.fif"))
    assert proc.returncode == 0, proc.stderr
    lfp = mne.io.read_raw_fif(out / "lfp" / "seg0.fif", verbose=False)
    assert lfp.n_times == math.ceil((2 * 133120 + 40_000) / 40)
    [(onset, duration)] = [(a["onset"], a["duration"]) for a in lfp.annotations if a["description"] == "BAD_ACQ_SKIP"]
    assert onset == pytest.approx(3.328, abs=1e-3) and duration == pytest.approx(1.0, abs=1e-3)
