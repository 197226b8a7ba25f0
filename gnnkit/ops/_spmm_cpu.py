r"""numba kernels of the CPU sparse-dense matmul (SpMM), with software prefetching.

.. math::
    Y_{h,i,:} = \sum_{e = (j \to i)} v_{h,e} \, X_{h,j,:}
    \qquad (\text{or } \textstyle\sum_e X_{h,j,:} \text{ without values})

One thread owns each output row: chunks of rows of about equal edge counts are spread over
``torch.get_num_threads()`` threads (:func:`gnnkit.ops._jit.run_rows`), and within a chunk
the kernel walks the rows of each head in turn. For a row it zeroes the output, then walks the
row's CSR entries in order, adding their products with a loop over the channels that LLVM
vectorises (64 channels per iteration on AVX-512; ``fastmath`` stays off, so no FMA
contraction and no reordering beyond the one written below). Each sum runs in a fixed order
in one thread, whatever the thread count: the result is bit-identical run to run and across
thread counts. The output row stays in L1 while the sender rows stream through. Two kernels,
chosen by the size of the gathered rows (:func:`gnnkit.ops._jit.prefetch_distance`):

- **Rows larger than the cache** (at ogbn-arxiv's size): a random sender row is rarely in
  cache, so the kernel is bound by the latency of those loads rather than by bandwidth. It
  asks for every cache line of the sender row about 8 KiB of rows ahead (``llvm.prefetch``),
  keeping many loads in flight, and adds one entry at a time, in CSR order, as torch's CSR
  ``addmm`` does (the same bits in every measurement). That prefetch is what beats MKL's
  kernel (about 7x at 128 channels for the bare kernels on one thread; without it the same
  loop was 1.2-1.6x). It asks for the lines into L2 (:func:`gnnkit.ops._jit.prefetch_l2`),
  which keeps more of them in flight than requests into L1: at ogbn-arxiv's size, 1 thread,
  the kernel took 20-23 against 38-39 ms at 64 channels, 55-61 against 64-66 ms at 128 and
  96 against 142-148 ms at 256 (the same bits).
- **Rows that stay in cache** (Cora, ogbl-ddi): no prefetch (the requests only cost), and
  four entries per pass, adding ``(v0 x0 + v1 x1) + (v2 x2 + v3 x3)`` to the output row, so
  the row is loaded and stored once per four products instead of four times (each store
  waits on the previous pass's). On a 2,708-node graph with 13,264 entries this took
  0.59-0.89 the time of one entry per pass (16 to 128 channels; 0.71 on ogbl-ddi's 2.1
  million entries at 64 channels, 0.90 at 256), and at 64 channels and up it beats MKL's
  kernel at every size measured. The sums differ from MKL's in the last bits.

Where the choice between this module and MKL is made: ``gnnkit.ops.backend.spmm_kernel``
(measurements in the module docstring of :mod:`gnnkit.ops.backend` and in
``benchmarks/results/roofline.md``). The backward pass of :func:`gnnkit.ops.spmm` is the
same kernel on the transposed structure (:meth:`gnnkit.ops.CSRGraph.kernel_indices`).

This module imports numba (through :func:`gnnkit.ops._jit.jit_kernel`); callers import it only
when the kernel is first needed. Missing values travel as an empty array with a flag, so the
kernel compiles once per float dtype and index dtype.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from gnnkit.ops._jit import (
    NO_PREFETCH,
    as_numpy,
    jit_kernel,
    prefetch_distance,
    prefetch_l2,
    run_rows,
)
from gnnkit.ops._memory import advise_huge_pages

__all__ = ["spmm"]

_CACHE_LINE_FLOATS = 16  # channels per 64-byte cache line in float32 (two lines in float64)


_UNROLL = 4  # CSR entries added per pass over the output row (cache-resident rows)


@jit_kernel()
def _spmm_rows(lo, hi, rowptr, col, values, weighted, x, out, distance):  # pragma: no cover
    heads, channels, nnz = out.shape[0], out.shape[2], col.shape[0]
    for h in range(heads):
        x_h = x[h]
        for i in range(lo, hi):
            row_out = out[h, i]
            for c in range(channels):
                row_out[c] = 0.0
            for e in range(rowptr[i], rowptr[i + 1]):
                if e + distance < nnz:  # the sender row `distance` entries ahead, every line
                    ahead = col[e + distance]
                    for c in range(0, channels, _CACHE_LINE_FLOATS):
                        prefetch_l2(x_h, ahead, c)
                row_in = x_h[col[e]]
                if weighted:
                    v = values[h, e]
                    for c in range(channels):
                        row_out[c] += v * row_in[c]
                else:
                    for c in range(channels):
                        row_out[c] += row_in[c]


@jit_kernel()
def _spmm_rows_unrolled(lo, hi, rowptr, col, values, weighted, x, out):  # pragma: no cover
    """:func:`_spmm_rows` for sender rows that stay in cache: no prefetch, and four entries
    added to the output row per pass, ``((v0 x0 + v1 x1) + (v2 x2 + v3 x3))``, so the row is
    read and written once for four products rather than four times (module docstring)."""
    one = x.dtype.type(1)
    for h in range(out.shape[0]):
        for i in range(lo, hi):
            x_h, row_out, e, end = x[h], out[h, i], rowptr[i], rowptr[i + 1]
            row_out[:] = 0.0
            while e + _UNROLL <= end:
                v0 = values[h, e] if weighted else one
                v1 = values[h, e + 1] if weighted else one
                v2 = values[h, e + 2] if weighted else one
                v3 = values[h, e + 3] if weighted else one
                x0, x1, x2, x3 = x_h[col[e]], x_h[col[e + 1]], x_h[col[e + 2]], x_h[col[e + 3]]
                for c in range(row_out.shape[0]):
                    row_out[c] += (v0 * x0[c] + v1 * x1[c]) + (v2 * x2[c] + v3 * x3[c])
                e += _UNROLL
            while e < end:
                v = values[h, e] if weighted else one
                row_in = x_h[col[e]]
                for c in range(row_out.shape[0]):
                    row_out[c] += v * row_in[c]
                e += 1


def spmm(rowptr: Tensor, col: Tensor, values: Tensor | None, x: Tensor, out: Tensor) -> None:
    """``out[h, i] = sum over row i's entries e of values[h, e] * x[h, col[e]]``, in place.

    Args:
        rowptr (Tensor): (|V_out| + 1,) row pointer, int32 or int64 (same dtype as ``col``).
        col (Tensor): (|E|,) sender of each CSR entry.
        values (Tensor, optional): (H, |E|) contiguous edge values, ``None`` for all ones.
        x (Tensor): (H, |V_in|, C) contiguous features, float32 or float64.
        out (Tensor): (H, |V_out|, C) contiguous output of ``x``'s dtype; every element is
            written.
    """
    args = kernel_arguments(rowptr, col, values, x, out)
    advise_huge_pages(out)
    ptr, features = args[0], args[4]
    # Prefetched, one entry a pass, only when the gathered rows outgrow the cache (module
    # docstring); cache-resident rows take the kernel adding four entries a pass.
    distance = prefetch_distance(features.shape[2] * features.itemsize, features.nbytes)
    if distance == NO_PREFETCH:
        run_rows(_spmm_rows_unrolled, ptr, *args)
    else:
        run_rows(_spmm_rows, ptr, *args, distance)


def kernel_arguments(
    rowptr: Tensor, col: Tensor, values: Tensor | None, x: Tensor, out: Tensor
) -> list:
    """The row kernels' arguments after ``lo, hi``: ``[rowptr, col, values, weighted, x,
    out]`` as numpy views (missing values as an empty array and ``weighted=False``, so one
    compiled kernel serves both)."""
    if not out.is_contiguous():
        raise ValueError("spmm: `out` must be contiguous (the kernel writes through a view)")
    features = as_numpy(x)
    if values is None:
        weights, weighted = np.empty((1, 0), features.dtype), False
    else:
        weights, weighted = as_numpy(values), True
    return [as_numpy(rowptr), as_numpy(col), weights, weighted, features, as_numpy(out)]
