"""Make the README's screenshots: what the PI gets from three synthetic days of one mouse.

    .venv/bin/python docs/make_screenshots.py [--project DIR] [--hours 24]

Writes three synthetic 24-hour recordings of one mouse (16 channels at 2 kHz, so that a
day takes about two minutes to write and three to process on two cores; the first day
has a 5-minute gap), registers them, runs the whole workflow on each in turn with the
repository's config.yaml, and shrinks the published figures (and the report's first
page, if `pdftoppm` is installed) into docs/screenshots/. A project folder given with
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
    if shutil.which("pdftoppm"):
        page = project / "report-page1"
        run(["pdftoppm", "-r", "120", "-png", "-f", "1", "-l", "1", "-singlefile", str(folder / "day1" / "report.pdf"),
             str(page)], project)
        shrink(page.with_suffix(".png"), OUT / "report_page1.png")
    else:
        print("pdftoppm is not installed: the report's first page is not made", flush=True)
    print(f"project: {project}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
