"""Anti-aliased, zero-phase decimation from the raw rate to the LFP rate.

The converter asks for LFP samples [j0, j1) of a recording and gets exactly the values
that decimating the whole recording in one piece would give: every output sample is a
fixed weighted sum of input samples around it, the input is extended beyond the
recording's ends by holding its first and last values, and the filters are linear
phase with their delay removed. That is what lets segments run as independent jobs.

The decimation runs in one to three stages of odd-length, symmetric equiripple FIR
filters (Parks-McClellan), chosen to meet the specification at a low cost per input
sample; where the rates are not whole multiples (32556 Hz -> 1000 Hz), integer stages
are followed by one up/down stage with a Kaiser-windowed sinc. The kernels are in
pipeline.dsp.fir_kernel. The specification:
passband flat within 0.1 dB up to 0.4 x the output rate, at least 80 dB of attenuation
from 0.5 x the output rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Callable

import numpy as np

from pipeline.dsp.fir_kernel import SLACK, block_rows, decimate_block, decimate_rows

PASSBAND_FRACTION = 0.4  # of the output rate
STOPBAND_FRACTION = 0.5  # of the output rate
PASSBAND_RIPPLE_DB = 0.1
STOPBAND_ATTENUATION_DB = 80.0
_DESIGN_MARGIN_DB = 3.0  # designed for 83 dB so that float32 rounding keeps 80
_MAX_UP = 10000  # largest denominator of a rational rate ratio


@dataclass(frozen=True)
class DecimationStage:
    factor: int
    rate_in: float
    taps: np.ndarray = field(repr=False)

    @property
    def half_length(self) -> int:
        return (len(self.taps) - 1) // 2


@dataclass(frozen=True)
class RationalStage:
    """A last stage resampling by up/down (both integers, up < down): output J is
    sum_k taps[k] * xu[J*down + k - half], where xu is the input with up - 1 zeros
    after every sample. The taps (a Kaiser-windowed sinc, gain `up`) are long when up
    is large, so recording.json keeps the design, not the taps."""

    up: int
    down: int
    rate_in: float
    f_pass: float
    f_stop: float
    atten_db: float
    taps: np.ndarray = field(repr=False)

    @property
    def half_length(self) -> int:
        return (len(self.taps) - 1) // 2

    def input_range(self, j0: int, j1: int) -> tuple[int, int]:
        h = self.half_length
        return -((h - j0 * self.down) // self.up), ((j1 - 1) * self.down + h) // self.up + 1


def _kaiser_lowpass(rate: float, f_pass: float, f_stop: float, atten_db: float, gain: float) -> np.ndarray:
    """Odd-length Kaiser-windowed sinc low-pass (the window method; numpy only)."""
    n = _kaiser_length(rate, f_pass, f_stop, atten_db)
    n += 1 - n % 2
    beta = 0.1102 * (atten_db - 8.7)
    fc = (f_pass + f_stop) / 2 / rate
    m = np.arange(n) - (n - 1) / 2
    h = 2 * fc * np.sinc(2 * fc * m) * np.kaiser(n, beta)
    return h * (gain / h.sum())


def design_rational(up: int, down: int, rate_in: float, f_pass: float, f_stop: float,
                    atten_db: float) -> RationalStage:
    taps = _kaiser_lowpass(rate_in * up, f_pass, f_stop, atten_db, up)
    return RationalStage(up, down, rate_in, f_pass, f_stop, atten_db, taps)


@dataclass(frozen=True)
class Decimator:
    rate_in: float
    rate_out: float
    stages: tuple[DecimationStage, ...]
    rational: RationalStage | None = None

    @property
    def is_identity(self) -> bool:
        return not self.stages and self.rational is None

    @property
    def factor(self) -> int:
        return int(np.prod([s.factor for s in self.stages]))

    def input_range(self, j0: int, j1: int) -> tuple[int, int]:
        """Input samples [a, b) that output samples [j0, j1) depend on."""
        a, b = self.rational.input_range(j0, j1) if self.rational else (j0, j1)
        for stage in reversed(self.stages):
            h = stage.half_length
            a, b = a * stage.factor - h, (b - 1) * stage.factor + h + 1
        return a, b

    def n_output(self, n_input: int) -> int:
        """Output samples a recording of n_input samples gives (the first at input 0)."""
        n = -(-n_input // self.factor)
        if self.rational:
            n = -(-n * self.rational.up // self.rational.down)
        return n

    def to_json(self) -> dict:
        """The decimator as recording.json keeps it, so every segment uses the same taps."""
        r = self.rational
        return {"rate_in": self.rate_in, "rate_out": self.rate_out,
                "stages": [{"factor": s.factor, "rate_in": s.rate_in, "taps": [float(t) for t in s.taps]}
                           for s in self.stages],
                "rational": None if r is None else {
                    "up": r.up, "down": r.down, "rate_in": r.rate_in, "f_pass": r.f_pass, "f_stop": r.f_stop,
                    "atten_db": r.atten_db, "design": "kaiser"}}

    @classmethod
    def from_json(cls, d: dict) -> "Decimator":
        r = d.get("rational")
        return cls(float(d["rate_in"]), float(d["rate_out"]), tuple(
            DecimationStage(int(s["factor"]), float(s["rate_in"]), np.array(s["taps"], dtype=np.float64))
            for s in d["stages"]), None if r is None else design_rational(
            int(r["up"]), int(r["down"]), float(r["rate_in"]), float(r["f_pass"]), float(r["f_stop"]),
            float(r["atten_db"])))

    def stage_lengths(self, j0: int, j1: int) -> list[int]:
        """Samples each integer stage must output so that the decimator gives outputs [j0, j1)."""
        if not self.stages:
            return []
        if self.rational:
            a, b = self.rational.input_range(j0, j1)
            n_outs = [b - a]
        else:
            n_outs = [j1 - j0]
        for stage in reversed(self.stages[1:]):
            n_outs.insert(0, (n_outs[0] - 1) * stage.factor + 2 * stage.half_length + 1)
        return n_outs

    def decimate_range(self, read: Callable[[int, int], np.ndarray], n_input: int,
                       j0: int, j1: int) -> np.ndarray:
        """Output samples [j0, j1), float32.

        `read(a, b)` returns input samples a..b (0 <= a < b <= n_input) as (channels,
        samples); samples outside [0, n_input) are the held edge values. The result is
        (channels, samples).
        """
        a, b = self.input_range(j0, j1)
        lo, hi = max(a, 0), min(b, n_input)
        x = np.asarray(read(lo, hi), dtype=np.float32)
        rows = np.empty((x.shape[0], b - a + SLACK), dtype=np.float32)
        rows[:, lo - a:hi - a] = x
        rows[:, :lo - a] = x[:, :1]
        rows[:, hi - a:b - a] = x[:, -1:]
        if self.is_identity:
            return np.ascontiguousarray(rows[:, :b - a])
        return decimate_rows(rows, b - a, self.stages, self.stage_lengths(j0, j1), None, self._rational_args(j0, j1))

    def decimate_records(self, block, j0: int, j1: int, scale: np.ndarray | None = None, *, means=None):
        """Output samples [j0, j1) of the channels in `block` (raw samples as the reader
        left them, see fir_kernel.decimate_block), which holds input samples
        input_range(j0, j1) (edges held); (channels, samples) float32, times `scale`.
        With `means` (group, weight, sums), also the groups' weighted sums of those
        input samples, added into `sums` (fir_kernel.decimate_block)."""
        a, b = self.input_range(j0, j1)
        if self.is_identity:  # the LFP rate is the raw rate: the input, scaled
            if means is not None:
                raise ValueError("group means need a decimating stage")
            x = block_rows(block, b - a)
            return x if scale is None else x * np.asarray(scale, dtype=np.float32)[:, None]
        return decimate_block(block, b - a, self.stages, self.stage_lengths(j0, j1), scale,
                              self._rational_args(j0, j1), means)

    def decimate_held_rows(self, rows: np.ndarray, a: int, j0: int, j1: int) -> np.ndarray:
        """Output samples [j0, j1) from float32 `rows` that hold input samples a, a + 1, ...
        (edges already held) and SLACK spare columns after them; the rows must cover
        input_range(j0, j1)."""
        ea, eb = self.input_range(j0, j1)
        if ea < a or eb - a > rows.shape[1] - SLACK:
            raise ValueError(f"rows of input samples [{a}, {a + rows.shape[1] - SLACK}) do not cover "
                             f"[{ea}, {eb}), which outputs [{j0}, {j1}) need")
        x = np.ascontiguousarray(rows[:, ea - a:eb - a + SLACK], dtype=np.float32)
        if self.is_identity:
            return x[:, :eb - ea]
        return decimate_rows(x, eb - ea, self.stages, self.stage_lengths(j0, j1), None, self._rational_args(j0, j1))

    def _rational_args(self, j0: int, j1: int):
        r = self.rational
        return None if r is None else (r.taps, r.up, r.down, j0, r.input_range(j0, j1)[0], j1 - j0)


def _kaiser_length(rate: float, f_pass: float, f_stop: float, atten_db: float) -> int:
    width = 2 * np.pi * (f_stop - f_pass) / rate
    return int(np.ceil((atten_db - 7.95) / (2.285 * width))) + 1


def _design_stage(rate_in: float, factor: int, f_pass: float, f_stop: float,
                  ripple_db: float, atten_db: float) -> np.ndarray:
    """Shortest equiripple filter of length k * factor + 1 meeting the stage's spec."""
    from scipy import signal  # here, not at the top: importing scipy.signal takes a second

    nyq = rate_in / 2
    f_stop = min(f_stop, nyq)
    delta_pass = (10 ** (ripple_db / 20) - 1) / (10 ** (ripple_db / 20) + 1)
    delta_stop = 10 ** (-atten_db / 20)
    k = max(1, int(0.6 * _kaiser_length(rate_in, f_pass, f_stop, atten_db)) // factor)
    grid_pass = np.linspace(0, f_pass, 256)
    grid_stop = np.linspace(f_stop, nyq, 2048)
    for _ in range(200):
        n = k * factor + 1
        if n % 2 == 0:
            k += 1
            continue
        try:
            taps = signal.remez(n, [0, f_pass, f_stop, nyq], [1, 0],
                                weight=[1 / delta_pass, 1 / delta_stop], fs=rate_in, maxiter=100)
        except ValueError:
            k += 1
            continue
        _, hp = signal.freqz(taps, worN=grid_pass, fs=rate_in)
        _, hs = signal.freqz(taps, worN=grid_stop, fs=rate_in)
        ripple = 20 * np.log10(np.max(np.abs(hp)) / np.min(np.abs(hp)))
        stop = -20 * np.log10(np.max(np.abs(hs)) + 1e-30)
        if ripple <= ripple_db and stop >= atten_db:
            return taps
        k += 1
    raise RuntimeError(f"no decimation filter found for {rate_in} Hz / {factor}")


def _stage_plans(factor: int) -> list[tuple[int, ...]]:
    """Ways to split `factor` into one to three stages."""
    plans = {(factor,)}
    for d1 in range(2, factor):
        if factor % d1:
            continue
        rest = factor // d1
        plans.add((d1, rest))
        for d2 in range(2, rest):
            if rest % d2 == 0 and rest // d2 > 1:
                plans.add((d1, d2, rest // d2))
    return sorted(plans)


@lru_cache(maxsize=32)
def design_decimator(rate_in: float, rate_out: float, *,
                     ripple_db: float = PASSBAND_RIPPLE_DB,
                     atten_db: float = STOPBAND_ATTENUATION_DB) -> Decimator:
    """The cheapest decimator (one to three stages) from rate_in to rate_out meeting the spec."""
    if rate_out <= 0 or rate_in <= 0:
        raise ValueError(f"sampling rates must be positive (got {rate_in} -> {rate_out})")
    ratio = Fraction(rate_in / rate_out).limit_denominator(_MAX_UP)
    if abs(float(ratio) - rate_in / rate_out) > 1e-9 * rate_in / rate_out:
        raise ValueError(
            f"the raw rate {rate_in:g} Hz and the LFP rate {rate_out:g} Hz are not in a ratio of whole "
            f"numbers up to {_MAX_UP}; choose another LFP rate (lfp.rate in config.yaml)"
        )
    if ratio < 1:
        raise ValueError(
            f"the LFP rate {rate_out:g} Hz is above the raw rate {rate_in:g} Hz; the converter only "
            "lowers the rate (lfp.rate in config.yaml)"
        )
    f_pass = PASSBAND_FRACTION * rate_out
    rational = None
    if ratio.denominator == 1:
        factor = int(ratio)
    else:
        # Integer stages down to a rate just above the LFP rate, then one rational
        # stage up/down. The integer part has prime factors 2, 3 and 5 only, so its
        # stages stay short.
        factor = max(d for d in range(1, int(ratio) + 1) if _smooth(d))
        rest = ratio / factor
        rational = design_rational(rest.denominator, rest.numerator, rate_in / factor, f_pass,
                                   STOPBAND_FRACTION * rate_out, atten_db + _DESIGN_MARGIN_DB)
    if factor == 1:
        return Decimator(rate_in, rate_out, (), rational)
    # Stages divide by at most 4 where the factor allows (by its largest prime factor
    # where that is larger): short filters keep each stage's polyphase blocks in the
    # cache, and the kernel has unrolled deinterleaves for factors 2 and 4.
    largest_prime = max(_prime_factors(factor))
    limit = max(4, largest_prime)
    best = None
    plans = _stage_plans(factor)
    # 128 (32 kHz -> 250 Hz) has no split into three stages of at most 4: then larger ones.
    for plan in [p for p in plans if max(p) <= limit] or plans:
        n_stages = len(plan)
        stage_ripple = ripple_db / (n_stages + (rational is not None))
        stage_atten = atten_db + _DESIGN_MARGIN_DB
        stages, rate, cost = [], rate_in, 0.0
        decimated = 1
        for i, d in enumerate(plan):
            out_rate = rate / d
            last = i == n_stages - 1 and rational is None
            # Earlier stages only need to keep aliases out of the final band [0, 0.5 fs_out].
            f_stop = STOPBAND_FRACTION * rate_out if last else out_rate - STOPBAND_FRACTION * rate_out
            est = _kaiser_length(rate, f_pass, f_stop, stage_atten)
            cost += est / (decimated * d)
            stages.append((d, rate, f_stop))
            rate, decimated = out_rate, decimated * d
        if best is None or cost < best[0]:
            best = (cost, stages, stage_ripple, stage_atten)
    _, plan_stages, stage_ripple, stage_atten = best
    stages = tuple(
        DecimationStage(d, r, _design_stage(r, d, f_pass, f_stop, stage_ripple, stage_atten))
        for d, r, f_stop in plan_stages
    )
    return Decimator(rate_in, rate_out, stages, rational)


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def _smooth(n: int) -> bool:
    return all(p <= 5 for p in _prime_factors(n))
