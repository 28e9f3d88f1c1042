"""The inner loops of decimation: polyphase FIR stages run channel by channel.

Output i of a stage with factor D and taps h of length L = K*D + 1 is
sum_m h[m] * x[i*D + m]. Split into D phases (P_r[k] = x[k*D + r]), that sum becomes
L passes of y[i] += h[m] * P_{m mod D}[i + m div D], each a contiguous multiply-add
over a block of outputs that the compiler turns into SIMD. Every stage of one channel
runs before the next channel starts, on blocks small enough to stay in cache, and the
first stage reads the raw int16 samples straight from the buffer the reader filled
(samples in fixed-size records with headers between them, as
pipeline.io.block.RecordBlock describes them), so the raw data is touched once.

Each output is the same sequence of multiply-adds over the same input window wherever
a segment starts, so segments join bit for bit. Compiled by numba (cached on disk
after the first run); all float32.
"""

from __future__ import annotations

import numpy as np
from numba import njit

SLACK = 64  # spare samples after every buffer of ours, so the deinterleave may read past its end
_BLOCK = 1024  # outputs per pass; the phases (D x (_BLOCK + K)) stay in the L1/L2 cache
# Only contraction of a*b+c into one fused multiply-add: no reassociation, so every
# output's arithmetic stays the same wherever its block starts.
_CONTRACT = {"contract"}


