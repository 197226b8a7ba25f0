"""One-head versions of three passes of the fused GAT kernels (:mod:`gnnkit.ops._gat_cpu`).

Each pass keeps a running value per row and head: the row's largest score, the softmax
backward's weighted sum, the receiver's and the sender's score gradients. The general kernels
keep them in small arrays, one entry per head, and walk each row's entries once with the heads
inside: with 8 heads the eight running values are independent, and their additions overlap.
With one head every entry's update waits on the previous one through memory (a store, then
a load of the same address), so here the single value lives in a local variable, a register.
The arithmetic and its order are the general kernels' (the same bits); measured on a
2,708-node graph with 13,264 entries, one thread, 7 channels: the score pass in 27 against
60 us, the whole forward of a one-head layer (the paper's output layer) in 0.90 of the
time, its backward in 0.77. With 8 heads the general kernels are faster (walking the
entries once per head took 1.3-1.4x as long), so :mod:`gnnkit.ops._gat_cpu` uses these for
one head only, where the passes written out per head count
(:mod:`gnnkit.ops._gat_scalar_sources`) do not serve.

This module imports numba (through :func:`gnnkit.ops._jit.jit_kernel`): only kernel modules
import it.
"""

from __future__ import annotations

import numpy as np

from gnnkit.ops._jit import jit_kernel, prefetch_l2

__all__ = ["score_grad_rows", "score_rows", "source_grad_rows"]


@jit_kernel()
def score_rows(
    lo, hi, rowptr, col, a_src, a_dst, has_dst, edge_score, has_score, params, alpha,
):  # fmt: skip  # pragma: no cover - compiled
    """``_gat_cpu._score_rows`` for one head."""
    slope = params[0]
    for i in range(lo, hi):
        start, end = rowptr[i], rowptr[i + 1]
        d = a_dst[i, 0] if has_dst else params[2]
        peak = -np.inf
        for e in range(start, end):
            s = a_src[col[e], 0]
            if has_dst:
                s += d
            if has_score:
                s += edge_score[e, 0]
            z = s if s > 0 else s * slope
            alpha[e, 0] = z
            if z > peak:
                peak = z
        for e in range(start, end):
            alpha[e, 0] -= peak


@jit_kernel()
def score_grad_rows(
    lo, hi, rowptr, col, a_src, a_dst, has_dst, edge_score, has_score, alpha, params,
    grad_score, grad_dst,
):  # fmt: skip  # pragma: no cover - compiled
    """``_gat_cpu._score_grad_rows`` for one head."""
    slope, zero = params[0], params[2]
    for i in range(lo, hi):
        start, end = rowptr[i], rowptr[i + 1]
        weighted = zero
        for e in range(start, end):
            weighted += alpha[e, 0] * grad_score[e, 0]
        d = a_dst[i, 0] if has_dst else zero
        total = zero
        for e in range(start, end):
            g = alpha[e, 0] * (grad_score[e, 0] - weighted)
            s = a_src[col[e], 0]
            if has_dst:
                s += d
            if has_score:
                s += edge_score[e, 0]
            if not s > 0:
                g = g * slope
            grad_score[e, 0] = g
            total += g
        grad_dst[i, 0] = total


@jit_kernel()
def source_grad_rows(
    lo, hi, colptr, perm_t, grad_score, grad_src, zero, distance
):  # pragma: no cover
    """``_gat_cpu._source_grad_rows`` for one head."""
    num_edges = perm_t.shape[0]
    for j in range(lo, hi):
        total = zero
        for k in range(colptr[j], colptr[j + 1]):
            if k + distance < num_edges:
                prefetch_l2(grad_score, perm_t[k + distance], 0)
            total += grad_score[perm_t[k], 0]
        grad_src[j, 0] = total
