"""numba kernel of a dense linear map with few outputs on CPU (see :mod:`gnnkit.ops.linear`).

One thread owns each output row (:func:`gnnkit.ops._jit.run_rows`); a row's outputs are dot
products of the input row with each weight row, reassociated (``fastmath`` ``reassoc``) so
LLVM keeps partial sums in vector lanes. The pattern is fixed by the compiled code: the result
is the same every run and for every thread count.

This module imports numba (through :func:`gnnkit.ops._jit.jit_kernel`); callers import it only
when the kernel is first needed.
"""

from __future__ import annotations

from torch import Tensor

from gnnkit.ops._jit import as_numpy, jit_kernel, run_rows

__all__ = ["narrow_linear"]


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
