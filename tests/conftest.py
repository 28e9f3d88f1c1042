"""Shared fixtures: a throw-away project folder with its own config, sheet and raw data.

Integration tests run the real `ephys` command and the real Snakemake in that folder,
on small synthetic recordings made by the project's own generator.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real-formats"
SHEET_COLUMNS = ["recording_id", "animal", "raw_path", "notes", "rerun",
                 "status", "progress", "message", "results_link", "updated", "run_id"]


def real_data(sub: str) -> Path:
    path = REAL_DATA / sub  # a folder or one file in it
    if not path.exists():
        pytest.skip(f"real recordings not present at {path} (shared data folder absent)")
    return path


def tree_checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def write_tiny_model(path: Path, *, name: str) -> dict:
    """A real model file (an XGBoost booster fitted on random numbers): enough for the
    workflow to read its version, not to score anything well."""
    import numpy as np

    from pipeline.sleep.hmm import transition_matrix
    from pipeline.sleep.xgb import fit_booster, save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    booster = fit_booster(rng.normal(size=(60, 2)), np.repeat([0, 1, 2], 20), [0, 1, 2], rounds=2)
    return save_model(path, name=name, booster=booster, feature_names=["a", "b"], epoch_s=4.0, classes=[0, 1, 2],
                      class_prior={"wake": 1 / 3, "nrem": 1 / 3, "rem": 1 / 3}, transitions=transition_matrix(4.0),
                      trained_on=[], evaluation={})


@dataclass
class Project:
    dir: Path

    @property
    def config_path(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def raw(self) -> Path:
        return self.dir / "raw"

    @property
    def sheet(self) -> Path:
        return self.dir / "sheet.csv"

    def ephys(self, *args: str, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "pipeline", "--config", str(self.config_path), *args],
                              cwd=self.dir, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"ephys {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def snakemake(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), *args],
                              cwd=self.dir, capture_output=True, text=True, timeout=timeout)

    def write_sheet(self, rows: list[dict], columns: list[str] = SHEET_COLUMNS) -> None:
        with open(self.sheet, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=columns, lineterminator="\r\n")
            w.writeheader()
            for r in rows:
                w.writerow({c: r.get(c, "") for c in columns})

    def read_sheet(self) -> list[dict]:
        with open(self.sheet, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def edit_row(self, index: int, **cells: str) -> None:
        """Change cells of one row, as a person saving the sheet would."""
        rows = self.read_sheet()
        rows[index].update(cells)
        # A lab's own columns (`sleep_model` ...) are kept, after the usual ones.
        self.write_sheet(rows, SHEET_COLUMNS + [c for c in rows[index] if c and c not in SHEET_COLUMNS])

    def replace_config(self, **sections) -> None:
        """Replace whole sections of the project's config (a back-end's keys differ)."""
        cfg = yaml.safe_load(self.config_path.read_text())
        cfg.update(sections)
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def set_config(self, **sections) -> None:
        cfg = yaml.safe_load(self.config_path.read_text())
        for section, values in sections.items():
            if isinstance(values, dict):
                cfg[section].update(values)
            else:
                cfg[section] = values
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture(scope="session")
def synthetic_recording(tmp_path_factory) -> Path:
    """Three minutes, 12 channels at 2 kHz: small, with every state and all the artefacts."""
    from pipeline.synth import write_synthetic_recording

    out = tmp_path_factory.mktemp("synth") / "rec"
    write_synthetic_recording(out, duration_s=180, n_channels=12, sampling_rate=2000.0, seed=3)
    return out


@pytest.fixture
def project(tmp_path) -> Project:
    """A project folder: the repository's config.yaml with short segments, an empty raw root."""
    d = tmp_path / "proj"
    d.mkdir()
    shutil.copy(REPO / "config.yaml", d / "config.yaml")
    p = Project(d)
    p.set_config(lfp={"segment_s": 60}, executor={"cores": 2})
    p.raw.mkdir()
    return p


@pytest.fixture
def recording_in(project, synthetic_recording):
    """Copy the session's synthetic recording into the project's raw root under a name."""

    def copy(name: str = "rec1") -> Path:
        dest = project.raw / name
        shutil.copytree(synthetic_recording, dest)
        return dest

    return copy
