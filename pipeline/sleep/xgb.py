"""XGBoost sleep models: the classifier both models use, and trained model files.

A model file (`ephys train --out lab-model.json`) is one JSON document: what it is
(`format`), its `version` (its name and a hash of its contents), the feature columns it
was trained on in order, the epoch length, the states, the transition matrix counted
from the training scores, how it was evaluated (leave-one-animal-out) and the booster
itself. A table whose columns or epoch length differ is refused, saying what differs:
a model is only as good as the features it was trained on.

xgboost is imported here only, and only when a model is fitted or used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pipeline.errors import ConfigError
from pipeline.io.atomic import write_text_atomic
from pipeline.sleep.hmm import STATES
from pipeline.sleep.model import Evidence
from pipeline.sleep.table import FeatureTable

log = logging.getLogger(__name__)

MODEL_FORMAT = "ephys-sleep-model/1"
PARAMS = {
    "objective": "multi:softprob",
    "tree_method": "hist",
    "max_depth": 4,
    "eta": 0.15,
    "subsample": 0.8,
    "colsample_bytree": 0.5,
    "min_child_weight": 2,
    "nthread": 1,
    "seed": 0,
    "verbosity": 0,
}
N_ROUNDS = 120


def fit_booster(x: np.ndarray, labels: np.ndarray, classes: list[int], *, rounds: int = N_ROUNDS,
                weights: np.ndarray | None = None):
    """An XGBoost classifier of `labels` (indices into STATES, each in `classes`)."""
    import xgboost as xgb

    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[int(v)] for v in labels])
    if weights is None:  # balance the states: REM is rare but matters as much
        freq = np.bincount(y, minlength=len(classes)) / len(y)
        weights = 1.0 / np.maximum(freq[y], 1e-3)
        weights /= weights.mean()
    d = xgb.DMatrix(np.asarray(x, dtype=np.float32), label=y, weight=weights)
    return xgb.train({**PARAMS, "num_class": len(classes)}, d, num_boost_round=rounds)


def predict_log_proba(booster, x: np.ndarray, classes: list[int]) -> np.ndarray:
    import xgboost as xgb

    p = booster.predict(xgb.DMatrix(np.asarray(x, dtype=np.float32)))
    p = np.asarray(p, dtype=np.float64).reshape(len(x), len(classes))
    return np.log(np.clip(p, 1e-6, 1.0))


def read_model_header(path: str | Path) -> dict:
    """The model file's description without its booster; refuses what is not a model file."""
    return {k: v for k, v in _read_model_file(path).items() if k != "booster"}


def _read_model_file(path: str | Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not a sleep model file ({type(e).__name__}: {str(e)[:120]}); "
                          "make one with `ephys train`.") from None
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise ConfigError(f"{path} is not a sleep model file of this pipeline (format {MODEL_FORMAT}); "
                          "make one with `ephys train`.")
    return doc


def describe_difference(expected: list[str], got: list[str]) -> str:
    missing = [n for n in expected if n not in set(got)]
    extra = [n for n in got if n not in set(expected)]

    def few(names):
        return ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")

    parts = []
    if missing:
        parts.append(f"the recording lacks {len(missing)} of its features ({few(missing)})")
    if extra:
        parts.append(f"the recording has {len(extra)} features it was not trained on ({few(extra)})")
    if not parts:
        parts.append("the features are the same but in another order")
    return "; ".join(parts)


@dataclass
class TrainedModel:
    kind = "xgboost"
    header: dict
    booster: object

    @property
    def version(self) -> str:
        return self.header["version"]

    @property
    def classes(self) -> list[int]:
        return [STATES.index(s) for s in self.header["classes"]]

    @classmethod
    def load(cls, path: str | Path) -> "TrainedModel":
        import xgboost as xgb

        header = _read_model_file(path)
        booster = xgb.Booster()
        booster.load_model(bytearray(json.dumps(header.pop("booster")).encode()))
        header["path"] = str(path)
        return cls(header, booster)

    def check(self, table: FeatureTable) -> None:
        where = self.header.get("path", "the sleep model")
        if abs(float(self.header["epoch_s"]) - table.epoch_s) > 1e-9:
            raise ConfigError(f"{where} was trained on {self.header['epoch_s']:g}-s epochs, but this recording is "
                              f"scored in {table.epoch_s:g}-s epochs (sleep.epoch_s); train a model for "
                              f"{table.epoch_s:g}-s epochs or change sleep.epoch_s.")
        if list(self.header["feature_names"]) != list(table.names):
            raise ConfigError(f"{where} was trained on other features than this recording has: "
                              f"{describe_difference(self.header['feature_names'], table.names)}. Train it on "
                              "recordings with the same channel map regions, or use the label-free scorer "
                              "(sleep.model: null).")

    def evidence(self, table: FeatureTable, roles: dict[str, str | None]) -> Evidence:
        self.check(table)
        classes = self.classes
        log_p = predict_log_proba(self.booster, table.values, classes)
        prior = np.log(np.maximum(np.array([self.header["class_prior"][STATES[c]] for c in classes]), 1e-3))
        ev = np.full((len(table), len(STATES)), -1e6)
        ev[:, classes] = log_p - prior[None]
        trans = np.array(self.header["transitions"]) if self.header.get("transitions") else None
        return Evidence(ev, {"trained_on": self.header.get("trained_on", [])}, [], trans)


def save_model(path: str | Path, *, name: str, booster, feature_names: list[str], epoch_s: float,
               classes: list[int], class_prior: dict[str, float], transitions: np.ndarray,
               trained_on: list[dict], evaluation: dict) -> dict:
    """Write a model file atomically; returns its header (with the version)."""
    raw = json.loads(bytes(booster.save_raw(raw_format="json")).decode())
    body = {
        "format": MODEL_FORMAT,
        "name": name,
        "made_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "feature_names": list(feature_names),
        "epoch_s": float(epoch_s),
        "states": list(STATES),
        "classes": [STATES[c] for c in classes],
        "class_prior": class_prior,
        "transitions": np.asarray(transitions).round(6).tolist(),
        "trained_on": trained_on,
        "evaluation": evaluation,
        "booster": raw,
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:10]
    body["version"] = f"xgboost-{name}-{digest}"
    write_text_atomic(path, json.dumps(body) + "\n")
    return {k: v for k, v in body.items() if k != "booster"}
