r"""A compiled transposed copy of a matrix, in blocks of 8 x 8: ``src.t().contiguous()``.

Where it serves: a layer on sparse features multiplies them by its weight's transpose,
:math:`X W^\top`, and the SpMM kernels read :math:`W^\top` row by row, so a weight stored
row-major (``torch.nn.Linear``'s and PyG's layout) is copied into :math:`W^\top`'s layout on
every forward pass, and its gradient, which comes out as :math:`X^\top G`, is copied back
into the weight's layout (:func:`gnnkit.nn.column_major_` explains the copies and how a
model avoids them). torch's copy of a transposed view walks the output in order and reads
the source with a stride of a whole row; within a training epoch, where the weight is no
longer in cache, it took 340 us for Cora's 64 x 1433 weight of GAT's first layer (1 thread,
under the profiler).

Here each 8 x 8 block of the source goes through :func:`gnnkit.ops._jit._transpose8`: eight
vector loads of its rows, shuffles, eight vector stores (written as 64 scalar moves, which
LLVM's SLP vectoriser leaves scalar, the copy took 1.9-3x as long in cache: Cora's weights,
``benchmarks/results/performance_log.md``). A source of at
most as many rows as columns (a weight ``W``) is read eight rows at a time, front to back:
eight sequential streams that the hardware prefetchers follow. A source of more rows than
columns (the gradient of ``W^T``) runs the loop over blocks of columns outside, so that the
output's eight rows are written front to back instead: reading that source's rows in order
wrote the output in 32-byte pieces scattered over all its rows, and ran slower than torch's
copy from memory (401 against 331 us for 1433 x 64; 240 us with the columns outside). The
measurements of both against torch's copy, in cache and from memory:
``benchmarks/results/weight_copies.md``.

The kernels are written out for the loop order and the dtype, compiled on first use (cached
on disk, :mod:`gnnkit.ops._kernel_cache`) and checked on a small case against numpy, bit for bit
(a copy: any difference is a miscompilation). It works on blocks of source rows, so
:func:`gnnkit.ops._jit.run_rows` spreads it over threads; each block writes its own columns
of the output. ``GNNKIT_NARROW_SPMM=0`` (the switch of gnnkit's other written-out kernels)
leaves the copy to torch.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gnnkit.ops._jit import (
    NUMPY_DTYPES,
    _numba,
    _transpose8,
    generated_kernel,
    jit_available,
    kernel_globals,
    require_same_bits,
    run_rows,
)
from gnnkit.utils.env import switched_off

__all__ = ["BLOCK", "MIN_ELEMENTS", "MIN_PARALLEL_ELEMENTS", "serves", "transposed"]

#: Rows and columns of a block (:func:`gnnkit.ops._jit._transpose8`'s): 8 float32 fill one
#: 256-bit vector.
BLOCK = 8
#: Smaller matrices are left to torch, whose call costs less than a kernel's.
MIN_ELEMENTS = 1024
#: Smaller matrices are copied by the calling thread alone: a copy of 2**20 float32 entries
#: takes about a millisecond, the smallest job worth handing out to a thread pool.
MIN_PARALLEL_ELEMENTS = 1 << 20


def _source(columns_outer: bool) -> str:
    """The source of ``kernel(lo, hi, src, dst, rows, cols)``: for the blocks ``lo:hi`` of
    :data:`BLOCK` source rows of the (rows, cols) matrix at address ``src``, their entries
    into the (cols, rows) matrix at ``dst``. Whole blocks go through ``transpose8``; the
    columns past the last whole block, and a last block of fewer rows, are plain loops.
    ``columns_outer``: the loop over blocks of columns outside the loop over blocks of rows,
    so that the output's rows are written front to back (:data:`BLOCK` streams), for a source
    of more rows than columns; otherwise the source's rows are read front to back."""
    lines = [
        "def kernel(lo, hi, src, dst, rows, cols):",
        "    src = carray(FLOAT(src), rows * cols)",
        "    dst = carray(FLOAT(dst), rows * cols)",
        "    R, C = np.uint64(rows), np.uint64(cols)",
        "    whole = C // BLOCK * BLOCK",
    ]
    loops = [
        "for b in range(np.uint64(lo), np.uint64(hi)):",
        "for j0 in range(ZERO_U, whole, BLOCK):",
    ]
    for depth, loop in enumerate(loops[::-1] if columns_outer else loops):
        lines.append("    " * (depth + 1) + loop)
    lines += [
        "            i0 = b * BLOCK",
        "            if i0 + BLOCK <= R:",
        "                transpose8(src, i0 * C + j0, C, dst, j0 * R + i0, R)",
    ]
    lines += [  # what the whole blocks left: the last columns, a last block of fewer rows
        "    for b in range(np.uint64(lo), np.uint64(hi)):",
        "        i0 = b * BLOCK",
        "        last = i0 + BLOCK if i0 + BLOCK <= R else R",
        "        first = whole if last - i0 == BLOCK else ZERO_U",
        "        for i in range(i0, last):",
        "            for j in range(first, C):",
        "                dst[j * R + i] = src[i * C + j]",
    ]
    return "\n".join(lines) + "\n"


