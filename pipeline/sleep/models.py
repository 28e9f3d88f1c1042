"""The factory of sleep models: the model `sleep.model` names, and its version; and the
model a recording's own choice selects (the sheet's `sleep model` cell, or `ephys add
--sleep-model`), checked here because a sheet cell is untrusted.

`sleep.model: null` (or `label-free`) is the label-free scorer; anything else is the
path of a model file made by `ephys train`. A recording's choice is '' (the config's
`sleep.model`), `label-free`, or the name of a model file directly in
`sleep.models_dir`: never a path, so a sheet can only pick among the files a
maintainer put there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pipeline.errors import ConfigError, RowError
from pipeline.io.registry import quoted
from pipeline.sleep.model import LABEL_FREE, LABEL_FREE_VERSION, SleepModel

MODEL_SUFFIX = ".json"
# A model's name as a cell gives it: one file name, no folder, no leading dot.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def load_model(spec: str | Path | None) -> SleepModel:
    """The model `sleep.model` names: None for the label-free scorer, else a model file."""
    if spec is None or str(spec) in (LABEL_FREE, LABEL_FREE_VERSION):
        from pipeline.sleep.label_free import LabelFreeModel

        return LabelFreeModel()
    from pipeline.sleep.xgb import TrainedModel

    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"sleep.model names {str(spec)!r}, which is not a file; make one with `ephys train`, "
                          "or set sleep.model: null for label-free scoring.")
    return TrainedModel.load(path)


def model_version(spec: str | Path | None) -> str:
    """The version of the model `sleep.model` selects, as recorded in every output."""
    if spec is None or str(spec) in (LABEL_FREE, LABEL_FREE_VERSION):
        return LABEL_FREE_VERSION
    from pipeline.sleep.xgb import read_model_header

    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"sleep.model names {str(spec)!r}, which is not a file; make one with `ephys train`, "
                          "or set sleep.model: null for label-free scoring.")
    return read_model_header(path)["version"]


# -- a recording's own choice ------------------------------------------------------------
def recording_model(choice: str, config: dict) -> str | None:
    """The `sleep.model`-like spec a recording's choice (as the registry holds it) selects:
    None for the label-free scorer, else a model file's path."""
    choice = (choice or "").strip()
    if not choice:
        return config["sleep"]["model"]
    if choice == LABEL_FREE:
        return None
    return str(Path(config["sleep"]["models_dir"]) / (choice + MODEL_SUFFIX))


def same_model(cell: str, choice: str, config: dict) -> bool:
    """Whether a `sleep model` cell selects the model a registered `choice` does (case
    aside, as the check allows; an empty cell and `label-free` are alike when sleep.model
    is null). No file is read."""
    a, b = recording_model(model_choice_words(cell), config), recording_model(choice, config)
    return (a or LABEL_FREE).casefold() == (b or LABEL_FREE).casefold()


def model_choice_words(value: str) -> str:
    """A cell's choice in the registry's spelling, without looking at any file: '' (the
    default), `label-free`, or the name it gives (`.json` left off). For telling whether a
    processed row's cell still says what it was processed with."""
    value = (value or "").strip()
    if re.sub(r"[\s_\-]+", "", value).casefold() == "labelfree" or value == LABEL_FREE_VERSION:
        return LABEL_FREE
    return value[:-len(MODEL_SUFFIX)] if value.casefold().endswith(MODEL_SUFFIX) else value


def available_models(models_dir: str | Path) -> list[str]:
    """The names a cell may give: the model files directly in `models_dir`, by name."""
    try:
        names = [e.name[:-len(MODEL_SUFFIX)] for e in os.scandir(models_dir)
                 if e.name.casefold().endswith(MODEL_SUFFIX) and e.is_file()]
    except OSError:  # no such folder (yet)
        names = []
    return sorted((n for n in names if _MODEL_NAME.match(n) and model_choice_words(n) != LABEL_FREE), key=str.casefold)


def check_model_cell(value: str, config: dict) -> str:
    """The choice a `sleep model` cell makes, in the registry's spelling ('' for an empty
    cell, `label-free`, or the name of a readable model file in sleep.models_dir).

    Raises RowError, with the models there are, for anything else: a name not there, a
    path (a cell may only name a file in that folder), a file that is not a model.
    """
    from pipeline.sleep.xgb import read_model_header

    choice = model_choice_words(value)
    if choice in ("", LABEL_FREE):
        return choice
    models_dir = Path(config["sleep"]["models_dir"])
    where = _shown_folder(models_dir, config)
    names = available_models(models_dir)
    if not _MODEL_NAME.match(choice):
        raise RowError(f"The sleep model '{quoted(value.strip())}' must be the name of a model in {where}, not a path; "
                       f"{_choose_from(names)}")
    if choice not in names:  # forgiving about case, as column labels are
        same = [n for n in names if n.casefold() == choice.casefold()]
        if len(same) != 1:
            raise RowError(f"The sleep model '{quoted(value.strip())}' was not found in {where}; {_choose_from(names)}")
        choice = same[0]
    try:
        read_model_header(models_dir / (choice + MODEL_SUFFIX))
    except ConfigError:
        raise RowError(f"The sleep model '{choice}' in {where} cannot be read: it was not made by `ephys train` "
                       f"(a maintainer can replace it); {_choose_from([n for n in names if n != choice])}") from None
    return choice


def _choose_from(names: list[str]) -> str:
    return (f"available: {', '.join([*names, LABEL_FREE])}. Please write one of these, or leave the cell empty "
            "for the lab's default.")


def _shown_folder(folder: Path, config: dict) -> str:
    """The models folder as a message names it: relative to the project folder if inside."""
    base = Path(config.get("base_dir", "."))
    return f"{folder.relative_to(base) if folder.is_relative_to(base) else folder}/"

