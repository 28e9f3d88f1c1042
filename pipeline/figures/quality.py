"""Quality control: every channel where the channel map puts it, with its RMS, its flag
(dead, noisy, saturated) and its line noise; the mean power spectrum of each region; the
recording's gaps; and the LFP's RMS segment by segment (a channel that fails mid-day).
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pipeline.channels import natural_key
from pipeline.figures.clock import Clock
from pipeline.figures.data import RecordingData, duration_words
from pipeline.figures.style import FONT, GAP_COLOR, GAP_HATCH, RMS_CMAP, new_figure, region_styles, sign
from pipeline.io.recording_info import ChannelInfo
from pipeline.provenance import Provenance

CELLS_PER_ROW = 8
LINE_FREQS = (50.0, 60.0)


def flag_label(channel: ChannelInfo) -> str:
    """ok, dead, noisy, or saturated (a noisy channel that reached full scale)."""
    if channel.qc is None:
        return "ignored" if channel.ignored else "no QC"
    if channel.qc.flag == "noisy" and channel.qc.saturated_fraction > 0:
        return "saturated"
    return channel.qc.flag


def channel_groups(data: RecordingData) -> list[tuple[str, list[ChannelInfo]]]:
    """Channels by region in the channel map's order, then unmapped and ignored ones;
    within a region as the map lists them (a shank from its deepest site, say), the
    channels the map does not list after them in natural order."""
    info = data.info
    cmap = info.channel_map or {}
    order = list(cmap.get("regions", {}))
    listed = {name: i for chans in (*cmap.get("regions", {}).values(), cmap.get("ignore", []))
              for i, name in enumerate(chans)}
    groups: dict[str, list[ChannelInfo]] = {}
    for c in info.channels:
        key = "ignored" if c.ignored else (c.region or "unmapped")
        groups.setdefault(key, []).append(c)
    names = [r for r in order if r in groups] + sorted(k for k in groups if k not in order and k not in
                                                        ("unmapped", "ignored"))
    names += [k for k in ("unmapped", "ignored") if k in groups]
    return [(n, sorted(groups[n], key=lambda c: (c.name not in listed, listed.get(c.name, 0), natural_key(c.name))))
            for n in names]


def _per_row(groups) -> int:
    return max(4, min(CELLS_PER_ROW, max((len(chans) for _, chans in groups), default=1)))


def _layout(groups) -> list[tuple[str, int, int, ChannelInfo]]:
    """(group, row, column, channel) of every cell; each group starts a row."""
    cells, row, per_row = [], 0, _per_row(groups)
    for name, chans in groups:
        for i, c in enumerate(chans):
            cells.append((name, row + i // per_row, i % per_row, c))
        row += math.ceil(len(chans) / per_row)
    return cells


def channel_map_panel(ax, data: RecordingData, *, value, norm: Normalize, text, title: str,
                      show_flags: bool = True) -> None:
    """One cell per channel, laid out as the channel map, coloured by `value(channel)`;
    with `show_flags`, flagged channels are white, outlined and named by their flag."""
    groups = channel_groups(data)
    cells = _layout(groups)
    cmap = colormaps[RMS_CMAP]
    for _group, r, col, c in cells:
        v = value(c)
        label = flag_label(c)
        flagged = show_flags and label not in ("ok", "ignored", "no QC")
        known = v is not None and math.isfinite(v)
        face = "white" if flagged else (cmap(norm(v)) if known else "#EEEEEE")
        ax.add_patch(Rectangle((col, r), 0.94, 0.9, facecolor=face, edgecolor="black" if flagged else "white",
                               lw=1.8 if flagged else 0.5))
        dark = known and not flagged and norm(v) < 0.55
        ax.text(col + 0.47, r + 0.45, f"{c.name}\n{label if flagged else text(c)}", ha="center", va="center",
                fontsize=FONT["small"], color="white" if dark else "black", weight="bold" if flagged else "normal",
                linespacing=1.1)
    n_rows = max(r for _, r, _, _ in cells) + 1 if cells else 1
    starts, row, per_row = [], 0, _per_row(groups)
    for name, chans in groups:
        rows = math.ceil(len(chans) / per_row)
        starts.append((row + rows / 2 - 0.05, name))
        row += rows
    ax.set_xlim(-0.05, per_row)
    ax.set_ylim(n_rows, -0.1)
    ax.set_yticks([y for y, _ in starts], [n for _, n in starts] if show_flags else [])
    ax.set_xticks([])
    ax.tick_params(axis="y", length=0)
    ax.spines[:].set_visible(False)
    ax.set_title(title, loc="left")


def _region_rms_norm(data: RecordingData) -> tuple[dict[str, float], Normalize]:
    """Each region's median RMS; colours show a channel's RMS against its region's median."""
    medians = {}
    for name, chans in channel_groups(data):
        values = [c.qc.rms_uv for c in chans if c.qc is not None]
        if values:
            medians[name] = float(np.median(values))
    return medians, Normalize(vmin=-1.0, vmax=0.7, clip=True)  # 1/10 to 5x the median: the QC limits


