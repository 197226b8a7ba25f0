"""numba kernels of the classification metrics on CPU (see :mod:`gnnkit.ops.metrics`).

The exponentials between the two passes run as one numpy ``exp`` (vectorised; the C
library's scalar ``exp`` took 75 us for Cora's 1,640 x 7 evaluated logits, most of the
evaluation).

This module imports numba (through :func:`gnnkit.ops._jit.jit_kernel`); callers import it only
when a kernel first runs.
"""

from __future__ import annotations

import math

import numpy as np

from gnnkit.ops._jit import jit_kernel

__all__ = ["shifted_rows", "split_sums"]


@jit_kernel()
def shifted_rows(logits, index, target, shifted, top, hit):  # pragma: no cover - compiled
    """For each ``k``, row ``z = logits[index[k]]`` in float64: ``top[k]`` its maximum,
    ``shifted[k] = z - top[k]``, and ``hit[k]`` whether its first largest entry is class
    ``target[k]``. A NaN in the row makes the maximum NaN, as ``torch.max`` does."""
    classes = logits.shape[1]
    for k in range(index.shape[0]):
        row = logits[index[k]]
        m, arg = np.float64(row[0]), 0
        for c in range(1, classes):
            v = np.float64(row[c])
            if v > m or (v != v and m == m):  # the first largest; NaN wins
                m, arg = v, c
        for c in range(classes):
            shifted[k, c] = np.float64(row[c]) - m
        top[k] = m
        hit[k] = arg == target[k]


@jit_kernel()
def split_sums(exps, shifted, top, target, hit, split, sums):  # pragma: no cover - compiled
    """``sums[s, 0]`` += each row's cross-entropy ``log(sum(exps[k])) + top[k] - z[target]``
    (``z[target] = shifted[k, target] + top[k]``), ``sums[s, 1]`` += its hit, for
    ``s = split[k]``, in ``k`` order."""
    for k in range(exps.shape[0]):
        total = 0.0
        for c in range(exps.shape[1]):
            total += exps[k, c]
        y = target[k]
        loss = (math.log(total) + top[k]) - (shifted[k, y] + top[k])
        s = split[k]
        sums[s, 0] += loss
        if hit[k]:
            sums[s, 1] += 1.0
