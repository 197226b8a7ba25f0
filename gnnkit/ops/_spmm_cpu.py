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

import ctypes
import functools
import sys
from typing import Any

import numpy as np
from torch import Tensor

from gnnkit.ops._jit import as_numpy, jit_kernel, prefetch, prefetch_distance, run_rows

__all__ = ["advise_huge_pages", "spmm"]

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


_HUGE_PAGE = 2 << 20  # bytes in an x86-64 / arm64 transparent huge page
_MADV_HUGEPAGE = 14  # <sys/mman.h> on Linux
_MIN_ADVISED_BYTES = 8 << 20


@functools.cache
def _madvise() -> Any:
    """libc's ``madvise``, or ``None`` off Linux or where it cannot be loaded."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def advise_huge_pages(tensor: Tensor) -> None:
    """Ask Linux for transparent huge pages under a large, freshly allocated output.

    A new output of ogbn-arxiv's size (87 MB at 128 channels) is fresh memory, and its first
    touch costs one page fault per 4 KiB page: measured as long as the SpMM itself at 128
    channels, and cut about 5x with 2 MiB pages. ``MADV_HUGEPAGE`` on the 2 MiB-aligned interior
    of the buffer is only a hint (the kernel's ``transparent_hugepage`` setting ``madvise`` or
    ``always`` honours it, ``never`` ignores it); contents and size are unchanged, and failures
    are ignored. torch's own ``THP_MEM_ALLOC_ENABLE=1`` does this for every allocation, but only
    when set before torch starts.
    """
    nbytes = tensor.numel() * tensor.element_size()
    madvise = _madvise() if nbytes >= _MIN_ADVISED_BYTES else None
    if madvise is None:
        return
    start = tensor.data_ptr()
    first = -(-start // _HUGE_PAGE) * _HUGE_PAGE
    last = (start + nbytes) // _HUGE_PAGE * _HUGE_PAGE
    if last > first:
        madvise(first, last - first, _MADV_HUGEPAGE)
