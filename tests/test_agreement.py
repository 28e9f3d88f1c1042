"""Agreement between scored and predicted states: worked by hand, and kappa on published tables."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from pipeline.sleep.agreement import agreement


def test_small_example_worked_by_hand():
    truth = ["wake", "wake", "wake", "nrem", "nrem", "rem", "unclassified", "nrem"]
    predicted = ["wake", "nrem", "wake", "nrem", "unclassified", "rem", "wake", "nrem"]
    r = agreement(truth, predicted)
    # Epoch 6 is unclassified in the truth: left out. Of the other 7, 5 agree.
    assert r["n_epochs"] == 8 and r["n_compared"] == 7 and r["n_truth_unclassified"] == 1
    assert r["n_predicted_unclassified"] == 1
    assert r["confusion"] == {
        "truth": ["wake", "nrem", "rem"],
        "predicted": ["wake", "nrem", "rem", "unclassified"],
        "matrix": [[2, 1, 0, 0],
                   [0, 2, 0, 1],
                   [0, 0, 1, 0]],
    }
    assert r["accuracy"] == pytest.approx(5 / 7)
    # Rows 3, 3, 1; columns 2, 3, 1, 1: p_e = (3*2 + 3*3 + 1*1) / 49 = 16/49, p_o = 35/49.
    assert r["kappa"] == pytest.approx(float((Fraction(35, 49) - Fraction(16, 49)) / (1 - Fraction(16, 49))))
    assert r["kappa"] == pytest.approx(19 / 33)
    assert r["per_state"]["wake"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert r["per_state"]["nrem"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert r["per_state"]["rem"] == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1})
    assert json.loads(json.dumps(r)) == r  # plain types only


def _from_2x2(a, b, c, d):
    """Rater 1 (truth) and rater 2 (predicted) from a 2x2 table: yes=wake, no=nrem;
    a yes/yes, b yes/no, c no/yes, d no/no."""
    truth = ["wake"] * (a + b) + ["nrem"] * (c + d)
    predicted = ["wake"] * a + ["nrem"] * b + ["wake"] * c + ["nrem"] * d
    return truth, predicted


# The worked examples of the Wikipedia article "Cohen's kappa" (the 50 grant proposals,
# and the two tables with the same 60% agreement but different kappas).
@pytest.mark.parametrize("table, accuracy, kappa", [
    ((20, 5, 10, 15), 0.70, 0.40),
    ((45, 15, 25, 15), 0.60, 0.1304),
    ((25, 35, 5, 35), 0.60, 0.2593),
])
def test_kappa_on_published_tables(table, accuracy, kappa):
    r = agreement(*_from_2x2(*table), states=("wake", "nrem"))
    assert r["accuracy"] == pytest.approx(accuracy)
    assert r["kappa"] == pytest.approx(kappa, abs=5e-5)
    assert r["confusion"]["matrix"] == [[table[0], table[1], 0], [table[2], table[3], 0]]


def test_perfect_agreement_and_undefined_ratios():
    r = agreement(["wake", "nrem", "rem", "nrem"], ["wake", "nrem", "rem", "nrem"])
    assert r["accuracy"] == 1.0 and r["kappa"] == 1.0
    # One state only on both sides: chance agreement is 1, kappa is 0/0.
    r = agreement(["wake"] * 4, ["wake"] * 4)
    assert r["kappa"] is None and r["accuracy"] == 1.0
    assert r["per_state"]["rem"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    # REM predicted but never in the truth: precision 0, recall undefined.
    r = agreement(["wake", "wake"], ["wake", "rem"])
    assert r["per_state"]["rem"] == {"precision": 0.0, "recall": None, "f1": None, "support": 0}


def test_all_truth_unclassified_compares_nothing():
    r = agreement(["unclassified"] * 3, ["wake", "nrem", "rem"])
    assert r["n_compared"] == 0 and r["accuracy"] is None and r["kappa"] is None
    assert r["confusion"]["matrix"] == [[0] * 4] * 3


def test_predicted_unclassified_is_a_disagreement():
    r = agreement(["wake", "nrem"], ["unclassified", "unclassified"])
    assert r["accuracy"] == 0.0 and r["n_predicted_unclassified"] == 2
    assert r["per_state"]["wake"]["recall"] == 0.0


def test_wrong_inputs_are_refused():
    with pytest.raises(ValueError, match=r"one length"):
        agreement(["wake"], ["wake", "nrem"])
    with pytest.raises(ValueError, match=r"predicted holds states \['sleep'\]"):
        agreement(["wake"], ["sleep"])


def test_matches_scikit_learn_when_installed():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    states = ["wake", "nrem", "rem"]
    truth = rng.choice(states + ["unclassified"], size=500, p=[0.4, 0.4, 0.1, 0.1])
    predicted = np.where(rng.random(500) < 0.7, truth, rng.choice(states + ["unclassified"], size=500))
    r = agreement(truth, predicted)
    keep = truth != "unclassified"
    t, p = truth[keep], predicted[keep]
    columns = states + ["unclassified"]
    assert r["kappa"] == pytest.approx(metrics.cohen_kappa_score(t, p, labels=columns))
    assert r["accuracy"] == pytest.approx(metrics.accuracy_score(t, p))
    assert r["confusion"]["matrix"] == metrics.confusion_matrix(t, p, labels=columns)[:3].tolist()
    precision, recall, f1, support = metrics.precision_recall_fscore_support(t, p, labels=states, zero_division=0)
    for i, s in enumerate(states):
        assert r["per_state"][s] == pytest.approx({"precision": precision[i], "recall": recall[i],
                                                   "f1": f1[i], "support": support[i]})
