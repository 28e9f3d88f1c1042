"""The factory of sleep models: the model `sleep.model` names, and its version.

`sleep.model: null` (or `label-free`) is the label-free scorer; anything else is the
path of a model file made by `ephys train`.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.sleep.model import LABEL_FREE, LABEL_FREE_VERSION, SleepModel


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
