"""Anti-aliased, zero-phase decimation from the raw rate to the LFP rate.

The converter asks for LFP samples [j0, j1) of a recording and gets exactly the values
that decimating the whole recording in one piece would give: every output sample is a
fixed weighted sum of input samples around it, the input is extended beyond the
recording's ends by holding its first and last values, and the filters are linear
phase with their delay removed. That is what lets segments run as independent jobs.

The decimation runs in one to three stages of odd-length, symmetric equiripple FIR
filters (Parks-McClellan), chosen to meet the specification at a low cost per input
sample, and computed by the kernel in pipeline.dsp.fir_kernel. The specification:
passband flat within 0.1 dB up to 0.4 x the output rate, at least 80 dB of attenuation
from 0.5 x the output rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Callable

import numpy as np

from pipeline.dsp.fir_kernel import SLACK, RecordBlock, decimate_block

PASSBAND_FRACTION = 0.4  # of the output rate
STOPBAND_FRACTION = 0.5  # of the output rate
PASSBAND_RIPPLE_DB = 0.1
STOPBAND_ATTENUATION_DB = 80.0
_DESIGN_MARGIN_DB = 3.0  # designed for 83 dB so that float32 rounding keeps 80


@dataclass(frozen=True)
class DecimationStage:
    factor: int
    rate_in: float
    taps: np.ndarray = field(repr=False)

    @property
    def half_length(self) -> int:
        return (len(self.taps) - 1) // 2


@dataclass(frozen=True)
class Decimator:
    rate_in: float
    rate_out: float
    stages: tuple[DecimationStage, ...]

    @property
    def factor(self) -> int:
        return int(np.prod([s.factor for s in self.stages]))

    def input_range(self, j0: int, j1: int) -> tuple[int, int]:
        """Input samples [a, b) that output samples [j0, j1) depend on."""
        a, b = j0, j1
        for stage in reversed(self.stages):
            h = stage.half_length
            a, b = a * stage.factor - h, (b - 1) * stage.factor + h + 1
        return a, b

    def n_output(self, n_input: int) -> int:
        """Output samples a recording of n_input samples gives (the first at input 0)."""
        return -(-n_input // self.factor)

    def to_json(self) -> dict:
        """The decimator as recording.json keeps it, so every segment uses the same taps."""
        return {"rate_in": self.rate_in, "rate_out": self.rate_out,
                "stages": [{"factor": s.factor, "rate_in": s.rate_in, "taps": [float(t) for t in s.taps]}
                           for s in self.stages]}

    @classmethod
    def from_json(cls, d: dict) -> "Decimator":
        return cls(float(d["rate_in"]), float(d["rate_out"]), tuple(
            DecimationStage(int(s["factor"]), float(s["rate_in"]), np.array(s["taps"], dtype=np.float64))
            for s in d["stages"]))

    def stage_lengths(self, j0: int, j1: int) -> list[int]:
        """Samples each stage must output so that the last gives outputs [j0, j1)."""
        n_outs = [j1 - j0]
        for stage in reversed(self.stages[1:]):
            n_outs.insert(0, (n_outs[0] - 1) * stage.factor + 2 * stage.half_length + 1)
        return n_outs

    def decimate_range(self, read: Callable[[int, int], np.ndarray], n_input: int,
                       j0: int, j1: int, *, time_major: bool = False) -> np.ndarray:
        """Output samples [j0, j1), float32.

        `read(a, b)` returns input samples a..b (0 <= a < b <= n_input) as (channels,
        samples); samples outside [0, n_input) are the held edge values. The result is
        (channels, samples), or (samples, channels) with `time_major`.
        """
        a, b = self.input_range(j0, j1)
        lo, hi = max(a, 0), min(b, n_input)
        x = np.asarray(read(lo, hi), dtype=np.float32)
        rows = np.empty((x.shape[0], b - a + SLACK), dtype=np.float32)
        rows[:, lo - a:hi - a] = x
        rows[:, :lo - a] = x[:, :1]
        rows[:, hi - a:b - a] = x[:, -1:]
        if not self.stages:
            y = rows[:, :b - a]
        else:
            y = decimate_block(RecordBlock.from_rows(rows), b - a, self.stages, self.stage_lengths(j0, j1))
        return np.ascontiguousarray(y.T) if time_major else np.ascontiguousarray(y)

    def decimate_records(self, block: RecordBlock, j0: int, j1: int,
                         scale: np.ndarray | None = None) -> np.ndarray:
        """Output samples [j0, j1) of the channels in `block`, which holds input samples
        input_range(j0, j1) (edges held); (channels, samples) float32, times `scale`."""
        a, b = self.input_range(j0, j1)
        if not self.stages:
            raise ValueError("decimate_records needs at least one stage")
        return decimate_block(block, b - a, self.stages, self.stage_lengths(j0, j1), scale)


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
    ratio = Fraction(rate_in / rate_out).limit_denominator(1000)
    if ratio.denominator != 1 or abs(float(ratio) - rate_in / rate_out) > 1e-9:
        raise ValueError(
            f"the raw rate {rate_in:g} Hz is not a whole multiple of the LFP rate "
            f"{rate_out:g} Hz; choose an LFP rate that divides it (lfp.rate in config.yaml)"
        )
    factor = int(ratio)
    f_pass = PASSBAND_FRACTION * rate_out
    if factor == 1:
        return Decimator(rate_in, rate_out, ())
    # Each output of a stage reads a window of L time-major rows (all channels). Long
    # windows fall out of the L1 cache: measured on 64 channels, 32 -> 4 x 4 x 2
    # (21, 29, 79 taps) ran 1.5x faster than 16 x 2 (129, 75 taps) although it does
    # about as many multiplications. So stages divide by at most 4 where the factor
    # allows (by its largest prime factor where that is larger).
    largest_prime = max(p for p in range(2, factor + 1) if factor % p == 0 and all(p % q for q in range(2, p)))
    limit = max(4, largest_prime)
    best = None
    for plan in [p for p in _stage_plans(factor) if max(p) <= limit]:
        n_stages = len(plan)
        stage_ripple = ripple_db / n_stages
        stage_atten = atten_db + _DESIGN_MARGIN_DB
        stages, rate, cost = [], rate_in, 0.0
        decimated = 1
        for i, d in enumerate(plan):
            out_rate = rate / d
            last = i == n_stages - 1
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
    return Decimator(rate_in, rate_out, stages)
