"""Pieces that several figures draw alike: the light strip, dark-period shading, gap
hatching, the hypnogram, the state legend, and time binning for display.
"""

from __future__ import annotations

import numpy as np
from matplotlib.patches import Patch
from matplotlib.table import Table

from pipeline.figures.clock import Clock, LightSchedule
from pipeline.figures.data import STATES, Hypnogram
from pipeline.figures.style import (DARK_COLOR, FONT, GAP_COLOR, GAP_HATCH, LIGHT_STRIP, STATE_COLORS,
                                    state_label)

# Hypnogram rows, top to bottom as scorers draw them.
HYPNOGRAM_LEVEL = {"wake": 3, "rem": 2, "nrem": 1, "unclassified": 0}
MAX_COLUMNS = 1400  # time bins drawn across a page: about one per pixel at 120 dpi


def bin_factor(n: int, max_columns: int = MAX_COLUMNS) -> int:
    return max(1, int(np.ceil(n / max_columns)))


def bin_mean(values: np.ndarray, factor: int) -> np.ndarray:
    """Mean over groups of `factor` rows, NaN (invalid) rows left out; all-NaN groups stay NaN."""
    if factor == 1:
        return values.astype(np.float64)
    n = len(values)
    pad = (-n) % factor
    v = np.concatenate([values.astype(np.float64), np.full((pad,) + values.shape[1:], np.nan)])
    v = v.reshape((len(v) // factor, factor) + values.shape[1:])
    ok = np.isfinite(v)
    count = ok.sum(axis=1)
    total = np.where(ok, v, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def light_strip(ax, schedule: LightSchedule | None, x_lo: float, x_hi: float) -> None:
    """A band over the time axis: light and dark periods, labelled where there is room."""
    ax.set_yticks([])
    ax.spines[["left", "bottom"]].set_visible(False)
    ax.set_ylabel("lights", rotation=0, ha="right", va="center", fontsize=FONT["small"])
    ax.set_ylim(0, 1)
    if schedule is None:
        ax.broken_barh([(x_lo, x_hi - x_lo)], (0, 1), color="white", edgecolor="#999999", lw=0.5)
        ax.text((x_lo + x_hi) / 2, 0.5, "no light schedule configured", ha="center", va="center",
                fontsize=FONT["small"], color="#444444")
        return
    for a, b, kind in schedule.periods(x_lo, x_hi):
        ax.broken_barh([(a, b - a)], (0, 1), color=LIGHT_STRIP[kind], lw=0)
        if (b - a) / (x_hi - x_lo) > 0.08:
            ax.text((a + b) / 2, 0.5, kind, ha="center", va="center", fontsize=FONT["small"],
                    color="white" if kind == "dark" else "black")


def shade_dark(ax, schedule: LightSchedule | None, x_lo: float, x_hi: float) -> None:
    if schedule is None:
        return
    for a, b in schedule.dark_periods(x_lo, x_hi):
        ax.axvspan(a, b, color=DARK_COLOR, lw=0, zorder=0)


def hatch_gaps(ax, gaps, clock: Clock, x_lo: float, x_hi: float) -> None:
    """Hatch the stretches with no data, over whatever the panel shows there."""
    for g in gaps:
        a, b = float(clock.x(g.start_s)), float(clock.x(g.start_s + g.duration_s))
        if b <= x_lo or a >= x_hi:
            continue
        # At least a pixel wide, so a short gap in a day stays visible.
        pad = max(0.0, (x_hi - x_lo) / MAX_COLUMNS - (b - a)) / 2
        ax.axvspan(a - pad, b + pad, facecolor="none", edgecolor=GAP_COLOR, hatch=GAP_HATCH, lw=0, zorder=3)


def state_handles(*, gap: bool = False) -> list[Patch]:
    handles = [Patch(facecolor=STATE_COLORS[s], label=state_label(s)) for s in STATES]
    if gap:
        handles.append(Patch(facecolor="white", edgecolor=GAP_COLOR, hatch=GAP_HATCH, label="gap (no data)"))
    return handles


def hypnogram_panel(ax, hyp: Hypnogram, clock: Clock, x_lo: float, x_hi: float) -> None:
    """States as coloured bars on one row each, wake at the top."""
    onsets, durations, states = hyp.bouts()
    x0, x1 = clock.x(onsets), clock.x(onsets + durations)
    keep = (x1 > x_lo) & (x0 < x_hi)
    for i, s in enumerate(STATES):
        sel = keep & (states == i)
        if sel.any():
            level = HYPNOGRAM_LEVEL[s]
            ax.broken_barh(list(zip(x0[sel], x1[sel] - x0[sel])), (level - 0.4, 0.8), color=STATE_COLORS[s], lw=0,
                           zorder=2)
    ax.set_yticks([HYPNOGRAM_LEVEL[s] for s in STATES], [state_label(s).replace("Unclassified", "Uncl.")
                                                          for s in STATES])
    ax.set_ylim(-0.6, 3.6)
    ax.set_ylabel("state")
    ax.tick_params(axis="y", length=0)


def table_panel(ax, header: list[str], rows: list[list[str]], widths: list[float], *,
                row_colours: list[str] | None = None, bbox=(0, 0, 1, 1), header_lines: int = 2) -> Table:
    """A table filling `bbox` of the axes: first column left-aligned (names), numbers right."""
    table = Table(ax, bbox=bbox)
    height = 1.0 / (len(rows) + header_lines)
    total = sum(widths)
    for c, (text, w) in enumerate(zip(header, widths)):
        cell = table.add_cell(0, c, w / total, height * header_lines, text=text, loc="left" if c == 0 else "right",
                              edgecolor="#DDDDDD")
        cell.set_text_props(weight="bold")
    for r, row in enumerate(rows, start=1):
        for c, (text, w) in enumerate(zip(row, widths)):
            colour = row_colours[r - 1] if row_colours and c == 0 else "white"
            table.add_cell(r, c, w / total, height, text=text, loc="left" if c == 0 else "right",
                           facecolor=colour, edgecolor="#DDDDDD")
    table.auto_set_font_size(False)
    table.set_fontsize(FONT["small"])
    ax.add_table(table)
    ax.axis("off")
    return table
