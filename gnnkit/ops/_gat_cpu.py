"""numba kernels of the fused GAT layer on CPU (see :func:`gnnkit.ops.fused_gat`).

One row-parallel pass over the CSR graph (rows = receivers) computes the scores, the leaky
ReLU, the softmax over each row, attention dropout and the weighted sum of the senders'
features, with no per-edge message tensor (the FusedMM / dgNN approach: Rahman et al.,
"FusedMM: A Unified SDDMM-SpMM Kernel for Graph Embedding and Graph Neural Networks", IPDPS
2021, arXiv 2011.06391; Zhang et al., "Understanding GNN Computational Graph: A Coordinated
Computation, IO, and Memory Perspective", MLSys 2022, arXiv 2110.09524). The backward runs
three passes, every sum in a fixed order in one thread (the results are bit-identical run to
run and for any thread count, with no atomics):

1. over senders, on the transposed structure: for each edge ``j -> i`` the attention gradient
   ``<grad_out_i, xw_j>`` and the feature gradient ``grad_xw_j += alpha * grad_out_i``. The
   sender's own row stays in cache, so the one row gathered per edge is ``grad_out_i``'s;
2. over receivers: the softmax and leaky-ReLU backward of each row (per-edge scalars only);
3. over senders: the sender-score gradient, a sum of per-edge scalars.

The forward's aggregation adds four entries to the output row per pass,
``(a0 x0 + a1 x1) + (a2 x2 + a3 x3)``, loading and storing the row once per four products
(0.92 the forward's time at ogbn-arxiv's size, 0.95-0.99 on Cora; see
:mod:`gnnkit.ops._spmm_cpu`). Small graphs with at most 64 entries per node take that pass
and the backward's sender pass written out for their shape (:mod:`gnnkit.ops._gat_rows`:
Cora's 8 x 8 aggregation in a quarter of the time, its sender pass in 0.4 of it), and graphs
of every size take the passes over per-edge scalars (the scores, the softmax backward, the
sender-score sums) written out for their head count; larger graphs aggregate and run the
sender pass one head at a time, written out for its channels (ogbn-arxiv's 8 x 32 in 0.60
and 0.64 of the time). The kernels here serve what those do not (more heads or channels
than those are written out for, int32 indices, ``GNNKIT_NARROW_SPMM=0``).

Two passes that each gather a feature row per edge (``xw_j`` over receivers for the attention
gradient, ``grad_out_i`` over senders) took 369 ms at ogbn-arxiv's size (8 heads x 32
channels, 1 thread); these three take 178 ms, with the large outputs in huge-page memory
(:func:`gnnkit.ops._memory.empty_advised`). Rows are spread over ``torch.get_num_threads()``
threads in chunks of about equal edge counts (:func:`gnnkit.ops._jit.run_rows`). Feature rows
are prefetched 16-64 edges ahead (the gathered rows are read in random order), and the
per-edge dot products of the backward are vectorised (reassociated in a fixed pattern).

This module imports numba (through :func:`gnnkit.ops._jit.jit_kernel`); callers import it only
when a CPU kernel is first needed. Optional inputs travel as empty arrays with a flag, so each
kernel compiles once per float dtype (float32, float64): about 20 s per dtype on a busy
2-core machine, then loaded from numba's on-disk cache.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gnnkit.ops import _expf as E
from gnnkit.ops import _gat_cpu_one_head as one_head
from gnnkit.ops import _gat_rows
from gnnkit.ops._jit import (
    as_numpy,
    jit_kernel,
    prefetch_distance,
    prefetch_l2,
    run_rows,
)
from gnnkit.ops._memory import empty_advised

__all__ = ["backward", "forward"]


@jit_kernel()
def _prefetch_row(array, row):  # pragma: no cover - compiled
    """Every cache line of ``array[row]`` (H, C), 64 bytes apart in float32 and float64."""
    heads, channels = array.shape[1], array.shape[2]
    step = 64 // array.itemsize
    for h in range(heads):
        for c in range(0, channels, step):
            prefetch_l2(array, row, h, c)


def _distance(xw: Tensor) -> int:
    """How many CSR entries ahead the kernels prefetch feature rows."""
    return prefetch_distance(xw.shape[1] * xw.shape[2] * xw.element_size(), xw.nbytes)


# Each pass is a serial kernel over a range of rows, run on chunks of rows of about equal edge
# counts by gnnkit.ops._jit.run_rows (see gnnkit.ops._jit for why not numba's parallel=True).


@jit_kernel(fastmath={"reassoc"})
def _dot(a, b, total):  # pragma: no cover - compiled
    """``total`` + <a, b> for two 1-D arrays. Reassociation lets LLVM keep several partial
    sums in vector lanes; the order is fixed by the compiled code, so the result is the same every run and
    for every thread count."""
    for c in range(a.shape[0]):
        total += a[c] * b[c]
    return total


@jit_kernel()
def _score_rows(
    lo, hi, rowptr, col, a_src, a_dst, has_dst, edge_score, has_score, params, alpha,
):  # fmt: skip
    """Pass 1 over receivers: ``alpha[e, h]`` = the leaky-ReLU score minus its row's maximum
    (each head's), so every entry is at most 0 and the row's largest is exactly 0."""
    heads = a_src.shape[1]
    slope = params[0]
    peak = np.empty(heads, dtype=alpha.dtype)
    for i in range(lo, hi):
        start, end = rowptr[i], rowptr[i + 1]
        for h in range(heads):
            peak[h] = -np.inf
        for e in range(start, end):
            j = col[e]
            for h in range(heads):
                s = a_src[j, h]
                if has_dst:
                    s += a_dst[i, h]
                if has_score:
                    s += edge_score[e, h]
                z = s if s > 0 else s * slope
                alpha[e, h] = z
                if z > peak[h]:
                    peak[h] = z
        for e in range(start, end):
            for h in range(heads):
                alpha[e, h] -= peak[h]


@jit_kernel()
def _aggregate_rows(
    lo, hi, rowptr, col, xw, params, keep, has_keep, out, alpha, distance,
):  # fmt: skip
    """Pass 3 over receivers: each row's exponentials normalised (alpha, before dropout),
    then the weighted sum of the senders' rows with the dropout mask applied. The exponentials
    are multiplied by the reciprocal of their sum, one division per row and head rather than
    per entry (within an ulp of the quotient; the forward at 8 heads took 9 % less time on
    Cora and 16 % less at ogbn-arxiv's size)."""
    heads, channels, num_edges = xw.shape[1], xw.shape[2], col.shape[0]
    scale, zero, one = params[1], params[2], params[3]  # in the features' dtype
    total = np.empty(heads, dtype=alpha.dtype)
    for i in range(lo, hi):
        start, end = rowptr[i], rowptr[i + 1]
        for h in range(heads):
            for c in range(channels):
                out[i, h, c] = zero
        _inverse_sums(alpha, start, end, total, zero, one)
        e = start
        while e + 4 <= end:  # four entries per pass over the output row (module docstring)
            for q in range(4):
                if e + q + distance < num_edges:
                    _prefetch_row(xw, col[e + q + distance])
            j0, j1, j2, j3 = col[e], col[e + 1], col[e + 2], col[e + 3]
            for h in range(heads):
                a0 = _coefficient(alpha, e, h, total[h], keep, has_keep, scale, zero)
                a1 = _coefficient(alpha, e + 1, h, total[h], keep, has_keep, scale, zero)
                a2 = _coefficient(alpha, e + 2, h, total[h], keep, has_keep, scale, zero)
                a3 = _coefficient(alpha, e + 3, h, total[h], keep, has_keep, scale, zero)
                row, x0, x1, x2, x3 = out[i, h], xw[j0, h], xw[j1, h], xw[j2, h], xw[j3, h]
                for c in range(channels):
                    row[c] += (a0 * x0[c] + a1 * x1[c]) + (a2 * x2[c] + a3 * x3[c])
            e += 4
        while e < end:
            if e + distance < num_edges:
                _prefetch_row(xw, col[e + distance])
            j = col[e]
            for h in range(heads):
                a = _coefficient(alpha, e, h, total[h], keep, has_keep, scale, zero)
                for c in range(channels):
                    out[i, h, c] += a * xw[j, h, c]
            e += 1


@jit_kernel()
def _inverse_sums(alpha, start, end, total, zero, one):  # pragma: no cover - compiled
    """``total[h]`` = 1 / the sum of ``alpha[start:end, h]`` (at least 1: the row's largest
    term is exp(0)); an empty row's stays 0. One head's running sum is a local variable
    (:mod:`gnnkit.ops._gat_cpu_one_head`)."""
    heads = alpha.shape[1]
    if heads == 1:
        row_sum = zero
        for e in range(start, end):
            row_sum += alpha[e, 0]
        total[0] = one / row_sum if end > start else zero
        return
    for h in range(heads):
        total[h] = zero
    for e in range(start, end):
        for h in range(heads):
            total[h] += alpha[e, h]
    if end > start:
        for h in range(heads):
            total[h] = one / total[h]


@jit_kernel()
def _coefficient(alpha, e, h, inverse_total, keep, has_keep, scale, zero):  # pragma: no cover
    """Entry ``e``'s attention for head ``h``: normalised in ``alpha`` (before dropout), and
    returned with the dropout mask applied."""
    a = alpha[e, h] * inverse_total
    alpha[e, h] = a
    if has_keep:  # a product, not a choice (gnnkit.ops._gat_feature_sources says why)
        return a * (scale * (keep[e, h] + zero))
    return a


@jit_kernel()
def _sender_grad_rows(
    lo, hi, colptr, row_t, perm_t, xw, alpha, params, keep, has_keep, grad_out, grad_xw,
    grad_alpha, distance,
):  # fmt: skip
    """Backward pass 1 over senders, on the transposed structure in its fixed order: for each
    edge e = (j -> i), g_alpha = <grad_out_i, xw_j> * mask (stored at e) and
    grad_xw_j += alpha_e * mask * grad_out_i. The sender's own row xw_j stays in cache, so the
    one row gathered per edge is grad_out_i's."""
    heads, channels, num_edges = grad_xw.shape[1], grad_xw.shape[2], row_t.shape[0]
    scale, zero = params[1], params[2]
    for j in range(lo, hi):
        for h in range(heads):
            for c in range(channels):
                grad_xw[j, h, c] = zero
        for k in range(colptr[j], colptr[j + 1]):
            if k + distance < num_edges:  # the receiver's row and the edge's values
                _prefetch_row(grad_out, row_t[k + distance])
                ahead = perm_t[k + distance]
                prefetch_l2(alpha, ahead, 0)
                prefetch_l2(grad_alpha, ahead, 0)
                if has_keep:
                    prefetch_l2(keep, ahead, 0)
            e, i = perm_t[k], row_t[k]
            # Two loops over the heads: one loop doing both ran 1.7x as long on Cora (8 x 8).
            for h in range(heads):
                g = _dot(grad_out[i, h], xw[j, h], zero)
                if has_keep:
                    g = g * (scale * (keep[e, h] + zero))
                grad_alpha[e, h] = g
            for h in range(heads):
                d = alpha[e, h]
                if has_keep:
                    d = d * (scale * (keep[e, h] + zero))
                row_out, row_in = grad_xw[j, h], grad_out[i, h]
                for c in range(channels):
                    row_out[c] += d * row_in[c]


@jit_kernel()
def _score_grad_rows(
    lo, hi, rowptr, col, a_src, a_dst, has_dst, edge_score, has_score, alpha, params,
    grad_score, grad_dst,
):  # fmt: skip
    """Backward pass 2 over receivers: the softmax and leaky-ReLU backward of each row.
    ``grad_score`` holds g_alpha on entry and the score gradient g_s on exit."""
    heads = alpha.shape[1]
    slope, zero = params[0], params[2]  # in the features' dtype
    weighted = np.empty(heads, dtype=alpha.dtype)
    for i in range(lo, hi):
        start, end = rowptr[i], rowptr[i + 1]
        for h in range(heads):
            weighted[h] = zero
            grad_dst[i, h] = zero
        for e in range(start, end):
            for h in range(heads):
                weighted[h] += alpha[e, h] * grad_score[e, h]
        for e in range(start, end):
            j = col[e]
            for h in range(heads):
                g = alpha[e, h] * (grad_score[e, h] - weighted[h])
                s = a_src[j, h]
                if has_dst:
                    s += a_dst[i, h]
                if has_score:
                    s += edge_score[e, h]
                if not s > 0:
                    g = g * slope
                grad_score[e, h] = g
                grad_dst[i, h] += g


@jit_kernel()
def _source_grad_rows(lo, hi, colptr, perm_t, grad_score, grad_src, zero, distance):
    """Backward pass 3 over senders: grad_a_src_j = the sum of its edges' score gradients."""
    heads, num_edges = grad_src.shape[1], perm_t.shape[0]
    for j in range(lo, hi):
        for h in range(heads):
            grad_src[j, h] = zero
        for k in range(colptr[j], colptr[j + 1]):
            if k + distance < num_edges:
                prefetch_l2(grad_score, perm_t[k + distance], 0)
            e = perm_t[k]
            for h in range(heads):
                grad_src[j, h] += grad_score[e, h]


@jit_kernel()
def _forward_rows(
    lo, hi, rowptr, col, a_src, a_dst, has_dst, edge_score, has_score, xw, params, keep,
    has_keep, out, alpha, fast_exp, distance,
):  # fmt: skip
    """The three forward passes over rows ``lo:hi`` (:func:`_score_exp_rows`, then the
    aggregation)."""
    scores = (lo, hi, rowptr, col, a_src, a_dst, has_dst, edge_score, has_score, params, alpha)
    _score_exp_rows(*scores, fast_exp)
    _aggregate_rows(lo, hi, rowptr, col, xw, params, keep, has_keep, out, alpha, distance)


@jit_kernel()
def _score_exp_rows(
    lo, hi, rowptr, col, a_src, a_dst, has_dst, edge_score, has_score, params, alpha, fast_exp,
):  # fmt: skip
    """The forward's first two passes over rows ``lo:hi``: the scores less each row's
    maximum, then their exponentials. The rows' entries ``rowptr[lo]:rowptr[hi]`` are
    contiguous in ``alpha``, so the exponentials run over that slice, in blocks of
    :data:`gnnkit.ops._expf.EXP_BLOCK` entries that share one small scratch array."""
    scores = (lo, hi, rowptr, col, a_src, a_dst, has_dst, edge_score, has_score, params, alpha)
    if alpha.shape[1] == 1:  # one head: the running maximum in a register
        one_head.score_rows(*scores)
    else:
        _score_rows(*scores)
    E.exp_rows(lo, hi, rowptr, alpha, fast_exp)


_EMPTY = {torch.float32: np.float32, torch.float64: np.float64}


def _optional(t: Tensor | None, dtype: torch.dtype) -> tuple[np.ndarray, bool]:
    """``t`` as a numpy (rows, H) array, or an empty one and ``False`` for ``None``."""
    if t is None:
        return np.empty((0, 0), dtype=_EMPTY.get(dtype, np.uint8)), False
    if t.dtype == torch.bool:  # a keep mask, read as bytes (see _coefficient)
        t = t.view(torch.uint8)
    return as_numpy(t), True


def _contiguous(
    a_src: Tensor, a_dst: Tensor | None, edge_score: Tensor | None
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The scores in contiguous memory, which the written-out kernels read by address."""
    return (
        a_src.contiguous(),
        None if a_dst is None else a_dst.contiguous(),
        None if edge_score is None else edge_score.contiguous(),
    )


def _params(dtype: torch.dtype, negative_slope: float, scale: float) -> np.ndarray:
    """(slope, scale, 0, 1) in the features' dtype, so the kernels compute in that dtype."""
    return np.array([negative_slope, scale, 0.0, 1.0], dtype=_EMPTY[dtype])


def forward(
    rowptr: Tensor,
    col: Tensor,
    a_src: Tensor,
    a_dst: Tensor | None,
    edge_score: Tensor | None,
    xw: Tensor,
    negative_slope: float,
    keep: Tensor | None,
    scale: float,
) -> tuple[Tensor, Tensor]:
    """``(out (N_d, H, C), alpha (E, H))``: the fused GAT forward (alpha before dropout).

    Three passes over each chunk of rows: scores less each row's maximum, their exponentials
    (all the chunk's entries in one vectorised loop), normalisation and aggregation.
    """
    num_rows, (_, heads, channels), dtype = rowptr.numel() - 1, xw.shape, xw.dtype
    alpha = empty_advised(xw, col.numel(), heads)
    fast_exp = dtype == torch.float32  # the vectorised expf
    rows, alpha_np = as_numpy(rowptr), as_numpy(alpha)
    written = _gat_rows.scalar_passes(a_src, rowptr)
    if written:  # the scores written out for the head count, then their exponentials
        a_src, a_dst, edge_score = _contiguous(a_src, a_dst, edge_score)
        _gat_rows.scores((rowptr, col), (a_src, a_dst, edge_score), alpha, negative_slope, rows)
        run_rows(E.exp_rows, rows, rows, alpha_np, fast_exp)
    params = _params(dtype, negative_slope, scale)
    scores: tuple = ()  # the general score kernels' inputs: numpy views, a microsecond each
    if not written:
        scores = (
            rows, as_numpy(col), as_numpy(a_src), *_optional(a_dst, dtype),
            *_optional(edge_score, dtype), params, alpha_np,
        )  # fmt: skip
    if _gat_rows.written_feature_passes(xw, rowptr):  # written out for (H, C)
        if not written:
            run_rows(_score_exp_rows, rows, *scores, fast_exp)
        xw = xw.contiguous()  # read through its address
        kernel, arguments, out = _gat_rows.aggregation(rowptr, col, xw, alpha, keep, scale)
        run_rows(kernel, rows, *arguments)
        return out, alpha
    out = empty_advised(xw, num_rows, heads, channels)
    outputs = (*_optional(keep, torch.bool), as_numpy(out), alpha_np)
    if written:
        aggregate = (rows, as_numpy(col), as_numpy(xw), params, *outputs, _distance(xw))
        run_rows(_aggregate_rows, rows, *aggregate)
    else:
        args = (*scores[:-2], as_numpy(xw), params, *outputs, fast_exp, _distance(xw))
        run_rows(_forward_rows, rows, *args)
    return out, alpha


def general_sender_pass(
    transposed: tuple[np.ndarray, Tensor, Tensor],
    xw: Tensor,
    alpha: Tensor,
    keep: Tensor | None,
    params: np.ndarray,
    grad_out: Tensor,
    grad_xw: Tensor,
    grad_alpha: Tensor,
) -> None:
    """The backward's sender pass by the general kernel (:func:`_sender_grad_rows`) over the
    senders of ``transposed`` (``colptr`` as numpy, ``row_t``, ``perm_t``); ``params`` from
    :func:`_params`."""
    colptr, row_t, perm_t = transposed
    senders = (
        colptr, as_numpy(row_t), as_numpy(perm_t), as_numpy(xw), as_numpy(alpha), params,
        *_optional(keep, torch.bool), as_numpy(grad_out), as_numpy(grad_xw),
        as_numpy(grad_alpha), _distance(xw),
    )  # fmt: skip
    run_rows(_sender_grad_rows, colptr, *senders)


def backward(
    rowptr: Tensor,
    col: Tensor,
    colptr: Tensor,
    row_t: Tensor,
    perm_t: Tensor,
    a_src: Tensor,
    a_dst: Tensor | None,
    edge_score: Tensor | None,
    xw: Tensor,
    alpha: Tensor,
    negative_slope: float,
    keep: Tensor | None,
    scale: float,
    grad_out: Tensor,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(grad_xw, grad_a_src, grad_a_dst or None, grad_edge_score or None)``."""
    (num_src, heads, channels), dtype = xw.shape, xw.dtype
    grad_xw = empty_advised(xw, num_src, heads, channels)
    grad_src = xw.new_empty(num_src, heads)
    grad_dst = xw.new_empty(rowptr.numel() - 1, heads)
    grad_score = empty_advised(xw, col.numel(), heads)  # g_alpha, then the score gradient
    params = _params(dtype, negative_slope, scale)
    rows, colptr_np = as_numpy(rowptr), as_numpy(colptr)  # the passes' chunks
    # The general kernels' inputs are numpy views (about a microsecond each): built where used.
    if _gat_rows.written_feature_passes(xw, rowptr):  # written out for (H, C)
        xw, grad_out = xw.contiguous(), grad_out.contiguous()  # read through their addresses
        transposed = (colptr, row_t, perm_t)
        _gat_rows.sender_gradient(
            transposed, xw, alpha, keep, scale, grad_out, grad_xw, grad_score, colptr_np
        )
    else:
        transposed_np = (colptr_np, row_t, perm_t)
        general_sender_pass(transposed_np, xw, alpha, keep, params, grad_out, grad_xw, grad_score)
    if _gat_rows.scalar_passes(a_src, rowptr):  # written out for the head count
        a_src, a_dst, edge_score = _contiguous(a_src, a_dst, edge_score)
        graph = (rowptr, col)
        inputs = ((a_src, a_dst, edge_score), alpha, negative_slope)
        _gat_rows.score_gradients(graph, *inputs, (grad_score, grad_dst), rows)
        _gat_rows.source_gradients((colptr, perm_t), grad_score, grad_src, colptr_np)
    else:
        one = heads == 1  # one head: the kernels with their running sums in registers
        grad_score_np = as_numpy(grad_score)
        scores = (
            rows, as_numpy(col), as_numpy(a_src), *_optional(a_dst, dtype),
            *_optional(edge_score, dtype), as_numpy(alpha), params, grad_score_np,
            as_numpy(grad_dst),
        )  # fmt: skip
        run_rows(one_head.score_grad_rows if one else _score_grad_rows, rows, *scores)
        sources = (
            colptr_np, as_numpy(perm_t), grad_score_np, as_numpy(grad_src), params[2],
            _distance(xw),
        )  # fmt: skip
        run_rows(one_head.source_grad_rows if one else _source_grad_rows, colptr_np, *sources)
    return (
        grad_xw,
        grad_src,
        grad_dst if a_dst is not None else None,
        grad_score if edge_score is not None else None,
    )
