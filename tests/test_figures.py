"""The figures, the report and their provenance, drawn from synthetic stage outputs.

Every figure is checked as a PI would meet it: every panel has a title or labelled axes
and shows something, no text runs into another or off the page, fonts are readable; bad
inputs (gaps, no REM, no sleep, a region missing) still give every figure, with a note.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import datetime, timezone

import numpy as np
import pytest
from matplotlib.text import Text

from pipeline import __version__, layout
from pipeline.errors import ConfigError, DataError
from pipeline.figures.clock import Clock, LightSchedule, light_schedule
from pipeline.figures.data import Hypnogram, load_recording
from pipeline.io.recording_info import RecordingInfo
from pipeline.provenance import Provenance, config_hash, stage_settings
from pipeline.sleep.staging import MODEL_VERSION
from pipeline.synth.stage_outputs import StageOutputSpec, write_stage_outputs

VARIANTS = {
    "plain": {},
    "gaps": {"gaps": [(1000.0, 300.0), (3000.0, 8.0)]},
    "no_rem": {"no_rem": True},
    "no_sleep": {"no_sleep": True},
    "no_hippocampus": {"missing_regions": ("hippocampus",)},
}
# What each variant's figures must say about what is missing.
NOTES = {"gaps": "2 gaps in the recording", "no_rem": "No REM sleep was scored",
         "no_sleep": "No sleep was scored", "no_hippocampus": "No hippocampus spectrogram"}
SETTINGS = {"inspect": {"lfp_rate": 1000}, "spectrogram": {"fmax": 200}, "classify": {"model": MODEL_VERSION},
            "figures": {"lights_on": 7.0, "lights_off": 19.0, "hours_per_page": 0.0}}


@pytest.fixture(scope="session")
def outputs(tmp_path_factory):
    """Stage outputs of a 2-hour, 16-channel recording per variant (three 40-min segments),
    starting at 17:30 so that lights go off during it."""
    made = {}

    def get(variant: str) -> dict:
        if variant not in made:
            spec = StageOutputSpec(hours=2, n_channels=16, segment_s=2400, seed=4, recording_id=f"rec-{variant}",
                                   animal="m1", start=datetime(2026, 1, 5, 17, 30, tzinfo=timezone.utc),
                                   **VARIANTS[variant])
            made[variant] = write_stage_outputs(tmp_path_factory.mktemp(variant), spec)
        return made[variant]

    return get


def recording_data(paths: dict):
    info = RecordingInfo.load(paths["recording_json"])
    return load_recording(info, paths["spectrograms"], paths["hypnogram"], paths["summary"], paths["lfp_qc"])


def provenance() -> Provenance:
    return Provenance.make(recording_id="rec", animal="m1", settings=SETTINGS, model_version=MODEL_VERSION,
                           run_id="20260105-170000-abcd")


# -- what every figure must satisfy ---------------------------------------------------
def _tick_labels(fig) -> tuple[set[int], list[Text]]:
    """Ids of every tick label, and the visible ones of ticks inside their axis's view."""
    every, shown = set(), []
    for ax in fig.axes:
        for axis, (lo, hi) in ((ax.xaxis, sorted(ax.get_xlim())), (ax.yaxis, sorted(ax.get_ylim()))):
            tol = 1e-9 * max(1.0, abs(hi - lo))
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                for label in (tick.label1, tick.label2):
                    every.add(id(label))
                    if label.get_visible() and label.get_text().strip() and lo - tol <= tick.get_loc() <= hi + tol:
                        shown.append(label)
    return every, shown


def visible_texts(fig) -> list[Text]:
    ticks, shown = _tick_labels(fig)
    texts = [t for t in fig.findobj(Text) if id(t) not in ticks and t.get_visible() and t.get_text().strip()]
    for ax in fig.axes:
        for table in ax.tables:
            texts += [c.get_text() for c in table.get_celld().values() if c.get_text().get_text().strip()]
    return list({id(t): t for t in texts + shown}.values())


def _labelled(ax) -> bool:
    if any(ax.get_title(loc=loc) for loc in ("left", "center", "right")):
        return True
    if getattr(ax, "_colorbar", None) is not None:
        return bool(ax.get_ylabel() or ax.get_xlabel())
    # Stacked panels share one time axis, labelled under the lowest of them.
    xlabel = any(a.get_xlabel() for a in ax.get_shared_x_axes().get_siblings(ax))
    return bool(ax.get_ylabel()) and xlabel


def _shows_something(ax) -> bool:
    return ax.has_data() or bool(ax.tables) or getattr(ax, "_colorbar", None) is not None


