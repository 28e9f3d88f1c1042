"""The overview: a recording at a glance on one page, in clock time.

From the top: the light schedule, the spectrogram of every brain region, the hypnogram,
then theta/delta, the muscle-tone estimate and, where the video was tracked, head speed,
all on one time axis. Gaps are hatched through every panel, dark periods shaded behind
the hypnogram and traces, and what the recording lacks (a region, REM, sleep, the EMG)
is said in notes under the title.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pipeline.figures.clock import Clock, LightSchedule
from pipeline.figures.data import RecordingData, duration_words
from pipeline.figures.panels import (bin_factor, bin_mean, hatch_gaps, hypnogram_panel, light_strip, shade_dark,
                                     state_handles)
from pipeline.figures.style import FONT, SPECTROGRAM_CMAP, new_figure, sign
from pipeline.provenance import Provenance

NOTE_LINE = 0.024  # figure fraction per line of notes under the title
SPECTROGRAM_RANGE_DB = 8.0  # colours span +-8 dB around each frequency's median


def _window_epochs(onsets: np.ndarray, start_s: float, end_s: float) -> slice:
    lo, hi = np.searchsorted(onsets, [start_s - 1e-6, end_s - 1e-6])
    return slice(int(lo), int(hi))


def spectrogram_panel(fig: Figure, ax, cax, data: RecordingData, region: str, clock: Clock,
                      sel: slice) -> None:
    """One region's spectrogram, 0-30 Hz, each frequency in dB against its median over the
    whole recording (so delta, theta and spindles stand out above the 1/f slope); gap
    epochs are left blank."""
    sp = data.spectra
    power = sp.display_power[region][sel].astype(np.float64)
    power[~sp.valid[sel]] = np.nan
    factor = bin_factor(len(power))
    reference = sp.display_median[region]
    db = 10 * np.log10((bin_mean(power, factor) + 1e-30) / (reference + 1e-30))
    onsets = sp.onsets_s[sel]
    x_lo, x_hi = float(clock.x(onsets[0])), float(clock.x(onsets[-1] + sp.epoch_s))
    f = sp.display_freqs
    df = f[1] - f[0] if len(f) > 1 else 1.0
    image = ax.imshow(np.ma.masked_invalid(db.T), origin="lower", aspect="auto", cmap=SPECTROGRAM_CMAP,
                      vmin=-SPECTROGRAM_RANGE_DB, vmax=SPECTROGRAM_RANGE_DB,
                      extent=(x_lo, x_hi, f[0] - df / 2, f[-1] + df / 2), interpolation="nearest", rasterized=True)
    ax.set_facecolor("white")
    ax.set_ylabel(f"{region}\nHz")
    ax.set_yticks([0, 10, 20, 30] if f[-1] >= 30 else np.linspace(0, f[-1], 4).round())
    bar = fig.colorbar(image, cax=cax, extend="both")
    bar.set_label("dB vs median", fontsize=FONT["small"], labelpad=2)
    bar.ax.tick_params(labelsize=FONT["small"])


def trace_panel(ax, data: RecordingData, values: np.ndarray, clock: Clock, sel: slice, label: str,
                source: str) -> None:
    """A per-epoch trace, averaged into display bins; `source` is said beside it."""
    sp = data.spectra
    v = np.where(sp.valid[sel], values[sel], np.nan)
    factor = bin_factor(len(v))
    y = bin_mean(v, factor)
    onsets = sp.onsets_s[sel]
    x = clock.x(onsets[::factor] + factor * sp.epoch_s / 2)[: len(y)]
    ax.plot(x, y, color="black", lw=0.7, zorder=2)
    finite = y[np.isfinite(y)]
    if finite.size:
        lo, hi = np.percentile(finite, [0.5, 99.5])
        pad = 0.1 * (hi - lo) if hi > lo else 1.0
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel(label)
    ax.yaxis.set_major_locator(MaxNLocator(3))
    ax.text(1.03, 0.5, source, transform=ax.transAxes, ha="left", va="center", fontsize=FONT["small"])


def _theta_delta_region(data: RecordingData) -> str | None:
    regions, theta = data.spectra.regions, data.spectra.roles.get("theta")
    return theta if theta in regions else (regions[0] if regions else None)


def plot_overview(data: RecordingData, prov: Provenance, clock: Clock, schedule: LightSchedule | None, *,
                  window: tuple[float, float] | None = None, page: str = "") -> Figure:
    """The overview of the whole recording, or of `window` (start_s, end_s) of it."""
    sp, hyp = data.spectra, data.hypnogram
    start_s, end_s = window if window is not None else (0.0, max(data.duration_s, hyp.end_s))
    sel = _window_epochs(sp.onsets_s, start_s, end_s)
    x_lo, x_hi = float(clock.x(start_s)), float(clock.x(min(end_s, data.duration_s)))
    td_region = _theta_delta_region(data)
    rows = (["lights"] + [("spec", r) for r in sp.regions] + ["hypnogram"]
            + (["theta_delta"] if td_region else []) + (["muscle"] if sp.muscle is not None else [])
            + (["head_speed"] if data.head_speed is not None else []))
    heights = {"lights": 0.22, "hypnogram": 0.9, "theta_delta": 0.55, "muscle": 0.55, "head_speed": 0.55}
    ratios = [1.0 if isinstance(r, tuple) else heights[r] for r in rows]

    fig = new_figure()
    notes = data.notes
    top = 0.935 - NOTE_LINE * len(notes)
    grid = fig.add_gridspec(len(rows), 2, height_ratios=ratios, width_ratios=[1, 0.012], wspace=0.012,
                            hspace=0.16, left=0.085, right=0.855, top=top, bottom=0.1)
    first = fig.add_subplot(grid[0, 0])
    axes = {rows[0]: first}
    for i, row in enumerate(rows[1:], start=1):
        axes[row] = fig.add_subplot(grid[i, 0], sharex=first)
    light_strip(axes["lights"], schedule, x_lo, x_hi)
    for i, row in enumerate(rows):
        if isinstance(row, tuple):
            spectrogram_panel(fig, axes[row], fig.add_subplot(grid[i, 1]), data, row[1], clock, sel)
    ax = axes["hypnogram"]
    shade_dark(ax, schedule, x_lo, x_hi)
    hypnogram_panel(ax, hyp, clock, x_lo, x_hi)
    ax.legend(handles=state_handles(gap=bool(data.info.gaps)), loc="center left", bbox_to_anchor=(1.03, 0.5),
              frameon=False, handlelength=1.2)
    if td_region:
        shade_dark(axes["theta_delta"], schedule, x_lo, x_hi)
        trace_panel(axes["theta_delta"], data, sp.theta_delta[td_region], clock, sel, "theta/delta",
                    f"{td_region},\nlog10 of the ratio")
    if sp.muscle is not None:
        shade_dark(axes["muscle"], schedule, x_lo, x_hi)
        trace_panel(axes["muscle"], data, sp.muscle, clock, sel, "muscle",
                    sp.muscle_source + ",\n" + sp.muscle_unit)
    if data.head_speed is not None:
        shade_dark(axes["head_speed"], schedule, x_lo, x_hi)
        unit = data.head_speed_unit
        trace_panel(axes["head_speed"], data, data.head_speed, clock, sel, f"head\n{unit}",
                    "head speed (video),\nmedian per epoch" + (",\nno cm scale set" if unit == "px/s" else ""))
    for row, ax in axes.items():
        if row != "lights":  # the schedule goes on through a gap in the data
            hatch_gaps(ax, data.info.gaps, clock, x_lo, x_hi)
        if row != rows[-1]:
            ax.tick_params(labelbottom=False)
    clock.set_time_axis(axes[rows[-1]], x_lo, x_hi)

    info = data.info
    title = f"{info.recording_id or 'recording'}: overview" + (f", {page}" if page else "")
    sign(fig, title, prov, subtitle=_subtitle(data, clock))
    for i, note in enumerate(notes):
        fig.text(0.012, 0.95 - NOTE_LINE * (i + 0.5), "• " + note, fontsize=FONT["note"], color="#8B0000",
                 ha="left", va="top")
    return fig


def _subtitle(data: RecordingData, clock: Clock) -> str:
    start = data.info.start_datetime
    return (f"animal {data.info.animal or '?'}  ·  {start.strftime('%d %b %Y %H:%M')} ({clock.zone()})"
            f"  ·  {duration_words(data.duration_s)}")


def overview_windows(onsets_s: np.ndarray, epoch_s: float, clock: Clock,
                     hours_per_page: float) -> list[tuple[float, float]]:
    """Pages of `hours_per_page` hours on whole clock hours, each holding at least one epoch
    (of those starting at `onsets_s`); [] when 0 (the whole recording only)."""
    if not hours_per_page or hours_per_page <= 0 or not len(onsets_s):
        return []
    end = float(onsets_s[-1] + epoch_s)
    step = hours_per_page * 3600.0
    first_edge = (np.floor(clock.x0 / hours_per_page) * hours_per_page - clock.x0) * 3600.0
    edges = np.round(np.arange(first_edge, end, step), 3)  # whole clock hours, to the millisecond
    windows = [(max(0.0, float(a)), min(end, float(a + step))) for a in edges]
    windows = [(a, b) for a, b in windows if np.any((onsets_s >= a - 1e-6) & (onsets_s < b - 1e-6))]
    # A sliver of a page at either end (a recording starting at 17:58) joins its neighbour.
    if len(windows) > 1 and windows[0][1] - windows[0][0] < 0.25 * step:
        windows[:2] = [(windows[0][0], windows[1][1])]
    if len(windows) > 1 and windows[-1][1] - windows[-1][0] < 0.25 * step:
        windows[-2:] = [(windows[-2][0], windows[-1][1])]
    return windows
