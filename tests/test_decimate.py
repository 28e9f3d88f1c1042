"""Tests of the anti-aliasing decimator (pipeline.dsp.decimate).

The specification is checked by measurement (sinusoids through the decimator) and
analytically (the stages' frequency responses composed with scipy.signal.freqz); the
arithmetic against scipy.signal.resample_poly; the seamless-segment promise by comparing
pieces with one whole run, bit for bit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import signal

from pipeline.dsp.decimate import Decimator, design_decimator

RATES = [(32000, 1000), (30000, 1000), (20000, 1000), (2000, 1000), (40000, 2000), (32000, 250)]
PASS_FRACTION, STOP_FRACTION = 0.4, 0.5
RIPPLE_DB, ATTEN_DB = 0.1, 80.0


def whole(dec, x: np.ndarray) -> np.ndarray:
    n = x.shape[-1]
    return dec.decimate_range(lambda a, b: x[:, a:b], n, 0, dec.n_output(n))


def edge_trim(dec) -> int:
    """Output samples at each end that depend on the held edge values."""
    a, b = dec.input_range(0, 1)
    reach = max(-a, b - 1)
    return -(-reach // dec.factor) + 1


def fit_sinusoid(y: np.ndarray, f: float, rate: float, phase0: float = 0.0, j0: int = 0):
    """Least-squares amplitude and phase (relative to cos(2 pi f t + phase0)) of y."""
    t = (j0 + np.arange(y.shape[-1])) / rate
    arg = 2 * np.pi * f * t + phase0
    design = np.stack([np.cos(arg), -np.sin(arg)], axis=1)
    (c, s), *_ = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)
    return float(np.hypot(c, s)), float(np.arctan2(s, c))


def alias(f, rate):
    """Frequency that f folds onto when sampled at `rate`."""
    return np.abs((np.asarray(f, dtype=np.float64) + rate / 2) % rate - rate / 2)


def tones(rate_in, freqs, n, phase=0.3):
    i = np.arange(n)
    return np.stack([np.cos(2 * np.pi * f * i / rate_in + phase) for f in freqs]).astype(np.float32)


# --------------------------------------------------------------------------------------
# Specification, by measurement
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate_in,rate_out", RATES)
def test_passband_gain_measured(rate_in, rate_out):
    dec = design_decimator(rate_in, rate_out)
    assert dec.factor == rate_in // rate_out
    freqs = [0.5, 1.0, 7.0, 0.05 * rate_out, 0.1 * rate_out, 0.2 * rate_out, 0.3 * rate_out,
             0.37 * rate_out, 0.39 * rate_out, PASS_FRACTION * rate_out]
    n_out = 3000
    y = whole(dec, tones(rate_in, freqs, n_out * dec.factor))
    trim = edge_trim(dec)
    for f, row in zip(freqs, y):
        amp, _ = fit_sinusoid(row[trim:-trim], f, rate_out, 0.3, j0=trim)
        gain_db = 20 * np.log10(amp)
        assert abs(gain_db) <= RIPPLE_DB, f"{f} Hz: gain {gain_db:+.4f} dB"


def _stop_freqs(dec, rate_in, rate_out):
    fo = rate_out
    freqs = [STOP_FRACTION * fo, STOP_FRACTION * fo + 0.5, STOP_FRACTION * fo + 3, 0.6 * fo, 0.77 * fo,
             fo - 10, fo - 1, fo + 0.25, fo + 7, 1.5 * fo, 2 * fo - 3, 2 * fo + 11, 3 * fo + 1,
             rate_in / 2 - 3, rate_in / 2]
    for stage in dec.stages[1:]:
        r1 = stage.rate_in  # rate between two stages: its multiples alias to DC there
        freqs += [r1 / 2, r1 - 0.4 * fo, r1 - 7, r1 + 5, 2 * r1 - 11]
    return sorted({f for f in freqs if STOP_FRACTION * fo <= f <= rate_in / 2})


@pytest.mark.parametrize("rate_in,rate_out", RATES)
def test_stopband_attenuation_measured(rate_in, rate_out):
    dec = design_decimator(rate_in, rate_out)
    freqs = _stop_freqs(dec, rate_in, rate_out)
    # Include tones that alias onto low output frequencies (7 Hz, 10 Hz, ~DC).
    assert any(alias(f, rate_out) <= 11 for f in freqs)
    n_out = 2000
    y = whole(dec, tones(rate_in, freqs, n_out * dec.factor))
    trim = edge_trim(dec)
    for f, row in zip(freqs, y):
        level = np.max(np.abs(row[trim:-trim]))  # input amplitude is 1
        atten = -20 * np.log10(max(level, 1e-30))
        assert atten >= ATTEN_DB, f"{f} Hz (aliases to {alias(f, rate_out):g} Hz): only {atten:.1f} dB"


# --------------------------------------------------------------------------------------
# Specification, analytically: compose the stages' responses
# --------------------------------------------------------------------------------------
def composite_response(dec, f: np.ndarray) -> np.ndarray:
    """|H| of the whole chain at input frequencies f, each stage evaluated where f lands."""
    mag = np.ones_like(f, dtype=np.float64)
    here = np.asarray(f, dtype=np.float64)
    for stage in dec.stages:
        _, h = signal.freqz(stage.taps, worN=here, fs=stage.rate_in)
        mag *= np.abs(h)
        here = alias(here, stage.rate_in / stage.factor)
    return mag


@pytest.mark.parametrize("rate_in,rate_out", RATES)
def test_composite_frequency_response(rate_in, rate_out):
    dec = design_decimator(rate_in, rate_out)
    assert 1 <= len(dec.stages) <= 3
    rate = rate_in
    for stage in dec.stages:
        assert stage.rate_in == rate
        assert len(stage.taps) % 2 == 1  # odd: a whole-sample delay, removable
        assert np.allclose(stage.taps, stage.taps[::-1], rtol=0, atol=1e-15)  # linear phase
        rate /= stage.factor
    assert rate == rate_out
    f_pass = np.linspace(0, PASS_FRACTION * rate_out, 2001)
    gain_db = 20 * np.log10(composite_response(dec, f_pass))
    assert np.max(np.abs(gain_db)) <= RIPPLE_DB, np.max(np.abs(gain_db))
    f_stop = np.linspace(STOP_FRACTION * rate_out, rate_in / 2, 200_001)
    atten = -20 * np.log10(np.max(composite_response(dec, f_stop)))
    assert atten >= ATTEN_DB, atten


# --------------------------------------------------------------------------------------
# Zero phase
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate_in,rate_out", RATES)
@pytest.mark.parametrize("f_frac", [None, 0.3])
def test_zero_phase(rate_in, rate_out, f_frac):
    """Output sample j is the signal at time j / rate_out (input i is at i / rate_in)."""
    dec = design_decimator(rate_in, rate_out)
    f = 10.0 if f_frac is None else f_frac * rate_out
    n_out = 2000
    i = np.arange(n_out * dec.factor)
    x = np.sin(2 * np.pi * f * i / rate_in + 0.4)[None].astype(np.float32)
    y = whole(dec, x)[0]
    trim = edge_trim(dec)
    amp, phase = fit_sinusoid(y[trim:-trim], f, rate_out, 0.4 - np.pi / 2, j0=trim)
    one_input_sample = 2 * np.pi * f / rate_in
    assert abs(phase) < 1e-5, (phase, one_input_sample)
    assert abs(phase) < one_input_sample / 100
    # And directly: the output is the sinusoid at the output times, up to passband ripple.
    j = np.arange(n_out)
    ref = np.sin(2 * np.pi * f * j / rate_out + 0.4)
    np.testing.assert_allclose(y[trim:-trim], amp * ref[trim:-trim], atol=2e-5)


# --------------------------------------------------------------------------------------
# Agreement with scipy.signal.resample_poly
# --------------------------------------------------------------------------------------
def scipy_reference(dec, x: np.ndarray, padtype: str = "constant") -> np.ndarray:
    # resample_poly(x, 1, D, window=h) uses h as the FIR (times up = 1), centres output j
    # on input j * D for an odd-length h and pads beyond the ends per `padtype`.
    y = x.astype(np.float64)
    for stage in dec.stages:
        y = signal.resample_poly(y, 1, stage.factor, window=stage.taps, axis=-1, padtype=padtype)
    return y


@pytest.mark.parametrize("rate_in,rate_out", RATES)
def test_matches_resample_poly_in_the_interior(rate_in, rate_out):
    dec = design_decimator(rate_in, rate_out)
    rng = np.random.default_rng(11)
    n = dec.factor * 500 + 3
    x = rng.standard_normal((3, n)).astype(np.float32)
    ours = whole(dec, x)
    ref = scipy_reference(dec, x)
    assert ours.shape == ref.shape == (3, dec.n_output(n))
    assert ours.dtype == np.float32
    trim = edge_trim(dec)
    np.testing.assert_allclose(ours[:, trim:-trim], ref[:, trim:-trim], rtol=0, atol=2e-6)
    # Sanity of the comparison: a one-sample misalignment would be far outside it.
    assert np.max(np.abs(ours[:, trim + 1 : -trim] - ref[:, trim : -trim - 1])) > 1e-2


@pytest.mark.parametrize("rate_in,rate_out", [(2000, 1000), (3000, 1000), (7000, 1000)])  # prime factors: one stage
def test_single_stage_matches_resample_poly_with_edge_padding_everywhere(rate_in, rate_out):
    dec = design_decimator(rate_in, rate_out)
    assert len(dec.stages) == 1
    rng = np.random.default_rng(3)
    for n in (dec.factor * 200, dec.factor * 200 + 1, dec.factor * 200 + dec.factor - 1):
        x = (rng.standard_normal((2, n)) + 5).astype(np.float32)  # offset: edge holding matters
        ours = whole(dec, x)
        # padtype='edge' holds the first and last input values: the same extension.
        np.testing.assert_allclose(ours, scipy_reference(dec, x, "edge"), rtol=0, atol=1e-5)


def test_constant_input_stays_constant_to_the_ends():
    dec = design_decimator(32000, 1000)
    x = np.full((1, 32 * 100 + 5), 0.25, dtype=np.float32)
    y = whole(dec, x)
    dc_gain = composite_response(dec, np.array([0.0]))[0]
    np.testing.assert_allclose(y, 0.25 * dc_gain, rtol=1e-5)
    assert abs(20 * np.log10(dc_gain)) <= RIPPLE_DB


# --------------------------------------------------------------------------------------
# Seamless segments
# --------------------------------------------------------------------------------------
def _segmented(dec, x, n, bounds, calls):
    def read(a, b):
        calls.append((a, b))
        assert 0 <= a < b <= n, (a, b, n)
        return x[:, a:b]

    return np.concatenate([dec.decimate_range(read, n, j0, j1) for j0, j1 in zip(bounds[:-1], bounds[1:])], axis=1)


SEGMENTATIONS = [
    ("ones", lambda m: list(range(m + 1))),
    ("len3", lambda m: list(range(0, m, 3)) + [m]),
    ("len7_offset5", lambda m: [0, 5] + list(range(12, m, 7)) + [m]),
    ("len97", lambda m: list(range(0, m, 97)) + [m]),
    ("first_and_rest", lambda m: [0, 1, m]),
    ("all_but_last", lambda m: [0, m - 1, m]),
    ("irregular", lambda m: [0, 2, 13, 14, 45, 46, 101, m - 3, m]),
    ("whole", lambda m: [0, m]),
]


@pytest.mark.parametrize("rate_in,rate_out", [(32000, 1000), (30000, 1000), (2000, 1000)])
@pytest.mark.parametrize("extra", [0, 1, 17])  # input length = k * factor + extra
@pytest.mark.parametrize("seg", [s[0] for s in SEGMENTATIONS])
def test_segments_concatenate_exactly(rate_in, rate_out, extra, seg):
    dec = design_decimator(rate_in, rate_out)
    extra = extra % dec.factor
    n = dec.factor * 157 + extra
    m = dec.n_output(n)
    assert m == -(-n // dec.factor)
    rng = np.random.default_rng(extra)
    x = (rng.standard_normal((3, n)) + np.arange(3)[:, None]).astype(np.float32)
    calls: list = []
    full = _segmented(dec, x, n, [0, m], calls)
    bounds = dict(SEGMENTATIONS)[seg](m)
    assert bounds[0] == 0 and bounds[-1] == m and all(b > a for a, b in zip(bounds[:-1], bounds[1:]))
    pieces = _segmented(dec, x, n, bounds, calls)
    assert pieces.shape == (3, m)
    assert np.array_equal(pieces, full)
    # Any single range equals the same part of the whole.
    for j0, j1 in [(0, 1), (m - 1, m), (m // 3, m // 3 + 5)]:
        assert np.array_equal(_segmented(dec, x, n, [j0, j1], calls), full[:, j0:j1])


@pytest.mark.parametrize("n", [1, 2, 31, 32, 33, 100])
def test_short_recordings(n):
    """Recordings shorter than the filters: still seamless, and constant in, constant out."""
    dec = design_decimator(32000, 1000)
    m = dec.n_output(n)
    assert m == -(-n // 32)
    x = np.stack([np.full(n, 2.0), np.linspace(-1, 1, n)]).astype(np.float32)
    calls: list = []
    full = _segmented(dec, x, n, [0, m], calls)
    assert np.array_equal(_segmented(dec, x, n, list(range(m + 1)), calls), full)
    np.testing.assert_allclose(full[0], 2.0, rtol=0.012)  # 0.1 dB


# --------------------------------------------------------------------------------------
# Errors and sizes
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate_in,rate_out", [(1000, 2000), (32000, 999.9999), (30000, 1000.0001)])
def test_rates_without_a_usable_ratio_are_refused(rate_in, rate_out):
    with pytest.raises(ValueError) as err:
        design_decimator(rate_in, rate_out)
    msg = str(err.value)
    assert f"{rate_in:g}" in msg and f"{rate_out:g}" in msg and "lfp.rate" in msg


# --------------------------------------------------------------------------------------
# Rational ratios: integer stages, then one up/down stage
# --------------------------------------------------------------------------------------
RATIONAL = [(32556, 1000), (32000, 1024), (30000, 7000), (1500, 1000), (32000.5, 1000)]


@pytest.mark.parametrize("rate_in,rate_out", RATIONAL)
def test_rational_ratio_meets_the_specification(rate_in, rate_out):
    """Measured with tones: flat within 0.1 dB to 0.4 fs_out, and at least 80 dB down
    for tones from 0.5 fs_out to the raw Nyquist rate (wherever they alias to)."""
    dec = design_decimator(rate_in, rate_out)
    assert dec.rational is not None
    n_out = 1200
    n = int(np.ceil(n_out * rate_in / rate_out))
    j0, j1 = 300, n_out - 300  # away from the held ends
    passband = np.linspace(0.01, PASS_FRACTION, 7) * rate_out
    y = dec.decimate_range(lambda a, b: tones(rate_in, passband, n)[:, a:b], n, j0, j1)
    for row, f in zip(y, passband):
        amp, phase = fit_sinusoid(row, f, rate_out, 0.3, j0)
        assert abs(20 * np.log10(amp)) <= RIPPLE_DB, f
        assert abs(phase) < 1e-3, f  # zero phase: the output is on the recording's clock
    rng = np.random.default_rng(5)
    stop = np.concatenate([[STOP_FRACTION * rate_out], rng.uniform(STOP_FRACTION * rate_out, rate_in / 2, 12)])
    y = dec.decimate_range(lambda a, b: tones(rate_in, stop, n)[:, a:b], n, j0, j1)
    level = 20 * np.log10(np.sqrt(2) * np.sqrt(np.mean(y.astype(np.float64) ** 2, axis=1)) + 1e-30)
    assert np.all(level <= -ATTEN_DB), (stop[level > -ATTEN_DB], level.max())


@pytest.mark.parametrize("rate_in,rate_out", RATIONAL)
def test_rational_stage_matches_resample_poly(rate_in, rate_out):
    """The up/down stage equals scipy's resample_poly with the same filter."""
    dec = design_decimator(rate_in, rate_out)
    r = dec.rational
    rng = np.random.default_rng(2)
    n_mid = 3000
    x = rng.standard_normal((2, n_mid)).astype(np.float32)
    n_out = -(-n_mid * r.up // r.down)
    # Through the public interface with no integer stages: a decimator of the rational stage alone.
    alone = type(dec)(r.rate_in, rate_out, (), r)
    ours = alone.decimate_range(lambda a, b: x[:, a:b], n_mid, 0, n_out)
    ref = signal.resample_poly(x.astype(np.float64), r.up, r.down, axis=-1, window=r.taps / r.up)
    assert ours.shape == ref.shape
    trim = r.half_length // r.up + 2
    np.testing.assert_allclose(ours[:, trim:-trim], ref[:, trim:-trim], rtol=0, atol=2e-5)
    assert np.max(np.abs(ours[:, trim + 1:-trim] - ref[:, trim:-trim - 1])) > 1e-2


@pytest.mark.parametrize("rate_in,rate_out", RATIONAL)
@pytest.mark.parametrize("seg", ["len7_offset5", "irregular", "first_and_rest"])
def test_rational_segments_concatenate_exactly(rate_in, rate_out, seg):
    dec = design_decimator(rate_in, rate_out)
    n = int(rate_in / rate_out * 157) + 3
    m = dec.n_output(n)
    assert m == int(np.ceil(n * rate_out / rate_in - 1e-9))
    x = (np.random.default_rng(1).standard_normal((2, n)) + 3).astype(np.float32)
    calls: list = []
    full = _segmented(dec, x, n, [0, m], calls)
    pieces = _segmented(dec, x, n, dict(SEGMENTATIONS)[seg](m), calls)
    assert np.array_equal(pieces, full)
    np.testing.assert_allclose(_segmented(dec, np.full((1, n), 2.0, np.float32), n, [0, m], calls), 2.0, rtol=0.012)


def test_rational_decimator_survives_recording_json():
    dec = design_decimator(32556, 1000)
    again = Decimator.from_json(json.loads(json.dumps(dec.to_json())))
    assert again.rational.up == dec.rational.up and again.rational.down == dec.rational.down
    assert np.array_equal(again.rational.taps, dec.rational.taps)
    assert [s.factor for s in again.stages] == [s.factor for s in dec.stages]


@pytest.mark.parametrize("rate_in,rate_out", [(0, 1000), (32000, 0), (-32000, 1000)])
def test_non_positive_rates_are_refused(rate_in, rate_out):
    with pytest.raises(ValueError):
        design_decimator(rate_in, rate_out)


@pytest.mark.parametrize("rate_in,rate_out", RATES)
def test_n_output(rate_in, rate_out):
    dec = design_decimator(rate_in, rate_out)
    d = rate_in // rate_out
    for n in (1, d - 1, d, d + 1, 10 * d, 10 * d + 1, 123457):
        if n >= 1:
            assert dec.n_output(n) == -(-n // d) == int(np.ceil(n / d))


def test_same_rate_is_identity():
    dec = design_decimator(1000, 1000)
    x = np.random.default_rng(0).standard_normal((2, 50)).astype(np.float32)
    assert np.array_equal(whole(dec, x), x)


def test_same_rate_hands_the_converters_block_back_scaled():
    """The converter always calls decimate_records; at the raw rate that is its input, in volts."""
    from pipeline.io.block import RecordBlock

    dec = design_decimator(1000, 1000)
    x = np.random.default_rng(1).integers(-2000, 2000, (3, 80)).astype(np.float32)
    scale = np.array([1e-6, -2e-6, 5e-7], dtype=np.float32)
    j0, j1 = 10, 70
    block = RecordBlock.from_held_rows(x[:, j0:j1], 0, 0)
    got = dec.decimate_records(block, j0, j1, scale)
    assert got.dtype == np.float32 and np.array_equal(got, x[:, j0:j1] * scale[:, None])
    assert np.array_equal(dec.decimate_records(block, j0, j1), x[:, j0:j1])
