"""Muscle tone from the LFP (pipeline.dsp.lfp_emg) where the LFP rate is too low for it:
estimated during conversion from the raw data, then used by the spectrogram stage.

The reference is the spectrogram stage's own estimate on a 2000 Hz LFP of the same raw
data; the recording is synthetic, at 32 kHz, with neck muscle activity reaching every
LFP channel (pipeline.synth).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import yaml

from conftest import REPO
from pipeline.convert import convert_segment, inspect_recording
from pipeline.dsp.lfp_emg import PASSBAND_FRACTION, estimate_rate, usable_band
from pipeline.io.lfp import read_lfp
from pipeline.sleep.features import compute_features, read_feature_tables
from pipeline.spectral import brain_region_channels, compute_spectrogram, lfp_emg, region_signals

EPOCH_S = 4.0
DURATION_S = 96.0


@pytest.fixture(scope="module")
def raw32k(tmp_path_factory):
    from pipeline.synth import write_synthetic_recording

    out = tmp_path_factory.mktemp("emg") / "raw"
    write_synthetic_recording(out, duration_s=DURATION_S, n_channels=12, sampling_rate=32000.0, seed=4)
    return out


def inspected(raw, folder, lfp_rate, segment_s=2 * DURATION_S):
    cmap = yaml.safe_load((REPO / "config.yaml").read_text())["channel_maps"]["default"]
    return inspect_recording(raw, folder / f"recording-{lfp_rate:g}-{segment_s:g}.json", lfp_rate=lfp_rate,
                             segment_s=segment_s, default_channel_map=cmap)


@pytest.fixture(scope="module")
def whole_250(raw32k, tmp_path_factory):
    """The recording converted at 250 Hz as one segment, with the estimate."""
    d = tmp_path_factory.mktemp("whole250")
    info = inspected(raw32k, d, 250.0)
    convert_segment(info, 0, d / "seg0.fif", lfp_emg_npz=d / "seg0-emg.npz", epoch_s=EPOCH_S)
    return info, d


def test_the_rate_criterion_is_the_decimators():
    from pipeline.dsp.decimate import PASSBAND_FRACTION as decimator_flat

    assert PASSBAND_FRACTION == decimator_flat
    assert usable_band(1000.0) == (300.0, 400.0) and usable_band(500.0) is None
    assert estimate_rate(32000.0, 1000.0) is None  # the LFP suffices
    assert estimate_rate(32000.0, 250.0) == 2000.0  # 32000 / 16: integer stages only
    assert estimate_rate(800.0, 200.0) is None  # the raw data cannot give it either


def test_estimate_at_250_hz_agrees_with_the_lfp_stage_s_at_2000_hz(raw32k, whole_250, tmp_path):
    info, d = whole_250
    with np.load(d / "seg0-emg.npz") as z:
        est, onsets, regions = z["lfp_emg"], z["onsets_s"], list(z["regions"])
    info2k = inspected(raw32k, tmp_path, 2000.0)
    convert_segment(info2k, 0, tmp_path / "lfp2k.fif")
    signals, _ = region_signals(read_lfp(tmp_path / "lfp2k.fif", preload=False), info2k)
    brain = list(brain_region_channels(info2k))
    assert regions == brain and len(brain) >= 2 and "emg" not in brain
    ref = lfp_emg([signals[r] for r in brain], 2000.0, EPOCH_S)
    assert len(est) == len(ref) == int(DURATION_S // EPOCH_S)
    np.testing.assert_allclose(onsets, EPOCH_S * np.arange(len(est)))
    assert np.std(ref) > 0.005  # the muscle tone varies from epoch to epoch: something to agree on
    # Measured: correlation 1 - 1e-12, differences ~1e-7 (the same filters, averaged before, not after).
    assert np.corrcoef(est, ref)[0, 1] > 0.999
    assert np.max(np.abs(est - ref)) < 1e-3


def test_segments_join(raw32k, whole_250, tmp_path):
    _, d = whole_250
    with np.load(d / "seg0-emg.npz") as z:
        whole, whole_onsets = z["lfp_emg"], z["onsets_s"]
    info = inspected(raw32k, tmp_path, 250.0, segment_s=DURATION_S / 2)
    assert len(info.segments) == 2
    parts, onsets = [], []
    for seg in info.segments:
        out = tmp_path / f"seg{seg.index}-emg.npz"
        convert_segment(info, seg.index, tmp_path / f"seg{seg.index}.fif", lfp_emg_npz=out, epoch_s=EPOCH_S)
        with np.load(out) as z:
            parts.append(z["lfp_emg"])
            onsets.append(z["onsets_s"])
    joined = np.concatenate(parts)
    np.testing.assert_array_equal(np.concatenate(onsets), whole_onsets)
    # Each segment's band-pass runs forwards and backwards over its own samples (as the
    # spectrogram stage's estimate does): the two epochs at the join see its ends.
    join = len(parts[0])
    inner = np.ones(len(whole), dtype=bool)
    inner[join - 1:join + 1] = False
    np.testing.assert_allclose(joined[inner], whole[inner], rtol=0, atol=1e-9)
    np.testing.assert_allclose(joined[~inner], whole[~inner], rtol=0, atol=1e-3)


def test_the_spectrogram_stage_and_features_use_it_and_warn_only_without_it(whole_250, tmp_path, caplog):
    info, d = whole_250
    with np.load(d / "seg0-emg.npz") as z:
        est = z["lfp_emg"]
    with caplog.at_level(logging.WARNING, logger="pipeline.spectral"):
        compute_spectrogram(info, d / "seg0.fif", tmp_path / "with.npz", epoch_s=EPOCH_S, time_bandwidth=3,
                            fmax=100, lfp_emg_npz=d / "seg0-emg.npz")
    assert "no muscle tone" not in caplog.text
    with np.load(tmp_path / "with.npz") as z:
        np.testing.assert_array_equal(z["lfp_emg"], est[:len(z["onsets_s"])])
    compute_features(tmp_path / "with.npz", tmp_path / "with.tsv")
    _, _, feats = read_feature_tables([tmp_path / "with.tsv"])
    assert "lfp_emg" in feats
    with caplog.at_level(logging.WARNING, logger="pipeline.spectral"):
        compute_spectrogram(info, d / "seg0.fif", tmp_path / "without.npz", epoch_s=EPOCH_S, time_bandwidth=3,
                            fmax=100)
    assert "no muscle tone from the LFP" in caplog.text
    with np.load(tmp_path / "without.npz") as z:
        assert "lfp_emg" not in z


def test_ephys_convert_writes_the_estimate_only_at_a_low_lfp_rate(project, recording_in):
    raw = recording_in("rec1")  # 2 kHz raw
    for rate, expect in ((1000, []), (250, ["seg0-emg.npz", "seg1-emg.npz", "seg2-emg.npz"])):
        project.set_config(lfp={"rate": rate, "segment_s": 60})
        out = project.dir / f"out{rate}"
        project.ephys("convert", str(raw), str(out), check=True)
        assert sorted(p.name for p in (out / "lfp").glob("*-emg.npz")) == expect
        assert sorted(p.name for p in (out / "lfp").iterdir() if not p.name.endswith("-emg.npz")) == \
            ["seg0.fif", "seg0.json", "seg1.fif", "seg1.json", "seg2.fif", "seg2.json"]
    with np.load(out / "lfp" / "seg0-emg.npz") as z:
        assert float(z["rate"]) == 2000.0 and len(z["lfp_emg"]) == 15


def test_conversion_averages_a_few_channels_spread_over_each_region():
    """Summing every channel of a 20-channel region at the raw rate cost conversion 1.23x
    its time; a few spread over the region carry the muscle activity as well (the estimate
    from 4 of 20 followed the one from all 20 with r = 0.96 on the 64-channel synthetic
    recording of bench/convert.py)."""
    from pipeline.convert import EMG_CHANNELS_PER_REGION, spread

    names = [f"CSC{i}" for i in range(1, 21)]
    picked = spread(names, EMG_CHANNELS_PER_REGION)
    assert len(picked) == EMG_CHANNELS_PER_REGION <= 4
    assert picked[0] == "CSC1" and picked[-1] == "CSC20" and len(set(picked)) == len(picked)
    assert spread(names[:3], 4) == names[:3]
