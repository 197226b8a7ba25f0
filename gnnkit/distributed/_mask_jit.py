"""The numba kernel behind :func:`gnnkit.distributed.keep_mask`: one pass over the (|V|, C) mask.

The torch path of :func:`~gnnkit.distributed.keep_mask` mixes every entry with about a dozen
int64 tensor operations, each a full pass over |V| x C temporaries; this kernel runs the same
32-bit mix ("lowbias32", C. Wellons) on each entry in registers and writes one byte, in uint64
arithmetic (products wrap modulo 2**64, so their low 32 bits are exact, as in the torch path).
The masks are bit-identical (``tests/test_distributed_dropout.py``).

Rows are independent, so the kernel is a serial function over a range of rows spread over
``torch.get_num_threads()`` threads by :func:`gnnkit.ops._jit.run_rows` (not numba's
``parallel=True``, whose OpenMP layer aborts or hangs a child forked from a process that used
it: ranks are often forked processes, ``torch.multiprocessing`` and the tests).

This module imports numba through :func:`gnnkit.ops._jit.jit_kernel`; its caller imports it only
when a mask is first drawn with numba available.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gnnkit.ops._jit import jit_kernel, run_rows

__all__ = ["keep_mask_cpu"]


@jit_kernel()
def _keep_rows(lo, hi, row, column, threshold, out):  # pragma: no cover - compiled by numba
    m32 = np.uint64(0xFFFFFFFF)
    c1, c2 = np.uint64(0x7FEB352D), np.uint64(0x846CA68B)
    s15, s16 = np.uint64(15), np.uint64(16)
    for i in range(lo, hi):
        r = row[i]
        for j in range(column.shape[0]):
            x = r ^ column[j]
            x ^= x >> s16
            x = (x * c1) & m32
            x ^= x >> s15
            x = (x * c2) & m32
            x ^= x >> s16
            out[i, j] = x >= threshold


def keep_mask_cpu(row: Tensor, column: Tensor, threshold: int) -> Tensor:
    """``mix(row[:, None] ^ column[None, :]) >= threshold`` as a (|V|, C) bool tensor.

    Args:
        row (Tensor): (|V|,) int64 row hashes, each below 2**32.
        column (Tensor): (C,) int64 column hashes, each below 2**32.
        threshold (int): keep an entry whose hash is at or above it.
    """
    out = np.empty((row.numel(), column.numel()), dtype=np.bool_)
    if out.size:
        rows = row.contiguous().numpy().astype(np.uint64)
        columns = column.contiguous().numpy().astype(np.uint64)
        run_rows(_keep_rows, out.shape[0], rows, columns, np.uint64(threshold), out)
    return torch.from_numpy(out)