@functools.cache
def _dispatcher(dtype: str, columns_outer: bool) -> Any:
    """The numba dispatcher of the kernel for numpy ``dtype`` values, not yet compiled."""
    names = kernel_globals(
        dtype, BLOCK=np.uint64(BLOCK), ZERO_U=np.uint64(0), transpose8=_transpose8()
    )
    order = "columns outer" if columns_outer else "rows outer"
    source = _source(columns_outer)
    return generated_kernel(source, f"<gnnkit transposed copy, {order}, {dtype}>", names)


_COMPILED: dict[tuple[str, bool], Any] = {}


def _compiled(dtype: str, columns_outer: bool) -> Any:
    """The kernel for numpy ``dtype``, compiled on first use, then checked
    (:func:`_self_check`)."""
    key = (dtype, columns_outer)
    kernel = _COMPILED.get(key)
    if kernel is None:
        kernel = _dispatcher(*key)
        kernel.compile((_numba().types.int64,) * 6)
        _self_check(kernel, dtype)
        _COMPILED[key] = kernel
    return kernel


def _self_check(kernel: Any, dtype: str) -> None:
    """Copy a 19 x 21 matrix (two whole blocks each way, and the remainders of both) and
    compare with numpy's transpose, bit for bit."""
    src = np.random.default_rng(0).standard_normal((19, 21)).astype(dtype)
    dst = np.full((21, 19), np.nan, dtype=dtype)
    kernel(0, -(-19 // BLOCK), src.ctypes.data, dst.ctypes.data, 19, 21)
    require_same_bits([dst], [np.ascontiguousarray(src.T)], f"transposed copy ({dtype})")


def serves(src: Tensor) -> bool:
    """Whether :func:`transposed` copies ``src``: a contiguous CPU matrix of float32 or
    float64 with at least :data:`MIN_ELEMENTS` entries, compiled kernels available and not
    switched off."""
    return (
        src.dim() == 2
        and src.device.type == "cpu"
        and src.dtype in (torch.float32, torch.float64)
        and src.numel() >= MIN_ELEMENTS
        and src.is_contiguous()
        and jit_available()
        and not switched_off("GNNKIT_NARROW_SPMM")
    )


def transposed(src: Tensor) -> Tensor:
    """``src.t().contiguous()`` for a matrix :func:`serves` accepts (the caller checks), by
    the compiled kernel: a new (cols, rows) tensor. Not differentiable: for kernels' inputs
    and backward passes."""
    rows, cols = src.shape
    dst = src.new_empty(cols, rows)
    kernel = _compiled(NUMPY_DTYPES[src.dtype], rows > cols)
    blocks = -(-rows // BLOCK)
    if src.numel() < MIN_PARALLEL_ELEMENTS:  # less work than handing chunks to threads
        kernel(0, blocks, src.data_ptr(), dst.data_ptr(), rows, cols)
    else:
        run_rows(kernel, blocks, src.data_ptr(), dst.data_ptr(), rows, cols)
    return dst
