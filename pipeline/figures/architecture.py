"""Sleep architecture: time in each state per hour across the recording, bout lengths per
state, transitions between states, and the table of totals.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from pipeline.figures.clock import Clock, LightSchedule
from pipeline.figures.data import STATES, RecordingData, duration_words
from pipeline.figures.panels import light_strip, shade_dark, state_handles, table_panel
from pipeline.figures.sleep_stats import (SCORED, bin_hours, bout_lengths, state_totals, time_per_bin,
                                          transition_counts)
from pipeline.figures.style import FONT, STATE_COLORS, new_figure, sign, state_label
from pipeline.provenance import Provenance


def hourly_panel(ax, data: RecordingData, clock: Clock, schedule: LightSchedule | None) -> str:
    """Stacked bars: the share of each clock bin spent in each state; returns the panel's title."""
    hyp = data.hypnogram
    x_lo, x_hi = float(clock.x(0)), float(clock.x(data.duration_s))
    hours = bin_hours(x_hi - x_lo)
    edges, seconds = time_per_bin(hyp, clock, hours)
    covered = seconds.sum(axis=1)
    share = 100 * seconds / np.maximum(covered, 1e-9)[:, None]
    # A bar spans the part of its bin the recording covers (the first and last may be partial).
    left = np.maximum(edges[:-1], x_lo)
    right = np.minimum(edges[1:], x_hi)
    shade_dark(ax, schedule, x_lo, x_hi)
    bottom = np.zeros(len(share))
    for i, s in enumerate(STATES):
        ax.bar(left, share[:, i], width=(right - left) * 0.92, bottom=bottom, align="edge", color=STATE_COLORS[s],
               lw=0, label=state_label(s), zorder=2)
        bottom += share[:, i]
    ax.set_ylim(0, 100)
    ax.set_yticks([0, 25, 50, 75, 100])
    unit = "hour" if hours == 1 else f"{round(hours * 60)} min"
    ax.set_ylabel(f"% of each {unit}")
    clock.set_time_axis(ax, x_lo, x_hi)
    ax.legend(handles=state_handles(), loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
              handlelength=1.2)
    return f"Time in each state per {unit} of the clock"


# Bout-length ticks people read at a glance: seconds, minutes, hours.
_BOUT_TICKS_S = (4, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)