def line_noise_db(freqs: np.ndarray, spectrum: np.ndarray) -> tuple[float, float] | None:
    """(line frequency, dB of its peak over the median 40-80 Hz power) of a mean spectrum."""
    band = (freqs >= 40) & (freqs <= 80)
    if not band.any():
        return None
    floor = float(np.median(spectrum[band])) + 1e-30
    best = None
    for f0 in LINE_FREQS:
        near = np.abs(freqs - f0) <= 0.5
        if near.any():
            db = 10 * math.log10(float(spectrum[near].max()) / floor)
            best = (f0, db) if best is None or db > best[1] else best
    return best


def _styles(data: RecordingData) -> dict[str, tuple[str, str]]:
    regions = [*data.spectra.regions, "emg"]
    regions += sorted({c["region"] for seg in data.lfp_qc for c in seg["channels"] if c.get("region")} - set(regions))
    return region_styles(regions)


def spectra_panel(ax, data: RecordingData) -> None:
    sp = data.spectra
    f = sp.freqs
    keep = f >= 0.5
    styles = _styles(data)
    for region in [r for r in (*sp.regions, "emg") if r in sp.mean_spectrum]:
        colour, style = styles[region]
        noise = line_noise_db(f, sp.mean_spectrum[region])
        extra = f", {noise[0]:g} Hz +{noise[1]:.0f} dB" if noise and noise[1] >= 3 else ""
        ax.loglog(f[keep], sp.mean_spectrum[region][keep], color=colour, ls=style, lw=1.1,
                  label=f"{region}{extra}")
    for f0 in LINE_FREQS:
        if f[-1] >= f0:
            ax.axvline(f0, color="#999999", lw=0.6, ls=":", zorder=0)
    ax.set_xlabel("frequency (Hz); dotted: 50 and 60 Hz")
    ax.set_ylabel("power (V²/Hz)")
    ax.legend(frameon=False, loc="lower left", fontsize=FONT["small"])
    ax.set_title("Mean power spectrum per region (valid epochs)", loc="left")


def coverage_panel(ax, data: RecordingData, clock: Clock) -> None:
    """The recording as a bar: data where there is data, hatched where a gap is."""
    x_lo, x_hi = float(clock.x(0)), float(clock.x(data.duration_s))
    ax.broken_barh([(x_lo, x_hi - x_lo)], (0, 1), color="#4D4D4D", lw=0)
    gaps = data.info.gaps
    min_width = (x_hi - x_lo) / 250  # a gap of minutes in a day stays visible
    for g in gaps:
        a, b = float(clock.x(g.start_s)), float(clock.x(g.start_s + g.duration_s))
        pad = max(0.0, min_width - (b - a)) / 2
        ax.axvspan(a - pad, b + pad, facecolor="white", edgecolor=GAP_COLOR, hatch=GAP_HATCH, lw=0.8, zorder=3)
    total = sum(g.duration_s for g in gaps)
    text = (f"{len(gaps)} gap{'s' if len(gaps) != 1 else ''}, {duration_words(total)} in all"
            if gaps else "no gaps: data all along")
    ax.set_yticks([])
    ax.set_ylim(0, 1)
    ax.spines[["left", "top", "right"]].set_visible(False)
    clock.set_time_axis(ax, x_lo, x_hi, max_ticks=7, label=False)
    ax.set_title(f"Data and gaps: {text}", loc="left")