@njit(cache=True, nogil=True, boundscheck=False, fastmath=_CONTRACT)
def _stage(x, n_x, h, factor, n_out, y, P):
    """y[i] = sum_m h[m] * x[i*factor + m] for i < n_out. x has n_x samples and at
    least `factor` spare ones after them (our buffers have SLACK)."""
    L = h.shape[0]
    K = (L - 1) // factor
    B = P.shape[1] - K - 1
    for i0 in range(0, n_out, B):
        nb = min(B, n_out - i0)
        nk = nb + K
        base = i0 * factor
        # Deinterleave into phases. Reads end before x's slack is exhausted; values
        # read from the slack land in phase slots that no output uses.
        if factor == 4:  # written out so that the compiler vectorises it
            xs = x[base:base + 4 * nk]
            P0, P1, P2, P3 = P[0], P[1], P[2], P[3]
            for k in range(nk):
                P0[k] = xs[4 * k]
                P1[k] = xs[4 * k + 1]
                P2[k] = xs[4 * k + 2]
                P3[k] = xs[4 * k + 3]
        elif factor == 2:
            xs = x[base:base + 2 * nk]
            P0, P1 = P[0], P[1]
            for k in range(nk):
                P0[k] = xs[2 * k]
                P1[k] = xs[2 * k + 1]
        else:
            last = n_x - 1
            for r in range(factor):
                pr = P[r]
                for k in range(nk):
                    pr[k] = x[min(base + k * factor + r, last)]
        # Four taps per pass over the block: fewer loads and stores of y.
        yb = y[i0:i0 + nb]
        h0 = h[0]
        p0 = P[0]
        for i in range(nb):
            yb[i] = h0 * p0[i]
        m = 1
        while m + 3 < L:
            h0, h1, h2, h3 = h[m], h[m + 1], h[m + 2], h[m + 3]
            p0 = P[m % factor, m // factor:]
            p1 = P[(m + 1) % factor, (m + 1) // factor:]
            p2 = P[(m + 2) % factor, (m + 2) // factor:]
            p3 = P[(m + 3) % factor, (m + 3) // factor:]
            for i in range(nb):
                yb[i] += (h0 * p0[i] + h1 * p1[i]) + (h2 * p2[i] + h3 * p3[i])
            m += 4
        while m < L:
            hm = h[m]
            pr = P[m % factor, m // factor:]
            for i in range(nb):
                yb[i] += hm * pr[i]
            m += 1


@njit(cache=True, nogil=True, boundscheck=False)
def _fill_from_records(flat, start, q0, n_have, before, n_x, row, per_record, stride):
    """row[0:n_x] = a channel's samples: `before` copies of the first one, then n_have
    samples from sample q0 of the record whose samples begin at flat[start], on through
    the records that follow it (records of `per_record` samples, `stride` words apart),
    then copies of the last."""
    first = flat[start + (q0 // per_record) * stride + q0 % per_record]
    for t in range(before):
        row[t] = first
    t = before
    q = q0
    end = before + n_have
    while t < end:  # one pass per record: the division is rare, the copy is the work
        o = q % per_record
        run = min(per_record - o, end - t)
        src = flat[start + (q // per_record) * stride + o:]
        dst = row[t:]
        for k in range(run):
            dst[k] = src[k]
        t += run
        q += run
    last = row[end - 1]
    for t in range(end, n_x):
        row[t] = last


@njit(cache=True, nogil=True, boundscheck=False)
def _rational_stage(x, h, up, down, j0, a, n_out, y):
    """y[j] = sum_k h[k] * xu[(j0 + j)*down + k - half] for j < n_out, where xu holds
    sample n of the input (x[n - a]) at up*n and zeros between: only every up-th tap
    meets a sample, so each output is a short dot product with one phase of h."""
    L = h.shape[0]
    half = (L - 1) // 2
    for j in range(n_out):
        i0 = (j0 + j) * down - half
        k0 = (-i0) % up
        n0 = (i0 + k0) // up - a
        acc = np.float32(0.0)
        t = 0
        for k in range(k0, L, up):
            acc += h[k] * x[n0 + t]
            t += 1
        y[j] = acc


@njit(cache=True, nogil=True, boundscheck=False)
def _decimate_channels(flat, rec_start, rec_q0, before, have, per_record, stride, rows, row_slot,
                       n_x, taps, factors, n_outs, bufs, P, scale, out,
                       rat_h, rat_up, rat_down, rat_j0, rat_a, group, weight, sums):
    """Decimate every channel c of a block into out[c].

    Channel c's input (n_x samples) is rows[row_slot[c]] if row_slot[c] >= 0, or else
    read from the records at flat[rec_start[c]] on (see _fill_from_records) into bufs[0]. Stage s writes
    bufs[s + 1] (the last stage writes out[c], unless a rational stage (rat_up > 0)
    follows and does); the result is multiplied by scale[c]. If any group[c] >= 0,
    sums[g] is set to the sum of input times weight[c] over the channels c of
    group g, made while each channel's input is in the cache.
    """
    n_stages = factors.shape[0]
    rational = rat_up > 0
    for c in range(out.shape[0]):
        if group[c] >= 0:  # the block's sums start from zero (here, without the GIL)
            for g in range(sums.shape[0]):
                sums[g, :] = 0.0  # the spare columns too: the deinterleave reads them
            break
    for c in range(out.shape[0]):
        if row_slot[c] >= 0:
            x = rows[row_slot[c]]
        else:
            x = bufs[0]
            _fill_from_records(flat, rec_start[c], rec_q0[c], have, before, n_x, x, per_record, stride)
        if group[c] >= 0:
            sg = sums[group[c]]
            w = weight[c]
            for i in range(n_x):
                sg[i] += w * x[i]
        n_in = n_x
        for s in range(n_stages):
            y = out[c] if s == n_stages - 1 and not rational else bufs[s + 1]
            _stage(x, n_in, taps[s], factors[s], n_outs[s], y, P)
            x = y
            n_in = n_outs[s]
        if rational:
            _rational_stage(x, rat_h, rat_up, rat_down, rat_j0, rat_a, out.shape[1], out[c])
        oc = out[c]
        g = scale[c]
        for i in range(oc.shape[0]):
            oc[i] *= g


def block_rows(block, n_x: int) -> np.ndarray:
    """Every channel's n_x input samples in `block` as (channels, n_x) float32 (the
    input itself when the LFP rate is the raw rate; checks use it too)."""
    out = np.empty((len(block.row), n_x + SLACK), dtype=np.float32)
    for c in range(len(block.row)):
        if block.row[c] >= 0:
            out[c, :n_x] = block.rows[block.row[c], :n_x]
        else:
            _fill_from_records(block.flat, block.start[c], block.q0[c], block.have, block.before, n_x, out[c],
                               block.samples_per_record, block.record_stride)
    return out[:, :n_x]


def decimate_block(block, n_x: int, stages, n_outs: list[int],
                   scale: np.ndarray | None = None, rational=None, means=None):
    """Run `stages` (objects with .taps and .factor) over each channel's n_x input samples,
    then the rational stage if given as (taps, up, down, j0, a, n_out): outputs j0.. of
    it, whose input (the integer stages' output) starts at its sample a.

    `block` says where the input lies: raw int16 samples in fixed-size records (fields
    flat, start, q0, before, have, samples_per_record, record_stride) or float32 rows
    (rows, row), as pipeline.io.block.RecordBlock describes; rows must carry at least
    as many spare columns after their n_x samples as the first stage's factor.
    Returns (channels, outputs) float32, multiplied by `scale` per channel if given.
    With `means` = (group, weight, sums) (per channel: a group index or -1, and a
    weight; sums: C-contiguous float32, (n_groups, n_x + SLACK), which a caller reuses
    block after block: fresh pages cost more than the sums), the weighted sums of the
    groups' input samples are written into `sums` in the same pass over the raw samples
    (weights 1/size make them the groups' means at the input rate), and (outputs, sums)
    returned.
    """
    if stages and np.any(block.row >= 0) and block.rows.shape[1] - n_x < stages[0].factor:
        raise ValueError(f"the block's rows need {stages[0].factor} spare columns after their {n_x} samples")
    return _decimate(block.flat, block.start, block.q0, block.before, block.have, block.samples_per_record,
                     block.record_stride, block.rows, block.row, n_x, stages, n_outs, scale, rational, means)


def decimate_rows(rows: np.ndarray, n_x: int, stages, n_outs: list[int],
                  scale: np.ndarray | None = None, rational=None) -> np.ndarray:
    """decimate_block of input given as float32 rows (channels, n_x + SLACK)."""
    if rows.shape[1] < n_x + SLACK:
        raise ValueError(f"rows need SLACK ({SLACK}) spare columns after their {n_x} samples")
    n = rows.shape[0]
    none = np.zeros(n, dtype=np.int64)
    return _decimate(np.zeros(1, dtype=np.int16), none, none, 0, 0, 1, 1, rows, np.arange(n, dtype=np.int64),
                     n_x, stages, n_outs, scale, rational)


def _decimate(flat, start, q0, before, have, per_record, stride, rows, row, n_x, stages, n_outs, scale, rational,
              means=None):
    n_ch = len(row)
    taps = tuple(np.ascontiguousarray(s.taps, dtype=np.float32) for s in stages)
    factors = np.array([s.factor for s in stages], dtype=np.int64)
    for h, f in zip(taps, factors):
        if (len(h) - 1) % f:
            raise ValueError("polyphase stages need taps of length K * factor + 1")
    width = max(list(n_outs) + [n_x]) + SLACK
    bufs = tuple(np.empty(width, dtype=np.float32) for _ in range(len(stages) + 1))
    max_k = max([(len(h) - 1) // f for h, f in zip(taps, factors)] + [0])
    P = np.empty((int(factors.max()) if len(factors) else 1, _BLOCK + max_k + 1), dtype=np.float32)
    if rational is None:
        rat = (np.zeros(1, dtype=np.float32), 0, 1, 0, 0)
        n_final = n_outs[-1]
    else:
        h, up, down, j0, a, n_final = rational
        rat = (np.ascontiguousarray(h, dtype=np.float32), int(up), int(down), int(j0), int(a))
    if not taps:  # numba cannot index an empty tuple; the loop over `factors` never reads this
        taps = (np.zeros(1, dtype=np.float32),)
    out = np.empty((n_ch, n_final), dtype=np.float32)
    g = np.ones(n_ch, dtype=np.float32) if scale is None else np.ascontiguousarray(scale, dtype=np.float32)
    if means is None:
        group, weight, sums = np.full(n_ch, -1, dtype=np.int64), np.zeros(n_ch, dtype=np.float32), \
            np.zeros((1, 1), dtype=np.float32)
    else:
        group = np.ascontiguousarray(means[0], dtype=np.int64)
        weight = np.ascontiguousarray(means[1], dtype=np.float32)
        sums = means[2]
        if sums.dtype != np.float32 or not sums.flags.c_contiguous or sums.shape[1] < n_x:
            raise ValueError(f"group sums need C-contiguous float32 rows of at least {n_x} samples")
    _decimate_channels(flat, start, q0, before, have, per_record, stride, rows, row,
                       n_x, taps, factors, np.asarray(n_outs, dtype=np.int64), bufs, P, g, out, *rat,
                       group, weight, sums)
    return out if means is None else (out, sums)