def check_figure(fig, *, min_font: float = 7.5) -> list[str]:
    """Every check a figure must pass; returns the texts shown, for the caller's checks."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        name = ax.get_title(loc="left") or ax.get_ylabel() or ax.get_xlabel() or repr(ax)
        assert _labelled(ax), f"a panel has neither a title nor labelled axes: {name!r}"
        assert _shows_something(ax), f"panel {name!r} is empty"
    texts = visible_texts(fig)
    assert texts
    page = fig.bbox
    boxes = []
    for t in texts:
        assert t.get_fontsize() >= min_font, f"{t.get_text()!r} is set in {t.get_fontsize()} pt"
        box = t.get_window_extent(renderer)
        assert box.x0 >= page.x0 - 1 and box.x1 <= page.x1 + 1 and box.y0 >= page.y0 - 1 and box.y1 <= page.y1 + 1, \
            f"{t.get_text()!r} runs off the page"
        boxes.append(box)
    b = np.array([[x.x0, x.y0, x.x1, x.y1] for x in boxes])
    w = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
    h = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
    overlap = (w > 1) & (h > 1)  # a pixel of contact is no overlap
    np.fill_diagonal(overlap, False)
    pairs = [(texts[i].get_text(), texts[j].get_text()) for i, j in zip(*np.nonzero(np.triu(overlap)))]
    assert not pairs, f"texts overlap: {pairs[:5]}"
    for ax in fig.axes:  # a table's text stays inside its cell
        for cell in (c for table in ax.tables for c in table.get_celld().values()):
            tb, cb = cell.get_text().get_window_extent(renderer), cell.get_window_extent(renderer)
            assert tb.x0 >= cb.x0 - 1 and tb.x1 <= cb.x1 + 1, f"{cell.get_text().get_text()!r} overflows its cell"
    return [t.get_text() for t in texts]


def test_the_checks_find_overlapping_text_an_unlabelled_panel_and_an_empty_one():
    """The checker itself: each fault planted in an otherwise good figure is found."""
    from pipeline.figures.style import new_figure

    def good():
        fig = new_figure((6, 4))
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1])
        ax.set_title("a line")
        return fig, ax

    check_figure(good()[0])
    fig, ax = good()
    ax.text(0.5, 0.5, "one label", transform=ax.transAxes)
    ax.text(0.52, 0.5, "another label", transform=ax.transAxes)
    with pytest.raises(AssertionError, match="texts overlap"):
        check_figure(fig)
    fig, ax = good()
    ax.set_title("")
    with pytest.raises(AssertionError, match="neither a title"):
        check_figure(fig)
    fig, _ = good()
    fig.add_subplot(3, 3, 9).set_title("nothing here")
    with pytest.raises(AssertionError, match="is empty"):
        check_figure(fig)


# -- every figure, for every kind of recording ------------------------------------------
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_figure_renders_readably_and_says_what_is_missing(outputs, variant):
    from pipeline.figures.architecture import plot_architecture
    from pipeline.figures.overview import plot_overview
    from pipeline.figures.quality import plot_quality
    from pipeline.figures.report import summary_page
    from pipeline.figures.style import figure_style

    data = recording_data(outputs(variant))
    clock, schedule, prov = Clock(data.info.start_datetime), light_schedule(7, 19), provenance()
    with figure_style():
        figures = {
            "overview": plot_overview(data, prov, clock, schedule),
            "overview page": plot_overview(data, prov, clock, schedule, window=(1800.0, 3600.0), page="page 2/4"),
            "architecture": plot_architecture(data, prov, clock, schedule),
            "quality": plot_quality(data, prov, clock),
            "summary": summary_page(data, prov, clock, schedule, ["summary", "overview"]),
        }
        shown = {name: " ".join(check_figure(fig)) for name, fig in figures.items()}
    for name in ("overview", "summary"):
        assert "config " + prov.config_hash in shown[name] and "sleep model " + MODEL_VERSION in shown[name]
        if variant in NOTES:
            assert NOTES[variant] in shown[name], f"{name} of {variant} does not say what is missing"
    assert "dark" in shown["overview"] and "light" in shown["overview"]  # the recording spans lights off
    if variant == "no_hippocampus":
        assert "theta/delta is drawn from cortex" in shown["overview"]
        overview_regions = [ax.get_ylabel().split("\n")[0] for ax in figures["overview"].axes]
        assert "hippocampus" not in overview_regions and "cortex" in overview_regions
    if variant == "plain":
        assert not data.notes and "Nothing missing" in shown["summary"]


def test_gaps_are_drawn_where_they_are(outputs):
    from pipeline.figures.overview import plot_overview
    from pipeline.figures.style import figure_style

    data = recording_data(outputs("gaps"))
    clock = Clock(data.info.start_datetime)
    with figure_style():
        fig = plot_overview(data, provenance(), clock, None)
    hatched = [p for ax in fig.axes for p in ax.patches if p.get_hatch()]
    spans = sorted({round(p.get_x(), 4) for p in hatched})
    # Each gap is hatched in every time panel; the 8-s gap is widened to stay visible.
    assert len(spans) == 2 and spans[0] == pytest.approx(float(clock.x(1000.0)), abs=1e-4)
    assert all(p.get_width() > 0 for p in hatched)
    assert not data.spectra.valid[250:325].any() and data.spectra.valid[:250].all()


@pytest.mark.parametrize("unit", ["cm/s", "px/s"])
def test_head_speed_is_a_trace_under_the_muscle_when_the_video_was_tracked(outputs, tmp_path, unit):
    from pipeline.figures.overview import plot_overview
    from pipeline.figures.style import figure_style
    from pipeline.io.tracking import write_head_speed

    paths = outputs("gaps")
    info = RecordingInfo.load(paths["recording_json"])
    onsets = 4.0 * np.arange(int(info.duration_s // 4))
    speed = np.where((onsets // 600) % 2 == 0, 5.0, 0.2)  # ten minutes moving, ten still
    speed[-150:] = np.nan  # the video ends ten minutes early
    write_head_speed(tmp_path / "head_speed.tsv", tmp_path / "head_speed.json", onsets, 4.0, speed,
                     {"unit": unit, "notes": ["the tracking ends 600 s before the recording does"]})
    data = load_recording(info, paths["spectrograms"], paths["hypnogram"], paths["summary"], paths["lfp_qc"],
                          tmp_path / "head_speed.tsv")
    with figure_style():
        fig = plot_overview(data, provenance(), Clock(info.start_datetime), light_schedule(7, 19))
        shown = " ".join(check_figure(fig))
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels.index(f"head\n{unit}") == labels.index("muscle") + 1  # the lowest panel, under the muscle
    assert "Head speed: the tracking ends 600 s before the recording does." in shown
    assert ("no cm scale set" in shown) == (unit == "px/s")
    trace = fig.axes[labels.index(f"head\n{unit}")].lines[0].get_ydata()
    assert np.nanmax(trace) == pytest.approx(5.0) and np.isnan(trace[-1])
    # Without tracking there is no such panel (the variants above draw none).
    plain = recording_data(outputs("plain"))
    with figure_style():
        assert not any(ax.get_ylabel().startswith("head") for ax in plot_overview(
            plain, provenance(), Clock(plain.info.start_datetime), None).axes)


# -- the outputs of `ephys figures` and their provenance ----------------------------------
def test_ephys_figures_writes_every_output_with_its_provenance(project, outputs):
    paths = outputs("gaps")
    out = project.dir / "figs"
    settings = {"inspect": {"lfp_rate": 1000, "segment_s": 2400}, "spectrogram": {"fmax": 200},
                "classify": {"epoch_s": 4, "model": MODEL_VERSION}}
    proc = project.ephys("figures", str(paths["recording_json"]), "--hypnogram", str(paths["hypnogram"]),
                         "--summary", str(paths["summary"]), "--spectrograms", *map(str, paths["spectrograms"]),
                         "--lfp-qc", *map(str, paths["lfp_qc"]), "--out-dir", str(out), "--lights-on", "7",
                         "--lights-off", "19", "--hours-per-page", "1", "--analysis-settings", json.dumps(settings),
                         "--run-id", "run-42")
    assert proc.returncode == 0, proc.stderr[-2000:]
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["pipeline_version"] == __version__ and prov["model_version"] == MODEL_VERSION
    assert prov["run_id"] == "run-42" and prov["recording_id"] == "rec-gaps" and prov["animal"] == "m1"
    assert prov["settings"] == {**settings, "figures": {"lights_on": 7.0, "lights_off": 19.0, "hours_per_page": 1.0}}
    assert prov["config_hash"] == config_hash(prov["settings"])
    assert list(prov["stage_config_hashes"]) == ["inspect", "spectrogram", "classify", "figures"]

    from PIL import Image

    for name in ("overview", "architecture", "channel_qc"):
        png = out / f"{name}.png"
        assert 30_000 < png.stat().st_size < 3_000_000, f"{png.name}: {png.stat().st_size} bytes"
        with Image.open(png) as im:
            assert im.size == (1402, 992)  # A4 landscape at 120 dpi
            meta = im.text
        assert meta["ephys:config_hash"] == prov["config_hash"] and meta["ephys:model_version"] == MODEL_VERSION
        assert meta["ephys:pipeline_version"] == __version__ and meta["ephys:run_id"] == "run-42"
        assert json.loads(meta["ephys:provenance"]) == prov

    pdf = (out / "report.pdf").read_bytes()
    # summary, the whole recording, two one-hour pages (17:30-18:00 is the first), architecture, quality
    assert len(re.findall(rb"/Type /Page\b", pdf)) == 1 + 1 + 3 + 2
    info = pdf[pdf.rindex(b"/Keywords"):][:400]
    for expected in (f"pipeline_version={__version__}", f"config_hash={prov['config_hash']}",
                     f"model_version={MODEL_VERSION}", "run_id=run-42"):
        assert expected.encode() in info
    assert b"/Title (Sleep and LFP report: rec-gaps)" in pdf and b"/Subject (rec-gaps \\(animal m1\\))" in pdf


def test_the_report_header_names_recording_animal_start_and_what_analysed_it(outputs):
    from pipeline.figures.report import summary_page
    from pipeline.figures.style import figure_style

    data = recording_data(outputs("plain"))
    prov = provenance()
    with figure_style():
        shown = " ".join(check_figure(summary_page(data, prov, Clock(data.info.start_datetime), None, ["summary"])))
    for expected in ("rec-plain", "m1", "Mon 05 Jan 2026, 17:30:00 (UTC+00:00)", "2 h 00 min", __version__,
                     prov.config_hash, MODEL_VERSION, "20260105-170000-abcd"):
        assert expected in shown, expected


def test_the_configuration_hash_changes_with_any_value_and_nothing_else():
    from conftest import REPO
    from pipeline.config import load_config

    cfg = load_config(REPO / "config.yaml")
    base = stage_settings(cfg, model_version=MODEL_VERSION)
    assert config_hash(base) == config_hash(dict(reversed(list(base.items()))))  # key order does not matter
    changed = json.loads(json.dumps(base))
    changed["classify"]["model"] = MODEL_VERSION + "-changed"
    assert config_hash(changed) != config_hash(base)
    assert config_hash(changed["spectrogram"]) == config_hash(base["spectrogram"])
    # A channel map written as ranges and written out channel by channel is one map.
    listed = stage_settings(cfg, model_version=MODEL_VERSION,
                            channel_map={"regions": {r: list(c) for r, c in base["inspect"]["channel_map"]["regions"].items()},
                                         "ignore": ["CSC63", "CSC64"]})
    assert config_hash(listed) == config_hash(base)


# -- clock time and the light schedule ---------------------------------------------------
def test_light_schedules_give_light_and_dark_periods_on_the_clock():
    day = LightSchedule(7, 19)
    assert day.periods(7, 31) == [(7, 19, "light"), (19, 31, "dark")]
    assert day.periods(20, 40) == [(20, 31, "dark"), (31, 40, "light")]
    reversed_cycle = LightSchedule(19, 7)
    assert reversed_cycle.dark_periods(0, 24) == [(7, 19)]
    assert light_schedule(None, None) is None
    for on, off in ((7, None), (8, 8)):
        with pytest.raises(ConfigError, match="figures.lights_on"):
            light_schedule(on, off)
    clock = Clock(datetime(2026, 1, 5, 22, 30, tzinfo=timezone.utc))
    assert clock.x(3600 * 2) == pytest.approx(24.5) and clock.label(24.5, with_date=True) == "00:30\n06 Jan"


def test_overview_pages_start_on_whole_clock_hours_and_each_holds_epochs():
    from pipeline.figures.overview import overview_windows

    clock = Clock(datetime(2026, 1, 5, 17, 30, tzinfo=timezone.utc))
    onsets = np.arange(0, 7200, 4.0)  # two hours of 4-s epochs
    assert overview_windows(onsets, 4.0, clock, 0) == []
    assert overview_windows(onsets, 4.0, clock, 1) == [(0.0, 1800.0), (1800.0, 5400.0), (5400.0, 7200.0)]
    # Pages end with the last scored epoch; a sliver of a page joins the page before it.
    assert overview_windows(onsets[onsets < 5402], 4.0, clock, 1) == [(0.0, 1800.0), (1800.0, 5404.0)]
    late = Clock(datetime(2026, 1, 5, 17, 58, tzinfo=timezone.utc))
    assert overview_windows(onsets, 4.0, late, 1) == [(0.0, 3720.0), (3720.0, 7200.0)]


# -- sleep architecture in numbers -------------------------------------------------------
def test_bouts_transitions_and_time_per_hour_of_a_known_hypnogram():
    from pipeline.figures.sleep_stats import bout_lengths, state_totals, time_per_bin, transition_counts

    # wake 3, nrem 5, rem 2, wake 1, unclassified 1, nrem 4 epochs of 60 s, from 06:50
    states = np.array([0] * 3 + [1] * 5 + [2] * 2 + [0] + [3] + [1] * 4, dtype=np.int8)
    hyp = Hypnogram(np.arange(len(states)) * 60.0, states, 60.0)
    clock = Clock(datetime(2026, 1, 5, 6, 50, tzinfo=timezone.utc))
    assert bout_lengths(hyp)["nrem"].tolist() == [300.0, 240.0] and bout_lengths(hyp)["unclassified"].tolist() == [60.0]
    counts = transition_counts(hyp)
    assert counts[0, 1] == 1 and counts[1, 2] == 1 and counts[2, 0] == 1 and counts[0, 3] == 1 and counts[3, 1] == 1
    assert counts.sum() == 5
    edges, seconds = time_per_bin(hyp, clock, 10 / 60)
    assert edges[0] == pytest.approx(6 + 50 / 60) and seconds.sum(axis=1).tolist() == [600.0, 360.0]
    totals = state_totals(hyp, clock, LightSchedule(7, 19))
    assert totals["nrem"]["seconds"] == 540 and totals["nrem"]["bouts"] == 2 and totals["nrem"]["median_bout_s"] == 270
    assert totals["sleep"]["rem_of_sleep"] == pytest.approx(120 / 660)
    # 06:50-07:00 is dark: 3 epochs of wake, 5 of NREM and 2 of REM
    assert totals["wake"]["dark_fraction"] == pytest.approx(0.3) and totals["sleep"]["dark_fraction"] == pytest.approx(0.7)


# -- bad stage outputs are a lab member's problem, in one sentence ---------------------------
def test_unreadable_stage_outputs_are_data_errors(outputs, tmp_path):
    paths = outputs("plain")
    info = RecordingInfo.load(paths["recording_json"])
    bad = tmp_path / "hypnogram.tsv"
    bad.write_text("onset_s\tduration_s\tstate\tconfidence\n0.000\t4\tdrowsy\t1.0\n")
    with pytest.raises(DataError, match="states this pipeline does not know \\(drowsy\\)"):
        load_recording(info, paths["spectrograms"], bad, paths["summary"])
    bad.write_text("onset_s\tduration_s\tstate\tconfidence\n")
    with pytest.raises(DataError, match="holds no epochs"):
        load_recording(info, paths["spectrograms"], bad, paths["summary"])
    with np.load(paths["spectrograms"][1]) as z:
        other = {k: z[k] for k in z.files}
    other["freqs"] = other["freqs"] * 2
    np.savez(tmp_path / "seg1.npz", **other)
    with pytest.raises(DataError, match="other frequencies than the other segments"):
        load_recording(info, [paths["spectrograms"][0], tmp_path / "seg1.npz"], paths["hypnogram"], paths["summary"])


# -- the animal summary -------------------------------------------------------------------
def test_publishing_a_recording_remakes_its_animals_summary_from_its_published_recordings(project):
    from pipeline.config import load_config
    from pipeline.figures.animal import CSV_COLUMNS, load_result, summary_row
    from pipeline.figures.animal_figure import plot_animal_summary
    from pipeline.figures.sleep_stats import bout_lengths
    from pipeline.figures.style import figure_style
    from pipeline.io.atomic import write_json_atomic
    from pipeline.io.registry import Recording, Registry
    from pipeline.store import publish_recording

    cfg = load_config(project.config_path)
    registry = Registry(project.dir / layout.STATE_DIR)
    days = {"d1": ("m1", 5, True), "d2": ("m1", 6, False), "d3": ("m1", 7, True), "x1": ("m2", 5, True)}
    for rec, (animal, day, published) in days.items():
        registry.add(Recording(rec, animal, str(project.raw)))
        paths = layout.RecordingPaths(rec, project.dir)
        write_stage_outputs(paths.results, StageOutputSpec(
            hours=1, n_channels=8, segment_s=1800, seed=day, recording_id=rec, animal=animal,
            no_rem=rec == "d3", start=datetime(2026, 1, day, 9, 0, tzinfo=timezone.utc)))
        if published:
            write_json_atomic(paths.published, {"backend": "local", "link": "", "folder": "", "files": []})
    # d4 is being published now; d2 is registered but not published; x1 is another animal's.
    registry.add(Recording("d4", "m1", str(project.raw)))
    d4 = layout.RecordingPaths("d4", project.dir)
    write_stage_outputs(d4.results, StageOutputSpec(hours=1, n_channels=8, segment_s=1800, seed=8, recording_id="d4",
                                                    animal="m1", start=datetime(2026, 1, 8, 9, tzinfo=timezone.utc)))
    publish_recording(cfg, "m1", "d4", [d4.hypnogram], d4.published)

    folder = project.dir / "published" / "m1"
    with open(folder / "animal_summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["recording_id"] for r in rows] == ["d1", "d3", "d4"]  # in time order
    assert list(rows[0]) == CSV_COLUMNS
    assert float(rows[1]["rem_h"]) == 0 and float(rows[0]["rem_h"]) > 0
    assert all(abs(sum(float(r[f"{s}_h"]) for s in ("wake", "nrem", "rem", "unclassified")) - 1) < 1e-3 for r in rows)
    assert {r["model_version"] for r in rows} == {MODEL_VERSION}
    assert (folder / "animal_summary.png").stat().st_size > 20_000 and (folder / "d4" / "hypnogram.tsv").exists()
    assert not (project.dir / "published" / "m2").exists()

    results = [load_result(layout.RecordingPaths(r, project.dir)) for r in ("d1", "d3", "d4")]
    with figure_style():
        fig = plot_animal_summary("m1", [r.recording_id for r in results], [summary_row(r, None) for r in results],
                                  bouts=[bout_lengths(r.hypnogram) for r in results])
        shown = " ".join(check_figure(fig))
    assert "m1: 3 recordings side by side" in shown and "not all alike" not in shown


def test_without_an_emg_the_muscle_trace_is_the_lfp_estimate_not_cortical_gamma(tmp_path):
    """A recording without EMG electrodes: the spectrogram stage stores muscle tone estimated
    from the LFP (lfp_emg); the overview draws that, says so, and never passes a brain
    region's high-frequency power off as muscle tone."""
    from pipeline.figures.overview import plot_overview
    from pipeline.figures.style import figure_style

    spec = StageOutputSpec(hours=1, n_channels=16, segment_s=1800, seed=5, recording_id="rec-noemg", animal="m1",
                           start=datetime(2026, 1, 5, 17, 30, tzinfo=timezone.utc), missing_regions=("emg",))
    paths = write_stage_outputs(tmp_path, spec)
    estimates = []
    for p in paths["spectrograms"]:
        with np.load(p) as z:
            arrays = dict(z)
        arrays["lfp_emg"] = np.linspace(0.05, 0.6, len(arrays["onsets_s"]))
        estimates.append(arrays["lfp_emg"])
        np.savez(p, **arrays)
    data = recording_data(paths)
    assert not data.spectra.has_emg and data.spectra.muscle_unit == "300-600 Hz correlation"
    np.testing.assert_allclose(data.spectra.muscle, np.concatenate(estimates))
    with figure_style():
        fig = plot_overview(data, provenance(), Clock(data.info.start_datetime), light_schedule(7, 19))
        shown = " ".join(check_figure(fig))
        fig.savefig(tmp_path / "overview.png", dpi=80)
    assert ("No EMG channel: muscle tone is estimated from the LFP (correlation of 300-600 Hz activity between "
            "regions).") in shown
    assert "EMG from the LFP" in shown and "80-150 Hz" not in shown


