"""How far a scorer's states agree with a person's, epoch by epoch (`ephys score --truth`).

Epochs the person left unclassified are not compared: there is nothing to agree with.
An epoch the scorer left unclassified but the person scored counts as a disagreement,
and shows in a column of its own in the confusion matrix. Cohen's kappa is computed on
that whole matrix; the unclassified column has no row, so it only adds disagreement.
Everything returned is plain Python (int, float, str, list, dict, None), ready for JSON.
A ratio with nothing to divide by (precision of a state never predicted) is None.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

UNCLASSIFIED = "unclassified"


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def agreement(truth: Sequence[str], predicted: Sequence[str],
              states: Sequence[str] = ("wake", "nrem", "rem")) -> dict:
    """Accuracy, Cohen's kappa, per-state precision/recall/F1/support and the confusion
    matrix (rows: truth, columns: predicted) of two equally long sequences of states."""
    truth = np.asarray(truth, dtype=str)
    predicted = np.asarray(predicted, dtype=str)
    if truth.shape != predicted.shape or truth.ndim != 1:
        raise ValueError(f"truth and predicted must be two sequences of one length, not {truth.shape} "
                         f"and {predicted.shape}")
    states = list(states)
    columns = [*states, UNCLASSIFIED]
    for name, labels, allowed in (("truth", truth, columns), ("predicted", predicted, columns)):
        unknown = sorted(set(labels.tolist()) - set(allowed))
        if unknown:
            raise ValueError(f"{name} holds states {unknown} outside {allowed}")

    compared = truth != UNCLASSIFIED
    t, p = truth[compared], predicted[compared]
    n = int(compared.sum())
    matrix = np.array([[int(np.sum((t == a) & (p == b))) for b in columns] for a in states], dtype=np.int64)

    diagonal = int(np.trace(matrix[:, :len(states)]))
    row_totals = matrix.sum(axis=1)
    column_totals = matrix.sum(axis=0)
    accuracy = _ratio(diagonal, n)
    if n:
        p_observed = diagonal / n
        p_expected = float(np.sum(row_totals * column_totals[:len(states)])) / n ** 2
        kappa = _ratio(p_observed - p_expected, 1 - p_expected)
    else:
        kappa = None

    per_state = {}
    for i, state in enumerate(states):
        tp = int(matrix[i, i])
        precision = _ratio(tp, column_totals[i])
        recall = _ratio(tp, row_totals[i])
        f1 = (2 * precision * recall / (precision + recall)
              if precision is not None and recall is not None and precision + recall > 0 else
              (0.0 if precision is not None and recall is not None else None))
        per_state[state] = {"precision": precision, "recall": recall, "f1": f1, "support": int(row_totals[i])}

    return {
        "n_epochs": int(truth.size),
        "n_compared": n,
        "n_truth_unclassified": int(truth.size - n),
        "n_predicted_unclassified": int(column_totals[-1]),
        "accuracy": accuracy,
        "kappa": kappa,
        "per_state": per_state,
        "confusion": {"truth": states, "predicted": columns, "matrix": matrix.tolist()},
    }
