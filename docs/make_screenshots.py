"""Make the README's screenshots: what the PI gets from three synthetic days of one mouse.

    .venv/bin/python docs/make_screenshots.py [--project DIR] [--hours 24]

Writes three synthetic 24-hour recordings of one mouse (16 channels at 2 kHz, so that a
day takes about two minutes to write and three to process on two cores; the first day
has a 5-minute gap), registers them, runs the whole workflow on each in turn with the
repository's config.yaml, and shrinks the published figures (and the report's pages, if
`pdftoppm` is installed) into docs/screenshots/; then runs `ephys demo` (what `make demo`
runs) in a folder of its own and takes its overview and report pages (demo_*.png). A project folder given with
--project is reused: recordings and results already there are not made again. About
16 GB of disk for three days (raw data and LFP).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "screenshots"
ANIMAL = "mouse7"
DAYS = (("day1", 5, (14 * 3600.0, 300.0)), ("day2", 6, None), ("day3", 7, None))  # id, seed and date, gap
WIDTH = 900  # pixels: readable in a README, small in the repository


def run(cmd: list[str], cwd: Path) -> None:
    """Run a command with this checkout's pipeline first on the path (whatever is installed)."""
    print("$", " ".join(cmd), flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    subprocess.run(cmd, cwd=cwd, check=True, env=env)


def shrink(src: Path, dest: Path, width: int = WIDTH) -> None:
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        im.quantize(colors=192, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(dest, optimize=True)
    print(f"{dest.relative_to(REPO)}: {dest.stat().st_size // 1000} kB", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", type=Path, help="project folder to make (or reuse); default: a temporary one")
    ap.add_argument("--hours", type=float, default=24.0, help="length of each day's recording")
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    from pipeline.synth import write_synthetic_recording

    project = args.project or Path(tempfile.mkdtemp(prefix="ephys-screenshots-"))
    (project / "raw").mkdir(parents=True, exist_ok=True)
    if not (project / "config.yaml").exists():
        shutil.copy(REPO / "config.yaml", project / "config.yaml")
    bin_dir = Path(sys.executable).parent
    for rec, seed, gap in DAYS:
        raw = project / "raw" / rec
        if not any(raw.glob("*.ncs")):
            print(f"writing {raw} ...", flush=True)
            write_synthetic_recording(raw, duration_s=args.hours * 3600, n_channels=16, sampling_rate=2000.0,
                                      seed=seed, gap=gap, start_time=datetime(2026, 1, seed, 7, tzinfo=timezone.utc))
        run([str(bin_dir / "ephys"), "add", rec, ANIMAL, str(raw)], project)
        # Figures are drawn again even if the recording is done: they are what is shown.
        run([str(bin_dir / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--cores", "2", "--forcerun",
             "figures", f"results/{rec}/published.json"], project)

    OUT.mkdir(parents=True, exist_ok=True)
    folder = project / "published" / ANIMAL
    for name in ("overview", "architecture", "channel_qc"):
        shrink(folder / "day1" / f"{name}.png", OUT / f"{name}.png")
    shrink(folder / "animal_summary.png", OUT / "animal_summary.png")
    report_pages(folder / "day1" / "report.pdf", project, "report_page")

    # What `make demo` itself publishes (30 minutes of 64 channels at 32 kHz), so that a
    # new user sees exactly what the first command gives: its overview and report pages.
    demo = project / "demo"
    demo.mkdir(exist_ok=True)
    if not (demo / "config.yaml").exists():
        shutil.copy(REPO / "config.yaml", demo / "config.yaml")
    run([str(bin_dir / "ephys"), "--config", str(demo / "config.yaml"), "demo"], demo)
    demo_folder = demo / "published" / "demo-mouse" / "demo-rec1"
    shrink(demo_folder / "overview.png", OUT / "demo_overview.png")
    report_pages(demo_folder / "report.pdf", project, "demo_report_page")
    print(f"project: {project}")
    return 0


def report_pages(pdf: Path, project: Path, stem: str) -> None:
    """Every page of a report as docs/screenshots/<stem><n>.png (needs pdftoppm, Debian's
    poppler-utils)."""
    if not shutil.which("pdftoppm"):
        print(f"pdftoppm is not installed: {pdf}'s pages are not made", flush=True)
        return
    for old in OUT.glob(f"{stem}[0-9]*.png"):
        old.unlink()
    prefix = project / f"pages-{stem}"
    run(["pdftoppm", "-r", "120", "-png", str(pdf), str(prefix)], project)
    for n, page in enumerate(sorted(project.glob(f"pages-{stem}-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1])),
                             start=1):
        shrink(page, OUT / f"{stem}{n}.png")


if __name__ == "__main__":
    sys.exit(main())
