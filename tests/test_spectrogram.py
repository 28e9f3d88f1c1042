"""Tests of the multitaper PSD and the epoch spectrogram (pipeline.dsp.spectrogram).

Reference: MNE's psd_array_multitaper. Two differences are by design and are accounted
for explicitly below rather than hidden in a loose tolerance:

* taper weighting: with adaptive=False MNE weights taper k's periodogram by its DPSS
  concentration eigenvalue lambda_k (0.99994, 0.9976, 0.9594 for NW = 2); we average
  the K = 2NW - 1 = 3 tapers with equal weight. output='complex' gives MNE's per-taper
  spectra, so the equal-weight average of MNE's own spectra can be formed exactly.
* taper symmetry: MNE uses periodic DPSS (sym=False: the first N points of a length
  N + 1 window), we use symmetric ones, which changes each bin by O(1/N).

With MNE's own building blocks given symmetric tapers and equal weights the two agree to
1e-9, which pins down the taper count, the one-sided scaling (DC and Nyquist bins) and
normalization='full' (V^2/Hz, i.e. divided by the sampling rate).
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.dsp.spectrogram import epoch_spectrogram, multitaper_psd

mne = pytest.importorskip("mne")
mne.set_log_level("ERROR")

NW = 2.0


def mne_psd(x, rate, **kw):
    n = x.shape[-1]
    bandwidth = 2 * NW / (n / rate)  # full bandwidth in Hz: half_nbw = bandwidth * T / 2 = NW
    return mne.time_frequency.psd_array_multitaper(
        x, rate, bandwidth=bandwidth, adaptive=False, low_bias=True, normalization="full", **kw
    )


def signals(kind: str, n: int, rate: float, rows: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((rows, n))
    if kind == "noise":
        return noise
    t = np.arange(n) / rate
    return 0.1 * noise + np.sin(2 * np.pi * 7.3 * t + 0.2) + 0.5 * np.cos(2 * np.pi * 31.0 * t)


@pytest.mark.parametrize("kind", ["noise", "sine"])
@pytest.mark.parametrize("rate,n", [(250.0, 2000), (1000.0, 4001)])  # even and odd lengths
def test_matches_mne_building_blocks_exactly(kind, rate, n):
    from mne.time_frequency.multitaper import _mt_spectra, _psd_from_mt, dpss_windows

    x = signals(kind, n, rate)
    freqs, psd = multitaper_psd(x, rate, time_bandwidth=NW)
    # MNE asks for 2NW = 4 tapers and low_bias keeps those with eigenvalue > 0.9: 3.
    tapers, eigvals = dpss_windows(n, NW, int(2 * NW), sym=True, low_bias=True)
    assert len(eigvals) == 3 == int(2 * NW) - 1
    spectra, mne_freqs = _mt_spectra(x, tapers, rate, remove_dc=True)
    ref = _psd_from_mt(spectra, np.ones((1, len(eigvals), 1))) / rate  # normalization='full'
    np.testing.assert_array_equal(freqs, mne_freqs)
    np.testing.assert_allclose(psd, ref, rtol=1e-9, atol=0)


@pytest.mark.parametrize("kind", ["noise", "sine"])
def test_matches_mne_public_api(kind):
    rate, n = 1000.0, 4000
    x = signals(kind, n, rate, seed=1)
    freqs, psd = multitaper_psd(x, rate, time_bandwidth=NW)

    spectra, mne_freqs, weights = mne_psd(x, rate, output="complex")
    np.testing.assert_array_equal(freqs, mne_freqs)
    assert spectra.shape == (4, 3, len(freqs))  # same taper count: 3
    eigvals = weights.ravel() ** 2
    # Equal-weight average of MNE's tapered spectra. MNE divides DC/Nyquist
    # coefficients by sqrt(2) and the whole PSD by 2 * sfreq ('full'); complex output
    # is the coefficients divided by sfreq, so power = 2 * |c|^2 * sfreq.
    equal_weight = 2 * np.mean(np.abs(spectra) ** 2, axis=-2) * rate
    # Only the periodic-vs-symmetric taper difference remains: ~0.5% at N = 4000 in
    # most bins, up to ~2.5% in low-power bins on the sidelobes of a strong tone (the
    # two taper shapes leak differently there).
    rel = np.abs(psd / equal_weight - 1)
    assert np.quantile(rel, 0.99) < 0.01
    assert rel.max() < 0.03
    assert abs(np.median(psd / equal_weight) - 1) < 0.002

    power, power_freqs = mne_psd(x, rate)
    np.testing.assert_array_equal(freqs, power_freqs)
    # MNE's eigenvalue-weighted combination: sum lambda_k P_k / sum lambda_k. Relative to
    # the equal-weight mean it lies between K min(lambda)/sum and K max(lambda)/sum.
    lo, hi = 3 * eigvals.min() / eigvals.sum(), 3 * eigvals.max() / eigvals.sum()
    ratio = power / equal_weight
    assert np.all(ratio >= lo - 1e-9) and np.all(ratio <= hi + 1e-9)
    ratio_ours = psd / power
    assert np.all(ratio_ours > 0.97 / hi) and np.all(ratio_ours < 1.03 / lo)  # follows from the two above
    # Integrated power agrees closely; the peaks are in the same bins.
    df = freqs[1]
    np.testing.assert_allclose(psd.sum(-1) * df, power.sum(-1) * df, rtol=0.005)
    assert np.array_equal(np.argmax(psd, -1), np.argmax(power, -1))


@pytest.mark.parametrize("n", [20000, 20001])
def test_parseval_white_noise(n):
    rate = 500.0
    sigma = 3e-5  # volts
    x = sigma * np.random.default_rng(n).standard_normal((8, n))
    freqs, psd = multitaper_psd(x, rate)
    df = rate / n
    assert freqs[1] == pytest.approx(df)
    assert len(freqs) == n // 2 + 1
    power = psd.sum(-1) * df
    np.testing.assert_allclose(power, x.var(-1), rtol=0.03)
    assert power.mean() == pytest.approx(sigma**2, rel=0.015)
    # White noise: flat at sigma^2 / (rate / 2) V^2/Hz (one-sided).
    assert np.median(psd[:, 1:-1]) == pytest.approx(2 * sigma**2 / rate, rel=0.05)


def test_sinusoid_power_and_scaling():
    rate, n = 250.0, 1000
    t = np.arange(n) / rate
    a = 2e-4
    x = a * np.sin(2 * np.pi * 7.0 * t + 1.0) + 0.5  # offset: the mean is removed
    freqs, psd = multitaper_psd(x, rate)
    assert freqs[np.argmax(psd)] == 7.0
    assert psd.sum() * freqs[1] == pytest.approx(a**2 / 2, rel=0.01)
    # Mean removal and quadratic scaling.
    _, psd0 = multitaper_psd(x - 0.5, rate)
    np.testing.assert_allclose(psd, psd0, rtol=1e-6, atol=1e-12 * psd.max())
    _, psd3 = multitaper_psd(3 * (x - 0.5), rate)
    np.testing.assert_allclose(psd3, 9 * psd0, rtol=1e-12)
    # Leading dimensions are kept.
    stacked = np.stack([np.stack([x, 2 * x, x])] * 2)
    _, psd_nd = multitaper_psd(stacked, rate)
    assert psd_nd.shape == (2, 3, len(freqs))
    np.testing.assert_allclose(psd_nd[1, 1], 4 * psd, rtol=1e-12)


# --------------------------------------------------------------------------------------
# Epoch spectrogram
# --------------------------------------------------------------------------------------
RATE, EPOCH_S = 250.0, 4.0
N_EPOCH = int(RATE * EPOCH_S)


def test_epoch_spectrogram_shape_fmax_and_peak():
    n = int(10.6 * N_EPOCH)
    t = np.arange(n) / RATE
    rng = np.random.default_rng(2)
    x = np.sin(2 * np.pi * 7.0 * t) + 0.1 * rng.standard_normal(n)
    freqs, power = epoch_spectrogram(x, RATE, EPOCH_S, fmax=40.1)
    assert power.shape == (int(np.floor(n / (EPOCH_S * RATE))), len(freqs)) == (10, 161)
    assert freqs[0] == 0 and freqs.max() <= 40.1 and freqs[-1] == 40.0
    np.testing.assert_allclose(np.diff(freqs), 1 / EPOCH_S)
    assert np.all(freqs[np.argmax(power, axis=1)] == 7.0)
    on_bin, _ = epoch_spectrogram(x, RATE, EPOCH_S, fmax=40.0)  # fmax itself is kept
    np.testing.assert_array_equal(on_bin, freqs)
    freqs_all, power_all = epoch_spectrogram(x, RATE, EPOCH_S)
    assert len(freqs_all) == N_EPOCH // 2 + 1 and freqs_all[-1] == RATE / 2
    np.testing.assert_array_equal(power_all[:, : len(freqs)], power)
    # The trailing 0.6 epoch is dropped, not padded: appending data to it changes nothing.
    _, power_more = epoch_spectrogram(np.concatenate([x, np.ones(300)]), RATE, EPOCH_S, fmax=40.1)
    np.testing.assert_array_equal(power_more, power)
    # Shorter than one epoch: no rows.
    _, none = epoch_spectrogram(x[: N_EPOCH - 1], RATE, EPOCH_S, fmax=40.1)
    assert none.shape == (0, len(freqs))


def test_rows_are_the_epochs_from_the_start():
    """Row i is the PSD of samples [i * n, (i + 1) * n): each epoch has its own tone."""
    tones = [3.0, 7.0, 12.5, 20.0, 33.25, 7.0]
    t = np.arange(N_EPOCH) / RATE
    x = np.concatenate([np.sin(2 * np.pi * f * t) for f in tones] + [np.zeros(123)])
    freqs, power = epoch_spectrogram(x, RATE, EPOCH_S, fmax=50)
    assert list(freqs[np.argmax(power, axis=1)]) == tones
    for i in range(len(tones)):
        _, row = multitaper_psd(x[i * N_EPOCH : (i + 1) * N_EPOCH], RATE)
        np.testing.assert_allclose(power[i], row[: len(freqs)], rtol=1e-12, atol=0)


@pytest.mark.parametrize("half_epochs", [5.0, 5.5])
def test_first_half_gives_the_first_rows(half_epochs):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(int(11.3 * N_EPOCH))
    _, whole = epoch_spectrogram(x, RATE, EPOCH_S, fmax=30)
    half = int(half_epochs * N_EPOCH)
    _, first = epoch_spectrogram(x[:half], RATE, EPOCH_S, fmax=30)
    assert first.shape[0] == int(half_epochs)
    np.testing.assert_allclose(first, whole[: first.shape[0]], rtol=1e-12, atol=0)
    # The second half, cut on an epoch boundary, gives the remaining rows.
    cut = int(half_epochs) * N_EPOCH
    _, second = epoch_spectrogram(x[cut:], RATE, EPOCH_S, fmax=30)
    np.testing.assert_allclose(second, whole[first.shape[0] :], rtol=1e-12, atol=0)


def test_per_channel_spectrograms_on_request_are_each_channel_s_own(tmp_path, synthetic_recording):
    """spectrogram.per_channel: one spectrogram per good channel of a region, the same as
    computing that channel alone; off by default."""
    import mne

    from pipeline.convert import convert_segment, inspect_recording
    from pipeline.dsp.spectrogram import epoch_spectrogram
    from pipeline.spectral import compute_spectrogram

    from conftest import REPO
    from pipeline.config import load_config

    cfg = load_config(REPO / "config.yaml")
    info = inspect_recording(synthetic_recording, tmp_path / "recording.json", lfp_rate=1000, segment_s=3600,
                             default_channel_map=cfg["channel_maps"]["default"])
    convert_segment(info, 0, tmp_path / "seg0.fif")
    compute_spectrogram(info, tmp_path / "seg0.fif", tmp_path / "plain.npz", epoch_s=4.0, time_bandwidth=2.0, fmax=200)
    with np.load(tmp_path / "plain.npz") as z:
        assert "channel_power" not in z
    compute_spectrogram(info, tmp_path / "seg0.fif", tmp_path / "each.npz", epoch_s=4.0, time_bandwidth=2.0, fmax=200,
                        per_channel=True)
    raw = mne.io.read_raw_fif(tmp_path / "seg0.fif", verbose=False)
    mapped = [c.name for c in info.channels if c.region and not c.bad and c.name in raw.ch_names]
    with np.load(tmp_path / "each.npz") as z:
        names, power = [str(n) for n in z["channel_names"]], z["channel_power"]
        np.testing.assert_array_equal(z["power"], np.load(tmp_path / "plain.npz")["power"])
    assert names == mapped and power.shape[0] == len(mapped)
    _, own = epoch_spectrogram(raw.get_data(picks=[names[1]])[0], raw.info["sfreq"], 4.0, time_bandwidth=2.0, fmax=200)
    np.testing.assert_allclose(power[1], own.astype(np.float32), rtol=1e-6)
