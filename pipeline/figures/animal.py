"""The animal summary: an animal's published recordings side by side (time in each state,
REM as a share of sleep, bout lengths), as a figure and a CSV with one row per recording.

It is drawn from the recordings' own stage outputs (recording.json, the hypnogram, the
sleep summary, provenance.json). The publish stage remakes it whenever a recording of
the animal is published; which recordings count is the publish stage's business.
Matplotlib is imported only to draw, so deciding that there is nothing to draw is cheap.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.figures.clock import Clock, LightSchedule
from pipeline.figures.data import Hypnogram, load_hypnogram
from pipeline.figures.sleep_stats import SCORED, bout_lengths, state_totals
from pipeline.io.atomic import write_text_atomic
from pipeline.io.recording_info import RecordingInfo
from pipeline.layout import RecordingPaths
from pipeline.provenance import Provenance

log = logging.getLogger(__name__)


@dataclass
class RecordingResult:
    """One published recording, as the animal summary needs it."""

    info: RecordingInfo
    hypnogram: Hypnogram
    model_version: str
    provenance: Provenance | None

    @property
    def recording_id(self) -> str:
        return self.info.recording_id or "?"


def load_result(paths: RecordingPaths) -> RecordingResult | None:
    """A recording's results, or None (with the reason in the log) if they cannot be read."""
    try:
        info = RecordingInfo.load(paths.recording_json)
        summary = json.loads(paths.summary.read_text(encoding="utf-8"))
        hyp = load_hypnogram(paths.hypnogram, float(summary["epoch_s"]))
    except (PipelineError, OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s is left out of the animal summary: its results cannot be read (%s)", paths.recording_id, e)
        return None
    prov = None
    try:
        prov = Provenance.from_json(json.loads(paths.provenance.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        pass  # made before provenance.json existed: the row says so
    model = str(summary.get("model_version") or (prov.model_version if prov else "") or "not recorded")
    return RecordingResult(info, hyp, model, prov)


CSV_COLUMNS = (
    ["recording_id", "start", "duration_h"]
    + [f"{s}_h" for s in (*SCORED, "unclassified")]
    + [f"{s}_pct" for s in SCORED]
    + ["rem_of_sleep_pct", "sleep_light_pct", "sleep_dark_pct"]
    + [f"{s}_{k}" for s in SCORED for k in ("bouts", "median_bout_s", "mean_bout_s")]
    + ["pipeline_version", "config_hash", "model_version"]
)


def summary_row(result: RecordingResult, schedule: LightSchedule | None) -> dict:
    """One recording's row of the animal summary (CSV_COLUMNS)."""
    hyp = result.hypnogram
    totals = state_totals(hyp, Clock(result.info.start_datetime), schedule)
    row = {"recording_id": result.recording_id, "start": result.info.start_time,
           "duration_h": len(hyp) * hyp.epoch_s / 3600}
    for s in (*SCORED, "unclassified"):
        row[f"{s}_h"] = totals[s]["seconds"] / 3600
    for s in SCORED:
        row[f"{s}_pct"] = 100 * totals[s]["fraction"]
        row[f"{s}_bouts"] = totals[s]["bouts"]
        row[f"{s}_median_bout_s"] = totals[s]["median_bout_s"]
        row[f"{s}_mean_bout_s"] = totals[s]["mean_bout_s"]
    sleep = totals["sleep"]
    row["rem_of_sleep_pct"] = 100 * sleep["rem_of_sleep"]
    row["sleep_light_pct"] = 100 * sleep.get("light_fraction", float("nan"))
    row["sleep_dark_pct"] = 100 * sleep.get("dark_fraction", float("nan"))
    prov = result.provenance
    row["pipeline_version"] = prov.pipeline_version if prov else result.info.pipeline_version
    row["config_hash"] = prov.config_hash if prov else "not recorded"
    row["model_version"] = result.model_version
    return row


def summary_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(v, float) and v != v else f"{v:.4g}" if isinstance(v, float) else v)
                    for k, v in r.items()})
    return out.getvalue()


def write_animal_summary(animal: str, recordings: list[RecordingPaths], outputs: dict[str, Path], *,
                         schedule: LightSchedule | None) -> list[Path]:
    """Write the animal's summary figure and CSV (`outputs` animal_summary_png/_csv) from the
    results of `recordings`; returns the files written, none if no recording could be read."""
    results = [r for r in (load_result(p) for p in recordings) if r is not None]
    results.sort(key=lambda r: (r.info.start_datetime, r.recording_id))
    if not results:
        log.warning("no readable results for animal %s: its summary is not made", animal)
        return []
    rows = [summary_row(r, schedule) for r in results]
    write_text_atomic(outputs["animal_summary_csv"], summary_csv(rows))
    _draw(animal, results, rows, outputs["animal_summary_png"])
    log.info("animal summary of %s: %d recording(s)", animal, len(rows))
    return [Path(outputs["animal_summary_png"]), Path(outputs["animal_summary_csv"])]


def _draw(animal: str, results: list[RecordingResult], rows: list[dict], png: Path) -> None:
    from pipeline.figures.animal_figure import plot_animal_summary
    from pipeline.figures.style import PNG_DPI, figure_style
    from pipeline.io.atomic import atomic_path
    from pipeline import __version__

    with figure_style():
        labels = [f"{r.info.start_datetime.strftime('%d %b')}\n{r.recording_id}" for r in results]
        fig = plot_animal_summary(animal, labels, rows, bouts=[bout_lengths(r.hypnogram) for r in results])
        meta = {"Title": f"{animal}: recordings side by side", "Software": f"ephys pipeline {__version__}",
                "ephys:pipeline_version": __version__,
                "ephys:recordings": json.dumps([{k: r[k] for k in ("recording_id", "pipeline_version", "config_hash",
                                                                     "model_version")} for r in rows])}
        with atomic_path(png, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=PNG_DPI, metadata=meta)

