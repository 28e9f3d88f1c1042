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


def smooth(log_lik: np.ndarray, epoch_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(most likely state index per epoch, posterior probabilities per epoch)."""
    log_trans = np.log(transition_matrix(epoch_s) + 1e-300)
    log_start = np.log(np.full(3, 1 / 3))
    return viterbi(log_lik, log_trans, log_start), posteriors(log_lik, log_trans, log_start)
