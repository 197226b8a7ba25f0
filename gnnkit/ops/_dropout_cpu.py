"""numba kernels of counter-based dropout on CPU (see :mod:`gnnkit.ops.dropout`).

Entry ``i`` of a call with seed ``s`` draws the ``i``-th output of SplitMix64 started at ``s``
(Steele, Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014; the mix
is Stafford's "variant 13", as in ``java.util.SplittableRandom``): a weyl step
``s + (i + 1) * GAMMA`` and two multiply-xorshift rounds, in uint64 arithmetic that wraps
modulo 2**64. Its top 24 bits are a uniform integer in [0, 2**24); the entry is kept when it
is at or above the threshold ``round(p * 2**24)``. Each draw depends on ``(s, i)`` alone, so

- the mask is the same for any split of the entries over threads, and
- the backward pass draws it again from the seed instead of keeping it.

Every kernel is a serial function over a range of flat entries, spread over threads by
:func:`gnnkit.ops._jit.run_rows`.
"""

from __future__ import annotations

import numpy as np

from gnnkit.ops._jit import jit_kernel

__all__ = ["keep_entries", "mask_entries", "relu_grad_entries"]


@jit_kernel()
def _draw(seed, i):  # pragma: no cover - compiled
    """The top 24 bits of SplitMix64's ``i``-th output from ``seed``."""
    z = seed + (np.uint64(i) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return z >> np.uint64(40)


@jit_kernel()
def mask_entries(lo, hi, x, out, seed, threshold, scale, relu):  # pragma: no cover - compiled
    """``out[i] = x[i] * m`` (``relu(x[i]) * m`` with ``relu``), ``m = scale`` where entry ``i``
    is kept, else 0, for flat arrays ``x`` and ``out``: torch's ``x * mask`` to the bit (a NaN
    stays NaN, a dropped negative entry is -0.0)."""
    zero = x.dtype.type(0)
    src, dst = x[lo:hi], out[lo:hi]  # 0-based loops over slices: LLVM vectorises them
    for k in range(src.shape[0]):
        v = src[k]
        if relu and v < zero:  # as torch.relu: NaN passes through
            v = zero
        dst[k] = v * (scale if _draw(seed, lo + k) >= threshold else zero)


@jit_kernel()
def relu_grad_entries(lo, hi, out, grad, result, scale):  # pragma: no cover - compiled
    """``result[i] = grad[i] * scale`` where ``out[i] > 0`` (a kept, positive unit), else 0."""
    zero = grad.dtype.type(0)
    kept, src, dst = out[lo:hi], grad[lo:hi], result[lo:hi]
    for k in range(src.shape[0]):
        dst[k] = src[k] * scale if kept[k] > zero else zero


@jit_kernel()
def keep_entries(lo, hi, out, seed, threshold):  # pragma: no cover - compiled
    """``out[i]`` (bool): whether entry ``i`` is kept."""
    dst = out[lo:hi]
    for k in range(dst.shape[0]):
        dst[k] = _draw(seed, lo + k) >= threshold
