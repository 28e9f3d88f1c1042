"""Clock time for the figures: time axes in hours of the day on the recording's clock,
and the light schedule's light and dark periods.

A position on a time axis is hours since midnight of the day the recording starts, on
the clock (time zone) of its start time, so 31.5 is 07:30 on the next day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from pipeline.errors import ConfigError

_STEPS_H = (1 / 60, 2 / 60, 5 / 60, 10 / 60, 15 / 60, 0.5, 1, 2, 3, 4, 6, 12, 24, 48)


@dataclass(frozen=True)
class Clock:
    start: datetime  # the recording's start, with its time zone

    @property
    def x0(self) -> float:
        s = self.start
        return s.hour + s.minute / 60 + (s.second + s.microsecond / 1e6) / 3600

    def x(self, seconds):
        """Axis position (hours since midnight of the start day) of `seconds` from the start."""
        return self.x0 + np.asarray(seconds, dtype=np.float64) / 3600.0

    def seconds(self, x):
        return (np.asarray(x, dtype=np.float64) - self.x0) * 3600.0

    def zone(self) -> str:
        off = self.start.utcoffset()
        if off is None:
            return "clock of the recording"
        minutes = int(off.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"

    def label(self, x: float, *, with_date: bool = False) -> str:
        t = self.start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=float(x))
        t = t + timedelta(seconds=30) if t.second >= 30 else t  # to the nearest minute
        text = t.strftime("%H:%M")
        return f"{text}\n{t.strftime('%d %b')}" if with_date else text

    def set_time_axis(self, ax, x_lo: float, x_hi: float, *, label: bool = True, max_ticks: int = 13) -> None:
        """Ticks on whole clock steps (every 2 h for a day), a date under each midnight."""
        span = max(x_hi - x_lo, 1e-6)
        step = next((s for s in _STEPS_H if span / s <= max_ticks - 1), _STEPS_H[-1])
        first = math.ceil(x_lo / step - 1e-9) * step
        ticks = np.arange(first, x_hi + 1e-9, step)
        ax.set_xticks(ticks, [self.label(t, with_date=abs(t / 24 - round(t / 24)) < 1e-9 and t > 0) for t in ticks])
        ax.set_xlim(x_lo, x_hi)
        if label:
            ax.set_xlabel(f"clock time ({self.zone()})")


@dataclass(frozen=True)
class LightSchedule:
    lights_on: float  # hours of the day
    lights_off: float

    def periods(self, x_lo: float, x_hi: float) -> list[tuple[float, float, str]]:
        """The light and dark periods covering [x_lo, x_hi), in axis hours, in order."""
        edges = []
        for day in range(math.floor(x_lo / 24) - 1, math.ceil(x_hi / 24) + 1):
            edges += [(day * 24 + self.lights_on, "light"), (day * 24 + self.lights_off, "dark")]
        edges.sort()
        out = []
        for (a, kind), (b, _) in zip(edges, edges[1:]):
            lo, hi = max(a, x_lo), min(b, x_hi)
            if hi > lo:
                out.append((lo, hi, kind))
        return out

    def dark_periods(self, x_lo: float, x_hi: float) -> list[tuple[float, float]]:
        return [(a, b) for a, b, kind in self.periods(x_lo, x_hi) if kind == "dark"]

    def describe(self) -> str:
        return f"lights on {_hhmm(self.lights_on)}, off {_hhmm(self.lights_off)}"


def _hhmm(hours: float) -> str:
    minutes = int(round(hours * 60)) % (24 * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def light_schedule(lights_on: float | None, lights_off: float | None) -> LightSchedule | None:
    """The schedule of figures.lights_on/lights_off; None when both are null (no schedule)."""
    if lights_on is None and lights_off is None:
        return None
    if lights_on is None or lights_off is None:
        raise ConfigError("figures.lights_on and figures.lights_off must both be hours of the day, "
                          "or both null (no light schedule).")
    on, off = float(lights_on) % 24, float(lights_off) % 24
    if abs(on - off) < 1e-9:
        raise ConfigError(f"figures.lights_on and figures.lights_off are both {_hhmm(on)}; "
                          "give different hours, or null for both (no light schedule).")
    return LightSchedule(on, off)