def short_duration(seconds: float) -> str:
    """24 s, 1.3 min, 2.5 h: a bout length in the unit that reads best."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.2g} min" if seconds < 600 else f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.2g} h"


def _tick_label(value, _pos) -> str:
    return short_duration(value).replace(".0 ", " ")


def duration_axis(axis, lo: float, hi: float, *, min_ratio: float = 4.5) -> None:
    """Ticks of a log-scaled duration axis at round durations, at least `min_ratio`-fold
    apart (so that labels side by side never touch), labelled in s, min or h."""
    ticks: list[float] = []
    for t in _BOUT_TICKS_S:
        if lo <= t <= hi and (not ticks or t >= min_ratio * ticks[-1]):
            ticks.append(t)
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(_tick_label))
    axis.set_minor_locator(NullLocator())


def bouts_panel(ax, data: RecordingData) -> None:
    """Each bout as a dot at its length (log scale), with the median and quartiles, per state."""
    lengths = bout_lengths(data.hypnogram)
    rng = np.random.default_rng(0)  # the same jitter every time
    longest = max([float(v.max()) for v in lengths.values() if len(v)], default=60.0)
    shortest = min([float(v.min()) for v in lengths.values() if len(v)], default=data.hypnogram.epoch_s)
    for row, s in enumerate(SCORED):
        y = len(SCORED) - 1 - row
        v = lengths[s]
        if not len(v):
            ax.text(math.sqrt(shortest * longest), y, f"no {state_label(s)} bouts", ha="center", va="center",
                    fontsize=FONT["small"], color="#444444")
            continue
        ax.scatter(v, y + rng.uniform(-0.22, 0.22, len(v)), s=6, color=STATE_COLORS[s], alpha=0.5, lw=0,
                   zorder=2)
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        ax.plot([q1, q3], [y, y], color="black", lw=3, solid_capstyle="butt", zorder=3)
        ax.plot([med], [y], marker="|", color="white", ms=9, mew=2, zorder=4)
        ax.text(longest * 1.6, y, f"median\n{short_duration(med)}", ha="left", va="center",
                fontsize=FONT["small"])
    ax.set_xscale("log")
    lo, hi = shortest / 1.5, longest * 6
    ax.set_xlim(lo, hi)
    duration_axis(ax.xaxis, lo, longest * 1.2)
    ax.set_yticks(range(len(SCORED)), [state_label(s) for s in reversed(SCORED)])
    ax.set_ylim(-0.6, len(SCORED) - 0.4)
    ax.set_xlabel("bout length (log scale; bar: quartiles)")
    ax.set_title("Bout lengths", loc="left")


def transitions_panel(ax, data: RecordingData) -> None:
    """Counts of bout-to-bout transitions, from the row's state to the column's."""
    counts = transition_counts(data.hypnogram)
    shown = [i for i, s in enumerate(STATES) if s in SCORED or counts[i].sum() or counts[:, i].sum()]
    m = counts[np.ix_(shown, shown)]
    ax.imshow(m, cmap="Blues", vmin=0, vmax=max(1, m.max()) * 1.4)
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, "–" if i == j else str(v), ha="center", va="center", fontsize=FONT["label"],
                color="white" if v > 0.75 * m.max() and v else "black")
    labels = [state_label(STATES[i]).replace("Unclassified", "Uncl.") for i in shown]
    ax.set_xticks(range(len(shown)), labels)
    ax.set_yticks(range(len(shown)), labels)
    ax.set_xlabel("to")
    ax.set_ylabel("from")
    ax.tick_params(length=0)
    ax.spines[:].set_visible(False)
    ax.set_title("Transitions (bout to bout)", loc="left")


def _pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.1f}"


def _minutes(seconds: float) -> str:
    return "–" if seconds != seconds else f"{seconds / 60:.1f}"


def _clock_duration(seconds: float, *, short: bool) -> str:
    """h:mm, or m:ss for a recording under an hour (where minutes would round REM away)."""
    if short:
        whole = int(round(seconds))
        return f"{whole // 60}:{whole % 60:02d}"
    minutes = int(round(seconds / 60))
    return f"{minutes // 60}:{minutes % 60:02d}"


def totals_panel(ax, data: RecordingData, clock: Clock, schedule: LightSchedule | None) -> None:
    totals = state_totals(data.hypnogram, clock, schedule)
    light = schedule is not None
    short = len(data.hypnogram) * data.hypnogram.epoch_s < 3600
    header = ["", "m:ss" if short else "h:mm", "% of\nrecording", *(["% of\nlight", "% of\ndark"] if light else []), "bouts",
              "median\nbout, min"]
    colours, rows = [], []
    for s in (*STATES, "sleep"):
        t = totals[s]
        colours.append(STATE_COLORS[s] + "66" if s in STATE_COLORS else "white")
        rows.append([state_label(s) if s != "sleep" else "Sleep (all)", _clock_duration(t["seconds"], short=short),
                     _pct(t["fraction"]), *([_pct(t["light_fraction"]), _pct(t["dark_fraction"])] if light else []),
                     str(t["bouts"]) if "bouts" in t else "", _minutes(t["median_bout_s"]) if "bouts" in t else ""])
    widths = [0.22, 0.1, 0.15, *([0.11, 0.11] if light else []), 0.1, 0.15]
    table_panel(ax, header, rows, widths, row_colours=colours, bbox=(0, 0.14, 1, 0.86))
    recorded = duration_words(len(data.hypnogram) * data.hypnogram.epoch_s)
    rem = totals["sleep"]["rem_of_sleep"]
    share = "No sleep was scored." if rem != rem else f"REM is {_pct(rem)} % of sleep."
    ax.text(0, 0.02, f"{share} Scored: {recorded} in {data.hypnogram.epoch_s:g}-s epochs.", transform=ax.transAxes,
            fontsize=FONT["small"])
    ax.axis("off")
    ax.set_title("Totals", loc="left")


def plot_architecture(data: RecordingData, prov: Provenance, clock: Clock, schedule: LightSchedule | None) -> Figure:
    fig = new_figure()
    # The hourly bars leave room on the right for the legend; the panels below use it.
    top = fig.add_gridspec(2, 1, height_ratios=[0.1, 1], hspace=0.08, left=0.08, right=0.87, top=0.9, bottom=0.57)
    grid = fig.add_gridspec(1, 3, width_ratios=[1.15, 0.8, 1.75], wspace=0.3, left=0.08, right=0.975, top=0.47,
                            bottom=0.09)
    hourly = fig.add_subplot(top[1])
    strip = fig.add_subplot(top[0], sharex=hourly)
    strip.set_title(hourly_panel(hourly, data, clock, schedule), loc="left")
    light_strip(strip, schedule, *hourly.get_xlim())
    strip.tick_params(labelbottom=False, bottom=False)
    bouts_panel(fig.add_subplot(grid[0, 0]), data)
    transitions_panel(fig.add_subplot(grid[0, 1]), data)
    totals_panel(fig.add_subplot(grid[0, 2]), data, clock, schedule)
    sign(fig, f"{data.info.recording_id or 'recording'}: sleep architecture", prov,
         subtitle=f"animal {data.info.animal or '?'}  ·  {data.info.start_datetime.strftime('%d %b %Y %H:%M')}"
                  f"  ·  {duration_words(data.duration_s)}")
    return fig
