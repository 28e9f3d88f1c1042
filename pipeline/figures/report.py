"""Figures and the PDF report of one recording, for the PI.

Every figure carries the recording, the animal and the pipeline version that made it,
so nobody has to ask which analysis produced a picture.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from pipeline import __version__  # noqa: E402
from pipeline.io.atomic import atomic_path  # noqa: E402
from pipeline.io.recording_info import RecordingInfo  # noqa: E402
from pipeline.sleep.staging import load_summary, read_hypnogram  # noqa: E402

log = logging.getLogger(__name__)

STATE_COLORS = {"wake": "#e4572e", "nrem": "#2e86ab", "rem": "#76b041", "unclassified": "#bbbbbb"}
STATE_LEVEL = {"wake": 3, "rem": 2, "nrem": 1, "unclassified": 0}
REGION_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]


def load_spectrograms(paths: list[str | Path]) -> dict:
    parts = []
    for p in paths:
        with np.load(p) as z:
            parts.append({k: z[k] for k in z.files})
    parts.sort(key=lambda d: float(d["onsets_s"][0]) if len(d["onsets_s"]) else 0.0)
    regions = [str(r) for r in parts[0]["regions"]]
    return {
        "freqs": parts[0]["freqs"],
        "regions": regions,
        "onsets_s": np.concatenate([d["onsets_s"] for d in parts]),
        "power": np.concatenate([d["power"] for d in parts], axis=1),
        "valid": np.concatenate([d["valid"] for d in parts]),
    }


def _time_axis(seconds: np.ndarray) -> tuple[np.ndarray, str]:
    span = seconds[-1] - seconds[0] if len(seconds) else 0
    if span > 3 * 3600:
        return seconds / 3600, "hours from start"
    return seconds / 60, "minutes from start"


def _footer(fig, info: RecordingInfo, run_id: str | None) -> None:
    text = (f"{info.recording_id or ''}  ·  animal {info.animal or '?'}  ·  "
            f"start {info.start_time[:19].replace('T', ' ')}  ·  ephys pipeline {__version__}"
            + (f"  ·  run {run_id}" if run_id else ""))
    fig.text(0.01, 0.005, text, fontsize=7, color="#555555", ha="left", va="bottom")


def plot_overview(info: RecordingInfo, spec: dict, hyp_onsets: np.ndarray, hyp_states: list[str], *,
                  run_id: str | None = None, fmax_plot: float = 30.0):
    """Spectrograms of the main regions with the hypnogram (and muscle power) under them."""
    from pipeline.sleep.staging import bouts

    regions = [r for r in spec["regions"] if r != "emg"]
    shown = [r for r in ("cortex", "hippocampus") if r in regions] or regions[:2]
    has_emg = "emg" in spec["regions"]
    n_rows = len(shown) + 1 + int(has_emg)
    ratios = [3] * len(shown) + [1.2] + ([1] if has_emg else [])
    fig = plt.figure(figsize=(13, 2.2 * len(shown) + 3))
    # A narrow second column holds the colour bars, so every time axis has the same width.
    grid = fig.add_gridspec(n_rows, 2, height_ratios=ratios, width_ratios=[70, 1], wspace=0.02)
    axes = [fig.add_subplot(grid[0, 0])]
    axes += [fig.add_subplot(grid[i, 0], sharex=axes[0]) for i in range(1, n_rows)]
    t, unit = _time_axis(spec["onsets_s"])
    scale = 3600 if unit.startswith("hours") else 60
    freqs = spec["freqs"]
    fsel = freqs <= fmax_plot
    epoch = spec["onsets_s"][1] - spec["onsets_s"][0] if len(spec["onsets_s"]) > 1 else 1.0
    edges = np.append(t, t[-1] + epoch / scale)
    df = freqs[1] - freqs[0]
    fedges = np.append(freqs[fsel] - df / 2, freqs[fsel][-1] + df / 2)
    for row, region in enumerate(shown):
        ax = axes[row]
        p = spec["power"][spec["regions"].index(region)][:, fsel]
        db = 10 * np.log10(p.T + 1e-30)
        lo, hi = np.percentile(db[:, spec["valid"]] if spec["valid"].any() else db, [5, 99])
        mesh = ax.pcolormesh(edges, fedges, db, vmin=lo, vmax=hi, cmap="magma", shading="flat",
                             rasterized=True)
        ax.set_ylabel(f"{region}\nfrequency (Hz)")
        cb = fig.colorbar(mesh, cax=fig.add_subplot(grid[row, 1]))
        cb.set_label("dB re 1 V²/Hz", fontsize=8)
    ax = axes[len(shown)]
    for onset, duration, state in bouts(hyp_states, hyp_onsets, epoch):
        ax.axvspan(onset / scale, (onset + duration) / scale, color=STATE_COLORS[state], alpha=0.45, lw=0)
    levels = np.array([STATE_LEVEL[s] for s in hyp_states])
    ht = hyp_onsets / scale
    ax.step(np.append(ht, ht[-1] + epoch / scale), np.append(levels, levels[-1]), where="post", color="k", lw=0.8)
    ax.set_yticks([3, 2, 1, 0], ["wake", "REM", "NREM", "uncl."])
    ax.set_ylim(-0.4, 3.4)
    ax.set_ylabel("state")
    fig.legend(handles=[Patch(color=c, alpha=0.6, label=s) for s, c in STATE_COLORS.items()],
               loc="upper right", fontsize=8, ncol=4, frameon=False)
    if has_emg:
        ax = axes[-1]
        p = spec["power"][spec["regions"].index("emg")]
        emg = 10 * np.log10(p[:, (freqs >= 30) & (freqs <= 200)].sum(axis=1) * df + 1e-30)
        ax.plot(t + epoch / scale / 2, emg, color="#444444", lw=0.6)
        ax.set_ylabel("EMG power\n(dB re 1 V²)")
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    axes[-1].set_xlabel(f"time ({unit})")
    axes[-1].set_xlim(edges[0], edges[-1])
    fig.suptitle(f"{info.recording_id or 'recording'}: spectrograms and sleep states", fontsize=12)
    fig.subplots_adjust(left=0.08, right=0.95, top=0.93, bottom=0.09, hspace=0.12)
    _footer(fig, info, run_id)
    return fig


def plot_channel_qc(info: RecordingInfo, *, run_id: str | None = None):
    chans = [c for c in info.converted_channels if c.qc is not None]
    regions = sorted({c.region or "unmapped" for c in chans})
    fig, ax = plt.subplots(figsize=(13, 3.8))
    x = np.arange(len(chans))
    rms = [c.qc.rms_uv for c in chans]
    colors = [REGION_COLORS[regions.index(c.region or "unmapped") % len(REGION_COLORS)] for c in chans]
    bars = ax.bar(x, rms, color=colors)
    for bar, c in zip(bars, chans):
        if c.bad:
            bar.set_hatch("///")
            bar.set_edgecolor("red")
            ax.annotate(c.qc.flag, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7, color="red", rotation=90)
    ax.set_xticks(x, [c.name for c in chans], rotation=90, fontsize=6)
    ax.set_yscale("log")
    ax.set_ylim(top=max(rms) * 5)  # room for the flag labels above the tallest bar
    ax.set_ylabel("RMS (µV)")
    ax.legend(handles=[Patch(color=REGION_COLORS[i % len(REGION_COLORS)], label=r) for i, r in enumerate(regions)],
              fontsize=7, ncol=len(regions), loc="upper right", frameon=False)
    ax.set_title("Channel quality: RMS per channel (hatched: left out of region averages)")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _footer(fig, info, run_id)
    return fig


def _summary_page(info: RecordingInfo, summary: dict, run_id: str | None):
    fig = plt.figure(figsize=(8.27, 11.69))
    dur = timedelta(seconds=round(info.duration_s))
    flagged = [f"{c.name} ({c.qc.flag})" for c in info.converted_channels if c.bad]
    lines = [
        ("Recording", info.recording_id or "?"),
        ("Animal", info.animal or "?"),
        ("Start", info.start_datetime.strftime("%Y-%m-%d %H:%M:%S")),
        ("Duration", str(dur)),
        ("Raw data", f"{info.format}, {len(info.channels)} channels at {info.sampling_rate:g} Hz"),
        ("LFP", f"{info.lfp_rate:g} Hz, {len(info.segments)} segment(s)"),
        ("Gaps", f"{len(info.gaps)} ({sum(g.duration_s for g in info.gaps):.1f} s)" if info.gaps else "none"),
        ("Channels left out", ", ".join(flagged) if flagged else "none"),
        ("Scoring", f"{summary.get('method')}, {summary['n_epochs']} epochs of {summary['epoch_s']:g} s"),
    ]
    for s in ("wake", "nrem", "rem", "unclassified"):
        lines.append((f"  {s}", f"{100 * summary['fractions'][s]:.1f} %  ({summary['bouts'][s]} bouts)"))
    lines += [("Pipeline version", __version__), ("Run", run_id or "-"),
              ("Made", datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))]
    fig.text(0.08, 0.94, "Sleep and LFP report", fontsize=20, weight="bold")
    y = 0.88
    for k, v in lines:
        fig.text(0.08, y, k, fontsize=11, weight="bold" if not k.startswith("  ") else "normal")
        fig.text(0.40, y, v, fontsize=11, wrap=True)
        y -= 0.032
    return fig


def make_figures(info: RecordingInfo, spectrogram_paths: list[str | Path], hypnogram: str | Path, summary: str | Path,
                 outputs: dict[str, str | Path], *, run_id: str | None = None) -> list[Path]:
    """Write the `outputs` overview (PNG), channel_qc (PNG) and report (PDF), atomically."""
    spec = load_spectrograms(spectrogram_paths)
    onsets, states = read_hypnogram(hypnogram)
    summary = load_summary(summary)
    figs = {
        "overview": plot_overview(info, spec, onsets, states, run_id=run_id),
        "channel_qc": plot_channel_qc(info, run_id=run_id),
    }
    written = []
    for name, fig in figs.items():
        with atomic_path(outputs[name], suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110)
        written.append(Path(outputs[name]))
    with atomic_path(outputs["report"], suffix=".pdf") as tmp:
        with PdfPages(tmp) as pdf:
            page = _summary_page(info, summary, run_id)
            pdf.savefig(page)
            plt.close(page)
            for fig in figs.values():
                pdf.savefig(fig)
    written.append(Path(outputs["report"]))
    for fig in figs.values():
        plt.close(fig)
    log.info("figures written: %s", ", ".join(str(p) for p in written))
    return written
