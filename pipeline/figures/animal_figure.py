"""The animal summary's figure: one column per recording, in time order.

Time in each state (hours), REM as a share of sleep (and sleep in light and dark), bout
lengths per state (median and quartiles), and a table naming what analysed each
recording, so a difference made by the analysis is not taken for one in the animal.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pipeline import __version__
from pipeline.figures.architecture import duration_axis
from pipeline.figures.panels import state_handles, table_panel
from pipeline.figures.sleep_stats import SCORED
from pipeline.figures.data import STATES
from pipeline.figures.style import FONT, STATE_COLORS, new_figure, state_label


def median_and_quartiles(values: np.ndarray) -> tuple[float, float, float]:
    if not len(values):
        return (float("nan"),) * 3
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return float(med), float(q1), float(q3)


def _set_columns(ax, labels: list[str]) -> None:
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    if len(labels) > 8:
        ax.tick_params(axis="x", labelrotation=90)


def hours_panel(ax, labels, rows) -> None:
    bottom = np.zeros(len(rows))
    for s in STATES:
        h = np.array([r[f"{s}_h"] for r in rows])
        ax.bar(range(len(rows)), h, bottom=bottom, width=min(0.7, 0.2 * len(rows)), color=STATE_COLORS[s], lw=0)
        bottom += h
    _set_columns(ax, labels)
    ax.set_ylabel("hours")
    ax.yaxis.set_major_locator(MaxNLocator(6, integer=True))
    ax.set_title("Time in each state per recording", loc="left")
    ax.legend(handles=state_handles(), loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)


def rem_panel(ax, labels, rows) -> None:
    x = np.arange(len(rows))
    ax.plot(x, [r["rem_of_sleep_pct"] for r in rows], marker="o", color=STATE_COLORS["rem"], label="REM % of sleep")
    light = [r["sleep_light_pct"] for r in rows]
    if any(v == v for v in light):
        ax.plot(x, light, marker="s", ls="--", color="#B8A200", label="sleep % of light")
        ax.plot(x, [r["sleep_dark_pct"] for r in rows], marker="s", ls=":", color="#3A3A3A", label="sleep % of dark")
    for i, r in enumerate(rows):
        if r["rem_h"] == 0:  # say it, so that 0 % is not taken for a measured share
            ax.annotate("no REM\nscored", (i, 0), xytext=(0, 10), textcoords="offset points", ha="center",
                        va="bottom", fontsize=FONT["small"], color=STATE_COLORS["rem"])
    _set_columns(ax, labels)
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.set_title("REM as a share of sleep; sleep in light and dark", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)


def bouts_panel(ax, labels, bouts: list[dict[str, np.ndarray]]) -> None:
    offsets = {"wake": -0.2, "nrem": 0.0, "rem": 0.2}
    for s in SCORED:
        stats = [median_and_quartiles(b[s]) for b in bouts]
        x = np.arange(len(bouts)) + offsets[s]
        med = np.array([m for m, _, _ in stats])
        lo = med - np.array([q for _, q, _ in stats])
        hi = np.array([q for _, _, q in stats]) - med
        ok = np.isfinite(med)
        ax.errorbar(x[ok], med[ok], yerr=[lo[ok], hi[ok]], fmt="o", color=STATE_COLORS[s], capsize=2, ms=5,
                    label=state_label(s))
    _set_columns(ax, labels)
    ax.set_yscale("log")
    quartiles = [q for b in bouts for s in SCORED for q in median_and_quartiles(b[s])[1:] if q == q]
    if quartiles:  # the axis spans the quartiles, not the rare longest bout
        lo, hi = min(quartiles) / 1.6, max(quartiles) * 1.6
        ax.set_ylim(lo, hi)
        duration_axis(ax.yaxis, lo, hi, min_ratio=1.9)  # labels one above the other
    ax.set_ylabel("bout length")
    ax.set_title("Bout lengths: median and quartiles", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)


def analysis_table(ax, rows) -> None:
    header = ["recording", "hours", "pipeline", "configuration", "sleep model"]
    cells = [[r["recording_id"], f"{r['duration_h']:.1f}", r["pipeline_version"], r["config_hash"],
              r["model_version"]] for r in rows[-8:]]
    height = min(1.0, 0.11 * (len(cells) + 1))
    table_panel(ax, header, cells, [0.24, 0.1, 0.15, 0.23, 0.28], header_lines=1, bbox=(0, 1 - height, 1, height))
    mixed = [k for k in ("pipeline_version", "config_hash", "model_version") if len({r[k] for r in rows}) > 1]
    title = "What analysed each recording" + (f" (the last 8 of {len(rows)})" if len(rows) > 8 else "")
    if mixed:
        title += ": not all alike, compare with care"
    ax.set_title(title, loc="left", color="#8B0000" if mixed else "black")


def plot_animal_summary(animal: str, labels: list[str], rows: list[dict], *,
                        bouts: list[dict[str, np.ndarray]]) -> Figure:
    """`labels` name the recordings (columns), `rows` are their CSV rows, `bouts` their bout
    lengths by state."""
    fig = new_figure()
    # Legends sit right of the top panels and of the bout lengths; the table uses that room.
    top = fig.add_gridspec(1, 2, wspace=0.5, left=0.07, right=0.84, top=0.89, bottom=0.58)
    low = fig.add_gridspec(1, 2, width_ratios=[1, 1.25], wspace=0.35, left=0.07, right=0.985, top=0.44, bottom=0.1)
    hours_panel(fig.add_subplot(top[0, 0]), labels, rows)
    rem_panel(fig.add_subplot(top[0, 1]), labels, rows)
    bouts_panel(fig.add_subplot(low[0, 0]), labels, bouts)
    analysis_table(fig.add_subplot(low[0, 1]), rows)
    fig.text(0.012, 0.985, f"{animal}: {len(rows)} recording{'s' if len(rows) != 1 else ''} side by side",
             fontsize=FONT["title"], weight="bold", ha="left", va="top")
    fig.text(0.012, 0.008, f"animal {animal}  ·  summary made by ephys pipeline {__version__}; each recording's "
             "own versions are in the table and in animal_summary.csv", fontsize=FONT["footer"], color="#444444",
             ha="left", va="bottom")
    return fig
