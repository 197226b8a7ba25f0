"""numba kernels of :mod:`gnnkit.ops.linear` on CPU: a dense linear map with few outputs, and
the column sums that are a bias's gradient.

The linear map: one thread owns each output row (:func:`gnnkit.ops._jit.run_rows`); a row's
outputs are dot products of the input row with each weight row, reassociated (``fastmath``
``reassoc``) so LLVM keeps partial sums in vector lanes. The pattern is fixed by the compiled
code: the result is the same every run and for every thread count.

The column sums: each block of :data:`BLOCK_ROWS` rows is summed in row order (each column its
own running sum, so the loop vectorises across columns without reassociation), then the
blocks in block order (:func:`add_blocks`): the same bits for every thread count, with the
rounding of a two-level sum.

This module imports numba (through :func:`gnnkit.ops._jit.jit_kernel`); callers import it only
when the kernel is first needed.
"""

from __future__ import annotations

from torch import Tensor

from gnnkit.ops._jit import as_numpy, jit_kernel, run_rows

__all__ = ["BLOCK_ROWS", "add_blocks", "column_sums", "narrow_linear"]

BLOCK_ROWS = 512  # rows per block of a column sum


@jit_kernel(fastmath={"reassoc", "contract"})
def _rows(lo, hi, x, weight, out):  # pragma: no cover - compiled
    """``out[i, j] = <x[i], weight[j]>`` for rows ``lo:hi``."""
    zero = x.dtype.type(0)
    for i in range(lo, hi):
        row = x[i]
        for j in range(weight.shape[0]):
            column = weight[j]
            total = zero
            for k in range(row.shape[0]):
                total += row[k] * column[k]
            out[i, j] = total


def narrow_linear(x: Tensor, weight: Tensor) -> Tensor:
    """``x @ weight.T`` for contiguous (N, K) ``x`` and (M, K) ``weight`` of one float dtype."""
    out = x.new_empty(x.size(0), weight.size(0))
    run_rows(_rows, x.size(0), as_numpy(x), as_numpy(weight), as_numpy(out))
    return out


@jit_kernel()
def _column_blocks(lo, hi, values, partial):  # pragma: no cover - compiled
    """``partial[b]`` = the sum of rows ``b * BLOCK_ROWS`` onwards (at most that many), in
    row order, for blocks ``lo:hi``."""
    rows, width = values.shape
    zero = values.dtype.type(0)
    for block in range(lo, hi):
        total = partial[block]
        for k in range(width):
            total[k] = zero
        for i in range(block * BLOCK_ROWS, min((block + 1) * BLOCK_ROWS, rows)):
            row = values[i]
            for k in range(width):
                total[k] += row[k]


@jit_kernel()
def add_blocks(partial, total):  # pragma: no cover - compiled
    """``total = partial[0] + partial[1] + ...`` in block order, from zero."""
    for k in range(total.shape[0]):
        value = total.dtype.type(0)
        for block in range(partial.shape[0]):
            value += partial[block, k]
        total[k] = value


def column_sums(values: Tensor) -> Tensor:
    """The sums of a contiguous 2-D float tensor's columns, (F,), in blocks of rows."""
    blocks = -(-values.size(0) // BLOCK_ROWS)
    partial = as_numpy(values.new_empty(blocks, values.size(1)))
    run_rows(_column_blocks, blocks, as_numpy(values), partial)
    total = values.new_empty(values.size(1))
    add_blocks(partial, as_numpy(total))
    return total
