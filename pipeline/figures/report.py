"""The figures stage: a recording's stage outputs -> overview, sleep architecture and
quality-control (channel_qc) PNGs, one PDF report, and provenance.json.

Every output carries its provenance (pipeline version, configuration hash, sleep model
version, run): visibly at the foot of every page, in the PNG and PDF metadata, and in
provenance.json beside them, so nobody has to ask which analysis made a picture.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from pipeline.figures.architecture import plot_architecture, totals_panel
from pipeline.figures.clock import Clock, LightSchedule
from pipeline.figures.data import RecordingData, duration_words, load_recording
from pipeline.figures.overview import overview_windows, plot_overview
from pipeline.figures.quality import flag_label, plot_quality
from pipeline.figures.style import FONT, figure_style, new_figure, save_png, sign
from pipeline.io.atomic import atomic_path, write_json_atomic
from pipeline.io.recording_info import RecordingInfo
from pipeline.provenance import Provenance

log = logging.getLogger(__name__)

PNG_OUTPUTS = ("overview", "architecture", "channel_qc")  # of layout.FIGURE_OUTPUTS
TITLES = {"overview": "overview", "architecture": "sleep architecture", "channel_qc": "quality control"}


def model_version_of(summary: dict) -> str:
    """The sleep model version that made a hypnogram, as its summary.json records it."""
    return str(summary.get("model_version") or f"{summary.get('method', 'unknown')} (version not recorded)")


def _recording_facts(data: RecordingData, schedule: LightSchedule | None) -> list[tuple[str, str]]:
    info = data.info
    flagged = [f"{c.name} ({flag_label(c)})" for c in info.converted_channels if c.bad]
    gaps = sum(g.duration_s for g in info.gaps)
    regions = ", ".join(data.spectra.regions + ([data.spectra.roles["emg"]] if data.spectra.has_emg else []))
    return [
        ("Recording", info.recording_id or "?"),
        ("Animal", info.animal or "?"),
        ("Start", f"{info.start_datetime.strftime('%a %d %b %Y, %H:%M:%S')} ({Clock(info.start_datetime).zone()})"),
        ("Duration", duration_words(data.duration_s)),
        ("Raw data", f"{info.format}, {len(info.channels)} channels at {info.sampling_rate:g} Hz"),
        ("LFP", f"{info.lfp_rate:g} Hz, {len(info.segments)} segment(s)"),
        ("Regions", regions or "none"),
        ("Gaps", f"{len(info.gaps)}, {duration_words(gaps)} in all" if info.gaps else "none"),
        ("Channels left out", ", ".join(flagged) if flagged else "none"),
        ("Light schedule", schedule.describe() if schedule else "none configured"),
        ("Head tracking", f"head speed in {data.head_speed_unit}" if data.head_speed is not None else "none"),
    ]


def _analysis_facts(prov: Provenance, pages: list[str]) -> list[tuple[str, str]]:
    return [
        ("Pipeline version", prov.pipeline_version),
        ("Configuration hash", prov.config_hash),
        ("  by stage", ", ".join(f"{k} {v}" for k, v in prov.stage_config_hashes.items())),
        ("Sleep model", prov.model_version),
        ("Run", prov.run_id),
        ("Made", prov.made_at.replace("T", " ")),
        ("Pages", ", ".join(pages)),
    ]


def _fact_block(fig: Figure, y: float, heading: str, facts: list[tuple[str, str]], *, x: float = 0.04,
                width: int = 58) -> float:
    """Key-value lines from `y` down, long values wrapped; returns the y below the block."""
    fig.text(x, y, heading, fontsize=FONT["panel"], weight="bold")
    y -= 0.045
    for key, value in facts:
        lines = textwrap.wrap(value, width) or [""]
        fig.text(x, y, key, fontsize=FONT["label"], weight="normal" if key.startswith(" ") else "bold", va="top")
        fig.text(x + 0.15, y, "\n".join(lines), fontsize=FONT["label"], va="top",
                 linespacing=1.3 if len(lines) > 1 else 1.2)
        y -= 0.029 * len(lines) + 0.004
    return y - 0.02


def summary_page(data: RecordingData, prov: Provenance, clock: Clock, schedule: LightSchedule | None,
                 pages: list[str]) -> Figure:
    """Page 1: what the recording is, what made its results, its sleep in numbers, and notes."""
    fig = new_figure()
    sign(fig, f"Sleep and LFP report: {data.info.recording_id or 'recording'}", prov,
         subtitle=f"animal {data.info.animal or '?'}")
    y = _fact_block(fig, 0.91, "Recording", _recording_facts(data, schedule))
    _fact_block(fig, y, "Analysis", _analysis_facts(prov, pages))
    table = fig.add_axes((0.57, 0.55, 0.41, 0.33))
    totals_panel(table, data, clock, schedule)
    table.set_title("Sleep in numbers", loc="left", fontsize=FONT["panel"], weight="bold")
    notes = data.notes or ["Nothing missing: every mapped region, REM and sleep are present, and no gaps."]
    fig.text(0.57, 0.47, "Notes", fontsize=FONT["panel"], weight="bold")
    y = 0.425
    for note in notes:
        lines = textwrap.wrap(note, 62)
        fig.text(0.57, y, "• " + "\n  ".join(lines), fontsize=FONT["label"], va="top", linespacing=1.3,
                 color="#8B0000" if data.notes else "black")
        y -= 0.029 * len(lines) + 0.008
    return fig


def make_figures(info: RecordingInfo, spectrogram_paths: list[str | Path], hypnogram: str | Path,
                 summary: str | Path, outputs: dict[str, str | Path], *, settings: dict[str, dict],
                 schedule: LightSchedule | None, hours_per_page: float = 0, lfp_qc: list[str | Path] = (),
                 run_id: str | None = None, head_speed: str | Path | None = None) -> list[Path]:
    """Write every output named in layout.FIGURE_OUTPUTS to the path `outputs` gives it, each atomically.

    `settings` are the configuration values of the analysis stages that made the inputs
    (pipeline.provenance.stage_settings), the figures' own included. `head_speed`: the
    tracking stage's head_speed.tsv, drawn under the muscle trace, if the recording has one.
    """
    data = load_recording(info, spectrogram_paths, hypnogram, summary, lfp_qc, head_speed)
    if data.head_speed is not None:
        log.info("head speed (%s) is drawn under the muscle trace", data.head_speed_unit)
    prov = Provenance.make(recording_id=info.recording_id or "?", animal=info.animal or "?", settings=settings,
                           model_version=model_version_of(data.summary), run_id=run_id,
                           inspected_by=info.pipeline_version)
    clock = Clock(info.start_datetime)
    windows = overview_windows(data.spectra.onsets_s, data.spectra.epoch_s, clock, hours_per_page)
    pages = (["summary", "overview"] + [f"overview {i + 1}/{len(windows)}" for i in range(len(windows))]
             + ["sleep architecture", "quality control"])
    written = []
    with figure_style(), atomic_path(outputs["report"], suffix=".pdf") as pdf_tmp:
        with PdfPages(pdf_tmp, metadata=prov.pdf_metadata(f"Sleep and LFP report: {prov.recording_id}")) as pdf:
            _page(pdf, summary_page(data, prov, clock, schedule, pages))
            for name, fig in _figures(data, prov, clock, schedule, windows):
                if name in PNG_OUTPUTS:
                    written.append(save_png(fig, outputs[name], prov, f"{prov.recording_id}: {TITLES[name]}"))
                _page(pdf, fig)
    write_json_atomic(outputs["provenance"], prov.to_json())
    written += [Path(outputs["report"]), Path(outputs["provenance"])]
    log.info("figures written: %s", ", ".join(str(p) for p in written))
    return written


def _figures(data: RecordingData, prov: Provenance, clock: Clock, schedule: LightSchedule | None, windows):
    """(output name or page name, figure) in report order; each made only when needed."""
    yield "overview", plot_overview(data, prov, clock, schedule)
    for i, window in enumerate(windows):
        a, b = clock.x(window[0]), clock.x(window[1])
        yield f"overview-{i}", plot_overview(data, prov, clock, schedule, window=window,
                                             page=f"{clock.label(a)}-{clock.label(b)} ({i + 1}/{len(windows)})")
    yield "architecture", plot_architecture(data, prov, clock, schedule)
    yield "channel_qc", plot_quality(data, prov, clock)


def _page(pdf: PdfPages, fig: Figure) -> None:
    pdf.savefig(fig)
    fig.clear()  # the figure's artists go now, not when the report is complete