def test_the_figures_follow_the_channel_maps_roles_not_region_names(outputs, tmp_path):
    """A lab whose EMG region is called `neck` and whose theta source is `ca1`: the
    muscle trace is that EMG's power (not the LFP's estimate, not a brain region's
    high band), `neck` is no brain spectrogram, and theta/delta comes from `ca1`."""
    paths = outputs("plain")
    info = RecordingInfo.load(paths["recording_json"])
    renamed = {"emg": "neck", "hippocampus": "ca1"}
    spectrograms = []
    for k, p in enumerate(paths["spectrograms"]):
        with np.load(p) as z:
            arrays = {name: z[name] for name in z.files}
        arrays["regions"] = np.array([renamed.get(str(r), str(r)) for r in arrays["regions"]])
        arrays["roles"] = np.array(json.dumps({"slow_wave": "cortex", "theta": "ca1", "emg": "neck"}))
        spectrograms.append(tmp_path / f"seg{k}.npz")
        np.savez(spectrograms[-1], **arrays)
    data = load_recording(info, spectrograms, paths["hypnogram"], paths["summary"], paths["lfp_qc"])
    sp = data.spectra
    assert "neck" not in sp.regions and "ca1" in sp.regions
    assert sp.has_emg and sp.muscle_source.startswith("EMG ")
    assert sp.roles["theta"] == "ca1"
    from pipeline.figures.overview import _theta_delta_region

    assert _theta_delta_region(data) == "ca1"
    # The same files without roles: `neck` would be taken for a brain region.
    for p in spectrograms:
        with np.load(p) as z:
            arrays = {name: z[name] for name in z.files if name != "roles"}
        np.savez(p, **arrays)
    assert "neck" in load_recording(info, spectrograms, paths["hypnogram"], paths["summary"],
                                    paths["lfp_qc"]).spectra.regions


