"""`ephys train`: an XGBoost sleep model from a lab's own scored recordings.

The recordings come in a manifest, a tab-separated file with a header and one line per
recording:

    source                      truth                          animal
    results/rec-0412            scores/rec-0412.tsv            m12
    edf/m13-day1.edf            scores/m13-day1.tsv            m13

`source` is a results folder of the workflow, a `features.tsv` written by `ephys score`,
or a recording file MNE reads (with `--eeg`/`--emg`); `truth` is a scoring file
(pipeline.sleep.truth: intervals, one state per epoch, MNE annotations, or a hypnogram
this pipeline wrote and a person corrected); `animal` is optional (default: the
recording's animal, else the source's name). Paths are relative to the manifest.

The model is evaluated leave-one-animal-out: for each animal, a model trained on the
others scores it, with the same smoothing as in use. The figures are pooled over all
held-out epochs: accuracy, Cohen's kappa, per-state precision, recall and F1, and the
confusion matrix. The model saved is then trained on every recording.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from pipeline.sleep.hmm import STATES, transitions_from_labels
from pipeline.sleep.table import FeatureTable

log = logging.getLogger(__name__)


@dataclass
class Example:
    name: str
    animal: str
    table: FeatureTable
    roles: dict
    labels: np.ndarray  # index into STATES per epoch, -1 unscored


def read_manifest(path: str | Path) -> list[dict]:
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the manifest ({e})") from None
    if not rows or not {"source", "truth"} <= set(rows[0]):
        raise DataError(f"{path}: a manifest is a tab-separated table with the columns source, truth and "
                        "(optionally) animal, one line per scored recording")
    out = []
    for i, row in enumerate(rows, start=2):
        src, truth = (row.get("source") or "").strip(), (row.get("truth") or "").strip()
        if not src or not truth:
            raise DataError(f"{path}: line {i}: source and truth are both needed")
        out.append({"source": path.parent / src, "truth": path.parent / truth,
                    "animal": (row.get("animal") or "").strip() or None, "line": i})
    return out


def load_examples(manifest: str | Path, *, epoch_s: float, eeg: list[str] | None = None, emg: str | None = None,
                  codes: dict | None = None) -> list[Example]:
    from pipeline.sleep.score_file import load_source
    from pipeline.sleep.truth import epoch_labels

    examples = []
    for item in read_manifest(manifest):
        table, roles, facts = load_source(item["source"], epoch_s=epoch_s, eeg=eeg, emg=emg)
        names = epoch_labels(item["truth"], epoch_s=epoch_s, n_epochs=len(table), start_s=float(table.onsets[0]),
                             codes=codes)
        labels = np.array([STATES.index(s) if s in STATES else -1 for s in names])
        animal = item["animal"] or facts.get("animal") or Path(item["source"]).stem
        examples.append(Example(str(item["source"]), animal, table, roles, labels))
        log.info("%s (%s): %d epochs, %d scored", item["source"], animal, len(table), int((labels >= 0).sum()))
    first = examples[0].table.names
    for ex in examples[1:]:
        if ex.table.names != first:
            from pipeline.sleep.xgb import describe_difference

            raise DataError(f"{ex.name} has other features than {examples[0].name}: "
                            f"{describe_difference(first, ex.table.names)}; train on recordings with the same "
                            "regions (channel map) or the same channels (--eeg, --emg)")
    return examples


def fit(examples: list[Example], epoch_s: float):
    """A TrainedModel (in memory) fitted on the scored, usable epochs of `examples`."""
    from pipeline.sleep.xgb import TrainedModel, fit_booster

    x = np.vstack([ex.table.values[(ex.labels >= 0) & ex.table.valid] for ex in examples])
    y = np.concatenate([ex.labels[(ex.labels >= 0) & ex.table.valid] for ex in examples])
    classes = sorted({int(v) for v in y})
    if len(classes) < 2:
        raise DataError("the scores hold fewer than two states: nothing to learn")
    booster = fit_booster(x, y, classes)
    trans = transitions_from_labels(np.concatenate([np.r_[ex.labels, -1] for ex in examples]), epoch_s)
    header = {"feature_names": examples[0].table.names, "epoch_s": epoch_s,
              "classes": [STATES[c] for c in classes],
              "class_prior": {STATES[c]: float(np.mean(y == c)) for c in classes},
              "transitions": trans.tolist(), "version": "in-training"}
    return TrainedModel(header, booster)


def evaluate(examples: list[Example], epoch_s: float, **score_options) -> dict:
    """Leave-one-animal-out agreement, pooled over the held-out epochs."""
    from pipeline.sleep.agreement import agreement
    from pipeline.sleep.model import score

    animals = sorted({ex.animal for ex in examples})
    if len(animals) < 2:
        return {"method": "leave-one-animal-out", "note": "one animal only: nothing to hold out"}
    truth, predicted, folds = [], [], {}
    for animal in animals:
        train = [ex for ex in examples if ex.animal != animal]
        model = fit(train, epoch_s)
        held_t, held_p = [], []
        for ex in (e for e in examples if e.animal == animal):
            scored = score(ex.table, model, ex.roles, **score_options)
            t = [STATES[v] if v >= 0 else "unclassified" for v in ex.labels]
            held_t += t
            held_p += scored.names
        folds[animal] = agreement(held_t, held_p)["accuracy"]
        truth += held_t
        predicted += held_p
        log.info("held out %s: accuracy %.3f", animal, folds[animal] or float("nan"))
    return {"method": "leave-one-animal-out", "per_animal_accuracy": folds, **agreement(truth, predicted)}


def train(manifest: str | Path, out: str | Path, *, name: str, epoch_s: float, eeg: list[str] | None = None,
          emg: str | None = None, codes: dict | None = None, evaluate_first: bool = True, **score_options) -> dict:
    """Evaluate, fit on everything, save; returns the model's header."""
    from pipeline.sleep.xgb import save_model

    examples = load_examples(manifest, epoch_s=epoch_s, eeg=eeg, emg=emg, codes=codes)
    evaluation = evaluate(examples, epoch_s, **score_options) if evaluate_first else {}
    model = fit(examples, epoch_s)
    trained_on = [{"source": ex.name, "animal": ex.animal, "epochs": len(ex.table),
                   "scored": int((ex.labels >= 0).sum())} for ex in examples]
    return save_model(out, name=name, booster=model.booster, feature_names=examples[0].table.names,
                      epoch_s=epoch_s, classes=model.classes, class_prior=model.header["class_prior"],
                      transitions=np.array(model.header["transitions"]), trained_on=trained_on,
                      evaluation=evaluation)
