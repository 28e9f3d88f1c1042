"""The files of a raw folder that inspecting it reads, so the workflow can declare them
as inputs and inspect again when one changes (data files, sidecars, the channel map)."""

from __future__ import annotations

from pathlib import Path

DATA_SUFFIXES = {".ncs", ".rhd", ".oebin", ".dat", ".continuous", ".npy"}
# Beside the data: the .dat sidecar, Open Ephys's settings (start time), the folder's own channel map.
DESCRIPTION_NAMES = {"recording.yaml", "recording.yml", "recording.json", "settings.xml", "channel_map.yaml"}


def raw_input_files(folder: str | Path) -> list[Path]:
    """Every file below `folder` that inspect may read, sorted."""
    return sorted(p for p in Path(folder).rglob("*")
                  if p.is_file() and (p.suffix.lower() in DATA_SUFFIXES or p.name in DESCRIPTION_NAMES))