# -- state colours -------------------------------------------------------------------------
# Dichromat vision simulated in linear RGB with Machado, Oliveira & Fernandes (2009),
# severity 1.0: protanopia and deuteranopia, the common colour-vision deficiencies.
CVD_MATRICES = {
    "normal vision": np.eye(3),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
}
# CIELAB distance two state colours keep under every simulation: about ten just-noticeable
# differences (2.3 each), enough to tell small bars and legend patches apart at a glance.
MIN_DELTA_E = 20.0


def lab_as_seen(colours: list[str], matrix: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours as a viewer with `matrix`'s vision sees them."""
    from matplotlib.colors import to_rgb

    srgb = np.array([to_rgb(c) for c in colours])
    rgb = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    rgb = np.clip(rgb @ matrix.T, 0, 1)
    xyz = rgb @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def closest_pair(colours: dict[str, str], matrix: np.ndarray) -> tuple[float, str, str]:
    lab = lab_as_seen(list(colours.values()), matrix)
    names = list(colours)
    return min((float(np.linalg.norm(lab[i] - lab[j])), names[i], names[j])
               for i in range(len(names)) for j in range(i + 1, len(names)))


def test_state_colours_stay_apart_for_colour_blind_readers():
    from pipeline.figures.style import STATE_COLORS

    # The measure itself: red against green (matplotlib's defaults) is the pair that
    # red-green blindness merges, and so it is found here.
    red_green = {"red": "#D62728", "green": "#2CA02C"}
    assert closest_pair(red_green, CVD_MATRICES["normal vision"])[0] > 2 * MIN_DELTA_E
    assert closest_pair(red_green, CVD_MATRICES["deuteranopia"])[0] < MIN_DELTA_E / 2
    close = [f"with {vision}, {a} and {b} are {distance:.1f} apart" for vision, matrix in CVD_MATRICES.items()
             for distance, a, b in [closest_pair(STATE_COLORS, matrix)] if distance < MIN_DELTA_E]
    assert not close, close


def _colour(artist) -> str:
    """The colour an artist is filled or drawn with, as #rrggbb (alpha left out)."""
    from matplotlib.collections import Collection
    from matplotlib.colors import to_hex
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if isinstance(artist, Patch):
        rgba = artist.get_facecolor()
    elif isinstance(artist, Line2D):
        rgba = artist.get_markerfacecolor() if artist.get_marker() not in (None, "None", "") else artist.get_color()
    elif isinstance(artist, Collection):
        filled = artist.get_facecolors()  # lines (an error bar's legend entry) only have edges
        (rgba,) = {tuple(c) for c in (filled if len(filled) else artist.get_edgecolors())}
    else:
        raise TypeError(artist)
    return to_hex(rgba, keep_alpha=False).upper()


def _state_of_label(text: str) -> str | None:
    from pipeline.figures.style import STATE_LABELS

    return {**{v: k for k, v in STATE_LABELS.items()}, "Uncl.": "unclassified"}.get(text)


def legend_state_colours(fig) -> list[tuple[str, str]]:
    """(state, colour) of every legend entry that names a state."""
    out = []
    for ax in fig.axes:
        legend = ax.get_legend()
        for handle, text in zip(legend.legend_handles if legend else [], legend.get_texts() if legend else []):
            if _state_of_label(text.get_text()):
                out.append((_state_of_label(text.get_text()), _colour(handle)))
    return out


def _panel(fig, title: str):
    (ax,) = [a for a in fig.axes if a.get_title(loc="left").startswith(title) or a.get_ylabel().startswith(title)]
    return ax


def test_every_figure_draws_each_state_in_its_own_colour(outputs):
    """Where the data says a state, that state's colour is drawn: hypnogram bars over its
    epochs, hourly bars of its share, bout dots of its bouts, its table row, the animal's
    bars of its hours and medians of its bouts; every legend entry in the same colour."""
    from pipeline.figures.animal import RecordingResult, summary_row
    from pipeline.figures.animal_figure import plot_animal_summary
    from pipeline.figures.architecture import plot_architecture
    from pipeline.figures.data import STATES
    from pipeline.figures.overview import plot_overview
    from pipeline.figures.sleep_stats import bin_hours, bout_lengths, time_per_bin
    from pipeline.figures.style import STATE_COLORS, figure_style

    expected = {s: c.upper() for s, c in STATE_COLORS.items()}
    seen: list[tuple[str, str, str]] = []  # (where, state, colour drawn)
    schedule = light_schedule(7, 19)
    variants = ("gaps", "plain", "no_rem")  # gaps: unclassified epochs in the gaps
    data = {v: recording_data(outputs(v)) for v in variants}
    with figure_style():
        for v, d in data.items():
            clock, hyp = Clock(d.info.start_datetime), d.hypnogram
            overview = plot_overview(d, provenance(), clock, schedule)
            # Hypnogram: each bar covers epochs of one state, drawn in its colour on its row.
            ax = _panel(overview, "state")
            rows = {round(y): _state_of_label(t.get_text()) for y, t in zip(ax.get_yticks(), ax.get_yticklabels())}
            middles = clock.x(hyp.onsets_s + hyp.epoch_s / 2)
            drawn = set()
            for bars in ax.collections:
                for path in bars.get_paths():
                    (x0, y0), (x1, y1) = path.vertices.min(axis=0), path.vertices.max(axis=0)
                    (state,) = {STATES[i] for i in hyp.states[(middles > x0) & (middles < x1)]}
                    assert rows[round((y0 + y1) / 2)] == state, f"{state} drawn on another state's row"
                    seen.append((f"{v} hypnogram", state, _colour(bars)))
                    drawn.add(state)
            assert drawn == {STATES[i] for i in np.unique(hyp.states)}
            seen += [(f"{v} overview legend", s, c) for s, c in legend_state_colours(overview)]

            architecture = plot_architecture(d, provenance(), clock, schedule)
            # Hourly bars: the bars in a state's colour are that state's share of each bin.
            ax = _panel(architecture, "% of each")  # under the light strip, which holds the title
            _, seconds = time_per_bin(hyp, clock, bin_hours(float(clock.x(d.duration_s) - clock.x(0))))
            share = 100 * seconds / seconds.sum(axis=1, keepdims=True)
            for bars in ax.containers:
                (colour,) = {_colour(p) for p in bars.patches}
                heights = np.array([p.get_height() for p in bars.patches])
                if heights.any():  # bars of no height show no colour
                    (state,) = [s for i, s in enumerate(STATES) if np.allclose(heights, share[:, i])]
                    seen.append((f"{v} hourly bars", state, colour))
            # Bout dots: the dots in a state's colour are that state's bouts.
            lengths = bout_lengths(hyp)
            for dots in _panel(architecture, "Bout lengths").collections:
                (state,) = [s for s, b in lengths.items() if len(b) and
                            np.array_equal(np.sort(dots.get_offsets()[:, 0]), np.sort(b))]
                seen.append((f"{v} bout dots", state, _colour(dots)))
            table = [a for a in architecture.axes if a.tables][0].tables[0]
            for (r, c), cell in table.get_celld().items():
                if c == 0 and _state_of_label(cell.get_text().get_text()):
                    seen.append((f"{v} totals table", _state_of_label(cell.get_text().get_text()), _colour(cell)))
            seen += [(f"{v} architecture legend", s, c) for s, c in legend_state_colours(architecture)]

        results = [RecordingResult(d.info, d.hypnogram, MODEL_VERSION, None) for d in data.values()]
        rows = [summary_row(r, schedule) for r in results]
        bouts = [bout_lengths(d.hypnogram) for d in data.values()]
        animal = plot_animal_summary("m1", list(variants), rows, bouts=bouts)
    # Hours per recording: in each column, the bar in a state's colour is that state's hours.
    ax = _panel(animal, "Time in each state per recording")
    for column, row in enumerate(rows):
        bars = {_colour(p): p.get_height() for p in ax.patches if round(p.get_x() + p.get_width() / 2) == column}
        assert len(bars) == len(STATES)
        for s in STATES:
            assert bars[expected[s]] == pytest.approx(row[f"{s}_h"]), f"{s} of {variants[column]}"
    # Bout medians: the markers in a state's colour are the medians of that state's bouts.
    ax = _panel(animal, "Bout lengths: median and quartiles")
    for container in ax.containers:
        line = container.lines[0]
        medians = {s: [np.median(b[s]) for b in bouts if len(b[s])] for s in ("wake", "nrem", "rem")}
        (state,) = [s for s, m in medians.items() if len(m) == len(line.get_ydata())
                    and np.allclose(line.get_ydata(), m)]
        seen.append(("animal bout medians", state, _colour(line)))
    rem = [line for line in _panel(animal, "REM as a share of sleep").lines if line.get_label() == "REM % of sleep"]
    seen += [("animal REM share", "rem", _colour(line)) for line in rem]
    seen += [("animal legend", s, c) for s, c in legend_state_colours(animal)]

    wrong = [(where, s, c) for where, s, c in seen if c != expected.get(s)]
    assert not wrong, f"drawn in another colour than the state's: {wrong[:6]}"
    places = {where.split(" ", 1)[1] if where.startswith(variants) else where for where, _, _ in seen}
    assert len(places) == 9, " | ".join(sorted(places))  # every kind of place was looked at
    for where in ("gaps hypnogram", "gaps overview legend", "gaps hourly bars", "gaps totals table",
                  "animal legend"):
        assert {s for w, s, _ in seen if w == where} == set(STATES), where


# -- quality control -------------------------------------------------------------------------
def _cells(ax) -> dict[str, tuple[int, float, str, object]]:
    """Channel name -> (row, column, what its cell says under the name, its rectangle)."""
    out = {}
    for t in ax.texts:
        name, _, value = t.get_text().partition("\n")
        x, y = t.get_position()
        (box,) = [p for p in ax.patches if p.get_x() <= x <= p.get_x() + p.get_width()
                  and p.get_y() <= y <= p.get_y() + p.get_height()]
        assert name not in out, f"{name} has two cells"
        out[name] = (int(np.floor(y)), x, value, box)
    return out


def test_quality_control_lays_channels_out_as_the_map_with_their_flags_and_line_noise(outputs, tmp_path):
    """A map that lists regions and channels in its own order (thalamus first, hippocampus
    from its deepest site up): one cell per channel in that order, a row per region named
    beside it; dead, noisy and saturated channels outlined and named by their flag, the
    others with their RMS; each channel's line noise in the same place on the second map;
    each region's line-noise level in the spectra, as high as the drawn spectrum shows it."""
    from matplotlib.colors import to_hex

    from pipeline.figures.quality import plot_quality
    from pipeline.figures.style import figure_style

    paths = outputs("plain")
    info = json.loads(paths["recording_json"].read_text())
    regions = info["channel_map"]["regions"]
    info["channel_map"]["regions"] = {"thalamus": regions["thalamus"], "hippocampus": regions["hippocampus"][::-1],
                                      "cortex": regions["cortex"], "emg": regions["emg"]}
    qc = {c["name"]: c["qc"] for c in info["channels"]}
    qc["CSC7"].update(flag="noisy", rms_uv=600.0, saturated_fraction=0.0)  # noisy, never at full scale
    assert qc["CSC3"]["flag"] == "noisy" and qc["CSC3"]["saturated_fraction"] > 0 and qc["CSC6"]["flag"] == "dead"
    flags = {"CSC3": "saturated", "CSC6": "dead", "CSC7": "noisy"}
    (tmp_path / "recording.json").write_text(json.dumps(info))
    data = load_recording(RecordingInfo.load(tmp_path / "recording.json"), paths["spectrograms"], paths["hypnogram"],
                          paths["summary"], paths["lfp_qc"])
    with figure_style():
        fig = plot_quality(data, provenance(), Clock(data.info.start_datetime))
        shown = " ".join(check_figure(fig))

    groups = {**{c: r for r, chans in info["channel_map"]["regions"].items() for c in chans},
              **{c: "ignored" for c in info["channel_map"]["ignore"]}}
    rms = _cells(_panel(fig, "RMS per channel"))
    order = ["CSC9", "CSC10", "CSC11", "CSC12", "CSC8", "CSC7", "CSC6", "CSC5", "CSC1", "CSC2", "CSC3", "CSC4",
             "CSC13", "CSC14", "CSC15", "CSC16"]
    assert sorted(rms, key=lambda n: rms[n][:2]) == order, "cells in the channel map's order, row by row"
    rows = {}
    for name, (row, *_rest) in rms.items():
        rows.setdefault(groups[name], set()).add(row)
    assert all(not a & b for a in rows.values() for b in rows.values() if a is not b), "each region on its own rows"
    ax = _panel(fig, "RMS per channel")
    for y, label in zip(ax.get_yticks(), ax.get_yticklabels()):
        assert min(rows[label.get_text()]) <= y <= max(rows[label.get_text()]) + 1, f"{label.get_text()} misplaced"
    assert {t.get_text() for t in ax.get_yticklabels()} == set(rows)
    for name, (_, _, value, box) in rms.items():
        outlined = box.get_linewidth() > 1 and to_hex(box.get_edgecolor()) == "#000000"
        if name in flags:
            assert value == flags[name] and outlined, f"{name} should say {flags[name]}, outlined: {value!r}"
        else:
            expected = "ignored" if groups[name] == "ignored" else f"{qc[name]['rms_uv']:.0f} µV"
            assert value == expected and not outlined, (name, value)
    assert ("3 of 14 channels flagged, left out of region averages: CSC3 (saturated), CSC6 (dead), CSC7 (noisy)"
            in shown)

    noise = _cells(_panel(fig, "Line noise per channel"))
    assert {n: c[:2] for n, c in noise.items()} == {n: c[:2] for n, c in rms.items()}, "the same place on both maps"
    for name, (_, _, value, _) in noise.items():
        expected = "ignored" if groups[name] == "ignored" else f"{10 * np.log10(qc[name]['line_noise_ratio']):.0f} dB"
        assert value == expected, (name, value)

    spectra = _panel(fig, "Mean power spectrum per region")
    levels = {}
    for line in spectra.lines:
        region, _, level = line.get_label().partition(", ")
        if region in data.spectra.mean_spectrum:
            f, p = line.get_data()
            floor = np.median(p[(f >= 40) & (f <= 80)])
            peaks = {f0: 10 * np.log10(p[np.abs(f - f0) <= 0.5].max() / floor) for f0 in (50, 60)}
            f0 = max(peaks, key=peaks.get)
            levels[region] = (level, f"{f0} Hz +{peaks[f0]:.0f} dB")
    assert set(levels) == set(data.spectra.mean_spectrum), "a spectrum for each region"
    assert all(said == drawn for said, drawn in levels.values()), levels
    legend = [t.get_text() for t in spectra.get_legend().get_texts()]
    assert all(f"{r}, {said}" in legend for r, (said, _) in levels.items())