def lfp_rms_panel(ax, data: RecordingData, clock: Clock) -> None:
    """Median LFP RMS of each region's good channels, segment by segment."""
    by_region: dict[str, list[tuple[float, float]]] = {}
    for seg in data.lfp_qc:
        mid = float(clock.x(seg["start_s"] + seg["duration_s"] / 2))
        groups: dict[str, list[float]] = {}
        for c in seg["channels"]:
            if c.get("region") and not c.get("bad"):
                groups.setdefault(c["region"], []).append(float(c["lfp_rms_uv"]))
        for region, values in groups.items():
            by_region.setdefault(region, []).append((mid, float(np.median(values))))
    styles = _styles(data)
    for region in [r for r in styles if r in by_region]:
        colour, style = styles[region]
        x, y = zip(*by_region[region])
        ax.plot(x, y, color=colour, ls=style, marker="o", ms=3, lw=1, label=region)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("LFP RMS (µV)")
    x_lo, x_hi = float(clock.x(0)), float(clock.x(data.duration_s))
    clock.set_time_axis(ax, x_lo, x_hi, max_ticks=7)
    ax.legend(frameon=False, fontsize=FONT["small"], loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title("LFP RMS per segment (median of good channels)", loc="left")


def colour_key(fig: Figure, ax, norm: Normalize, ticks: dict[float, str], label: str) -> None:
    """A short horizontal colour bar under a channel map, saying what its colours mean."""
    box = ax.get_position()
    cax = fig.add_axes((box.x0, box.y0 - 0.035, box.width * 0.4, 0.012))
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=colormaps[RMS_CMAP]), cax=cax, orientation="horizontal")
    bar.set_ticks(list(ticks), labels=list(ticks.values()))
    bar.ax.tick_params(labelsize=FONT["small"], length=2)
    cax.yaxis.set_label_position("right")
    cax.set_ylabel(label, rotation=0, ha="left", va="center", fontsize=FONT["small"])


def plot_quality(data: RecordingData, prov: Provenance, clock: Clock) -> Figure:
    fig = new_figure()
    top = fig.add_gridspec(1, 2, wspace=0.04, left=0.09, right=0.985, top=0.9, bottom=0.52)
    medians, norm = _region_rms_norm(data)

    def rms_ratio(c: ChannelInfo):
        group = "ignored" if c.ignored else (c.region or "unmapped")
        if c.qc is None or not medians.get(group):
            return None
        return math.log10(max(c.qc.rms_uv, 1e-9) / medians[group])

    rms_ax = fig.add_subplot(top[0, 0])
    channel_map_panel(rms_ax, data, value=rms_ratio, norm=norm,
                      text=lambda c: f"{c.qc.rms_uv:.0f} µV" if c.qc else "ignored",
                      title="RMS per channel as mapped; flagged ones outlined")
    colour_key(fig, rms_ax, norm, {-1.0: "÷10", 0.0: "1", 0.7: "×5"}, "× the region's median RMS")
    noise_norm = Normalize(vmin=0, vmax=30, clip=True)
    noise_ax = fig.add_subplot(top[0, 1])
    channel_map_panel(noise_ax, data,
                      value=lambda c: 10 * math.log10(max(c.qc.line_noise_ratio, 1e-9)) if c.qc else None,
                      norm=noise_norm,
                      text=lambda c: f"{10 * math.log10(max(c.qc.line_noise_ratio, 1e-9)):.0f} dB" if c.qc else "ignored",
                      title="Line noise per channel (50/60 Hz over 40-80 Hz)", show_flags=False)
    colour_key(fig, noise_ax, noise_norm, {0: "0", 10: "10", 20: "20", 30: "30 dB"}, "over the 40-80 Hz floor")
    bottom = fig.add_gridspec(2, 2, width_ratios=[1, 1.25], height_ratios=[0.3, 1], wspace=0.22, hspace=0.9,
                              left=0.09, right=0.86, top=0.42, bottom=0.09)
    spectra_panel(fig.add_subplot(bottom[:, 0]), data)
    coverage_panel(fig.add_subplot(bottom[0, 1]), data, clock)
    if data.lfp_qc:
        lfp_rms_panel(fig.add_subplot(bottom[1, 1]), data, clock)
    else:
        fig.text(0.55, 0.2, "No LFP QC sidecars were given: the RMS per segment is not shown.",
                 fontsize=FONT["note"], color="#8B0000")
    flagged = [c for c in data.info.converted_channels if c.bad]
    summary = f"{len(flagged)} of {len(data.info.converted_channels)} channels flagged, left out of region averages"
    listed = ", ".join(f"{c.name} ({flag_label(c)})" for c in flagged[:3]) + (", ..." if len(flagged) > 3 else "")
    summary += f": {listed}" if flagged else ""
    sign(fig, f"{data.info.recording_id or 'recording'}: quality control", prov, subtitle=summary)
    return fig
