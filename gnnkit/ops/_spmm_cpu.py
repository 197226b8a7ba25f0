r"""numba kernel of the CPU sparse-dense matmul (SpMM), with software prefetching.

.. math::
    Y_{h,i,:} = \sum_{e = (j \to i)} v_{h,e} \, X_{h,j,:}
    \qquad (\text{or } \textstyle\sum_e X_{h,j,:} \text{ without values})

One thread owns each output row: chunks of rows of about equal edge counts are spread over
``torch.get_num_threads()`` threads (:func:`gnnkit.ops._jit.run_rows`), and within a chunk
the kernel walks the rows of each head in turn. For a row it zeroes the output, then walks the
row's CSR entries in order, adding ``v * x[j]`` with a loop over the channels that LLVM
vectorises (64 channels per iteration on AVX-512; ``fastmath`` stays off, so no FMA
contraction and no reordering). Each sum therefore runs in CSR order in one thread, whatever
the thread count: the result is bit-identical run to run and across thread counts, and equal
to torch's CSR ``addmm`` to float rounding (it adds in the same order, and gave the same bits
in every measurement). The output row stays in L1 while the sender rows stream through.

A random sender row is rarely in cache when the features outgrow the last-level cache (at
ogbn-arxiv's size), so the kernel is bound by the latency of those loads rather than by
bandwidth: it asks for every cache line of the sender row about 8 KiB of rows ahead
(``llvm.prefetch``, :func:`gnnkit.ops._jit.prefetch_distance`), keeping many loads in
flight. That prefetch is what beats MKL's kernel (about 4x at 128 channels for the bare
kernels on one thread; without it the same loop was 1.2-1.6x). Where the choice is made:
``gnnkit.ops.backend.spmm_kernel`` (measurements in the module docstring of
:mod:`gnnkit.ops.backend` and in ``benchmarks/results/roofline.md``). The backward pass of
:func:`gnnkit.ops.spmm` is the same kernel on the transposed structure
(:meth:`gnnkit.ops.CSRGraph.kernel_indices`).

This module imports numba (through :func:`gnnkit.ops._jit.jit_kernel`); callers import it only
when the kernel is first needed. Missing values travel as an empty array with a flag, so the
kernel compiles once per float dtype and index dtype.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from gnnkit.ops._jit import as_numpy, jit_kernel, prefetch, prefetch_distance, run_rows
from gnnkit.ops._memory import advise_huge_pages

__all__ = ["spmm"]

_CACHE_LINE_FLOATS = 16  # channels per 64-byte cache line in float32 (two lines in float64)


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
                        prefetch(x_h, ahead, c)
                row_in = x_h[col[e]]
                if weighted:
                    v = values[h, e]
                    for c in range(channels):
                        row_out[c] += v * row_in[c]
                else:
                    for c in range(channels):
                        row_out[c] += row_in[c]


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
    if not out.is_contiguous():
        raise ValueError("spmm: `out` must be contiguous (the kernel writes through a view)")
    advise_huge_pages(out)
    features = as_numpy(x)
    # Always prefetched: a pure gather gains even where the features fit in cache (Cora, 128
    # channels: 0.115 against 0.148 ms without), unlike the fused GAT kernel.
    distance = prefetch_distance(features.shape[2] * features.itemsize)
    ptr = as_numpy(rowptr)
    if values is None:
        weights, weighted = np.empty((1, 0), features.dtype), False
    else:
        weights, weighted = as_numpy(values), True
    run_rows(_spmm_rows, ptr, ptr, as_numpy(col), weights, weighted, features,
             as_numpy(out), distance)  # fmt: skip
