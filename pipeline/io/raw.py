"""Raw recordings: recognise the vendor format of a folder and open it.

The first step of the data flow: inspect and convert call `open_recording` and then
see only the reader interface of pipeline.io.recording, whatever the format.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.channels import CHANNEL_MAP_FILE
from pipeline.errors import RawDataError
from pipeline.io import dat, neo_formats
from pipeline.io.neuralynx import NeuralynxRecording
from pipeline.io.recording import RawRecording


def open_recording(folder: str | Path, *, index: dict[str, dict] | None = None,
                   data_roots: list[str] | None = None) -> RawRecording:
    """Open the raw recording in `folder`, recognising its format from the files present.

    Neuralynx .ncs files in the folder (pipeline.io.neuralynx); an Intan .rhd file in
    it; an Open Ephys structure.oebin anywhere below it; Open Ephys legacy .continuous
    files below it (those three in pipeline.io.neo_formats); a .dat file with a
    recording.yaml sidecar in it (pipeline.io.dat); checked in that order. `index` is
    the per-file reading index recording.json keeps for Neuralynx, so that a segment
    job does not scan whole files again; the other formats need none and ignore it.
    `data_roots` (the stages always give them) confine every file below `folder`, after
    following links, to those folders (see `check_inside_data_roots`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RawDataError(f"the raw data folder {folder} does not exist or is not a folder.")
    if data_roots is not None:
        check_inside_data_roots(folder, data_roots)
    entries = [p for p in folder.iterdir() if p.is_file()]
    suffixes = {p.suffix.lower() for p in entries}
    if ".ncs" in suffixes:
        return NeuralynxRecording(folder, index=index)
    if ".rhd" in suffixes:
        return neo_formats.open_intan(folder)
    if neo_formats.find_oebin(folder):
        return neo_formats.open_openephys_binary(folder)
    if neo_formats.find_continuous_folders(folder):
        return neo_formats.open_openephys_legacy(folder)
    if ".dat" in suffixes or dat.find_sidecar(folder) is not None:
        return dat.DatRecording(folder)
    raise RawDataError(
        f"{folder} holds no raw data this pipeline can read (looked for Neuralynx .ncs files, an Intan .rhd "
        "file, an Open Ephys structure.oebin or .continuous files, and a .dat file with a recording.yaml sidecar)."
    )


def lies_inside(path: str | Path, data_roots: list[str]) -> bool:
    """Whether `path`, symbolic links followed, is one of `data_roots` or below one."""
    real = os.path.realpath(path)
    for root in data_roots:
        root = os.path.realpath(root)
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return True
    return False


def check_inside_data_roots(folder: Path, data_roots: list[str]) -> None:
    """Refuse a raw folder when it, or anything below it, leads outside the data roots
    once symbolic links are followed.

    The sheet's raw_path was checked when the row was registered, but a link inside the
    folder (a file, or a sub-folder the Open Ephys readers walk into) could still point
    at any file the pipeline's account may read, which would then be converted and
    published. Every entry is checked, not only the data files a reader is known to
    open, because the neo readers open files of their own choosing. The link target is
    not named in the message: it may be what should not be shown.
    """
    roots = [os.path.realpath(r) for r in data_roots]
    allowed = ", ".join(roots)
    if not lies_inside(folder, roots):
        raise RawDataError(f"the raw data folder {folder} lies outside the folders the pipeline may read "
                           f"({allowed}).")
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=None):
        real_dir = os.path.realpath(dirpath)
        if real_dir in seen:  # a link back up the tree: walked already
            dirnames[:] = []
            continue
        seen.add(real_dir)
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            if not lies_inside(path, roots):
                shown = os.path.relpath(path, folder)
                raise RawDataError(
                    f"{shown} in the raw data folder {folder} is a link to a place outside the folders the pipeline "
                    f"may read ({allowed}); put the file itself into the folder instead of a link to it."
                )


DATA_SUFFIXES = {".ncs", ".rhd", ".oebin", ".dat", ".continuous", ".npy"}
# Read beside the data: the .dat sidecar, Open Ephys's settings (the start time), the folder's own channel map.
DESCRIPTION_NAMES = {*dat.SIDECAR_NAMES, "settings.xml", CHANNEL_MAP_FILE}


def raw_input_files(folder: str | Path) -> list[Path]:
    """Every file below `folder` that inspecting it may read, sorted: the workflow
    declares them as inputs, so that it inspects again when one of them changes."""
    return sorted(p for p in Path(folder).rglob("*")
                  if p.is_file() and (p.suffix.lower() in DATA_SUFFIXES or p.name in DESCRIPTION_NAMES))
