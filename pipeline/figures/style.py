"""The look of every figure: one table of state colours, font sizes, page sizes, and the
helpers that make a figure, sign it with its provenance and save it.

State colours come from the Okabe-Ito palette, which stays distinguishable with every
common colour-vision deficiency; a state has the same colour in every figure. Unclassified
is a dark grey: a middle grey (#999999) looks like REM's purple to a deuteranope (7 CIELAB
units apart under Machado et al.'s simulation; tests/test_figures.py asks for 20). Fonts are
at least 7.5 pt, so a PNG is readable at 100 % zoom (one point is 1.67 pixels at 120 dpi).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.io.atomic import atomic_path
from pipeline.provenance import Provenance

STATE_LABELS = {"wake": "Wake", "nrem": "NREM", "rem": "REM", "unclassified": "Unclassified"}
STATE_COLORS = {"wake": "#E69F00", "nrem": "#0072B2", "rem": "#CC79A7", "unclassified": "#555555"}
GAP_COLOR = "#666666"  # hatching over stretches with no data
GAP_HATCH = "////"
DARK_COLOR = "#EBEBEB"  # shading of the dark periods of the light schedule
LIGHT_STRIP = {"light": "#F6E9A6", "dark": "#3A3A3A"}
# Lines that are not states (regions in the spectra, traces): dark, and told apart by
# line style too, never by the state colours.
REGION_STYLES = [("#000000", "-"), ("#56B4E9", "-"), ("#D55E00", "--"), ("#009E73", "-."), ("#666666", ":")]


def region_styles(regions) -> dict[str, tuple[str, str]]:
    """(colour, line style) of each region, the same in every panel of a figure."""
    return {r: REGION_STYLES[i % len(REGION_STYLES)] for i, r in enumerate(regions)}


SPECTROGRAM_CMAP = "magma"
RMS_CMAP = "cividis"

PAGE = (11.69, 8.27)  # A4 landscape, in inches: every figure is one report page
PNG_DPI = 120
FONT = {"title": 13, "panel": 10, "label": 9, "tick": 8.5, "small": 8, "note": 8.5, "footer": 7.5}
MIN_FONT_PT = 7.5

RC = {
    "font.size": FONT["label"],
    "axes.titlesize": FONT["panel"],
    "axes.labelsize": FONT["label"],
    "xtick.labelsize": FONT["tick"],
    "ytick.labelsize": FONT["tick"],
    "legend.fontsize": FONT["small"],
    "axes.spines.top": False,
    "axes.spines.right": False,
    "hatch.linewidth": 0.6,
    "pdf.fonttype": 42,  # TrueType in the PDF: text stays text (searchable, copyable)
    "image.interpolation": "nearest",
}


@contextmanager
def figure_style():
    """The house style, for drawing and saving alike (fonts are fixed when text is made)."""
    with matplotlib.rc_context(RC):
        yield


def new_figure(size: tuple[float, float] = PAGE) -> Figure:
    """A figure with its own Agg canvas: no pyplot, so nothing stays behind between figures."""
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def state_label(state: str) -> str:
    return STATE_LABELS.get(state, state)


def sign(fig: Figure, title: str, prov: Provenance, *, subtitle: str = "") -> None:
    """Title at the top; the recording and its provenance in one line at the bottom."""
    fig.text(0.012, 0.985, title, fontsize=FONT["title"], weight="bold", ha="left", va="top")
    if subtitle:
        fig.text(0.988, 0.985, subtitle, fontsize=FONT["label"], ha="right", va="top")
    fig.text(0.012, 0.008, f"{prov.recording_id}  ·  animal {prov.animal}  ·  {prov.line()}",
             fontsize=FONT["footer"], color="#444444", ha="left", va="bottom")


def save_png(fig: Figure, path: str | Path, prov: Provenance, title: str) -> Path:
    """Write `fig` as a PNG (atomically) with the provenance in its metadata."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=PNG_DPI, metadata=prov.png_metadata(title))
    return Path(path)
