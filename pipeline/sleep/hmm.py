"""Temporal smoothing of per-epoch state likelihoods with a hidden Markov model.

States persist for many epochs and some transitions do not happen in mice (REM is
entered from NREM, not from wake), so per-epoch evidence is combined with a transition
matrix: Viterbi for the state sequence, forward-backward for per-epoch probabilities.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

STATES = ("wake", "nrem", "rem")


def transition_matrix(epoch_s: float) -> np.ndarray:
    """Mouse-like transitions per epoch: mean bouts of ~2 min wake, ~3 min NREM, ~1 min REM."""
    mean_bout_s = {"wake": 120.0, "nrem": 180.0, "rem": 60.0}
    leave = {s: min(0.5, epoch_s / mean_bout_s[s]) for s in STATES}
    # Where a bout goes when it ends.
    to = {
        "wake": {"nrem": 0.999, "rem": 0.001},
        "nrem": {"wake": 0.7, "rem": 0.3},
        "rem": {"wake": 0.9, "nrem": 0.1},
    }
    a = np.zeros((3, 3))
    for i, s in enumerate(STATES):
        a[i, i] = 1 - leave[s]
        for t, p in to[s].items():
            a[i, STATES.index(t)] = leave[s] * p
    return a


def viterbi(log_lik: np.ndarray, log_trans: np.ndarray, log_start: np.ndarray) -> np.ndarray:
    n, k = log_lik.shape
    delta = log_start + log_lik[0]
    back = np.zeros((n, k), dtype=np.int64)
    for t in range(1, n):
        scores = delta[:, None] + log_trans
        back[t] = np.argmax(scores, axis=0)
        delta = scores[back[t], np.arange(k)] + log_lik[t]
    path = np.empty(n, dtype=np.int64)
    path[-1] = int(np.argmax(delta))
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def posteriors(log_lik: np.ndarray, log_trans: np.ndarray, log_start: np.ndarray) -> np.ndarray:
    n, k = log_lik.shape
    alpha = np.empty((n, k))
    beta = np.zeros((n, k))
    alpha[0] = log_start + log_lik[0]
    for t in range(1, n):
        alpha[t] = logsumexp(alpha[t - 1][:, None] + log_trans, axis=0) + log_lik[t]
    for t in range(n - 2, -1, -1):
        beta[t] = logsumexp(log_trans + (log_lik[t + 1] + beta[t + 1])[None, :], axis=1)
    post = alpha + beta
    post -= logsumexp(post, axis=1, keepdims=True)
    return np.exp(post)


def transitions_from_labels(labels: np.ndarray, epoch_s: float, *, prior_weight: float = 100.0) -> np.ndarray:
    """Transition matrix per epoch counted from scored epochs (indices into STATES, -1
    for unscored), with the default matrix as a prior worth `prior_weight` transitions
    per state, so a state the scorer rarely left or never entered keeps sane odds."""
    counts = transition_matrix(epoch_s) * prior_weight
    a, b = labels[:-1], labels[1:]
    ok = (a >= 0) & (b >= 0)
    np.add.at(counts, (a[ok], b[ok]), 1.0)
    return counts / counts.sum(axis=1, keepdims=True)


def smooth(log_lik: np.ndarray, epoch_s: float, *, transitions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(most likely state index per epoch, posterior probabilities per epoch).

    `transitions`: the per-epoch transition matrix (rows: from, columns: to); None for
    the mouse-like default."""
    a = transition_matrix(epoch_s) if transitions is None else np.asarray(transitions, dtype=np.float64)
    log_trans = np.log(a + 1e-300)
    log_start = np.log(np.full(3, 1 / 3))
    return viterbi(log_lik, log_trans, log_start), posteriors(log_lik, log_trans, log_start)
