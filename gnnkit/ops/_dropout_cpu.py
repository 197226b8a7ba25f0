"""numba kernels of counter-based dropout on CPU (see :mod:`gnnkit.ops.dropout`).

Entry ``i`` of a call with seed ``s`` draws the ``i``-th output of SplitMix64 started at ``s``
(Steele, Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014; the mix
is Stafford's "variant 13", as in ``java.util.SplittableRandom``): a weyl step
``s + (i + 1) * GAMMA`` and two multiply-xorshift rounds, in uint64 arithmetic that wraps
modulo 2**64. Its top 24 bits are a uniform integer in [0, 2**24); the entry is kept when it
is at or above the threshold ``round(p * 2**24)``. Each draw depends on ``(s, i)`` alone, so

- the mask is the same for any split of the entries over threads, and
- the backward pass can draw it again from the seed instead of keeping it (what a large
  tensor's dropout does; a small one's keeps a byte mask, :func:`mask_keep_entries`, and
  ELU-dropout marks the dropped entries in the ELU output it keeps, :data:`DROPPED`).

Every kernel is a serial function over a range of flat entries, spread over threads by
:func:`gnnkit.ops._jit.run_rows`.
"""

from __future__ import annotations

import math

import numpy as np

from gnnkit.ops import _expf as E
from gnnkit.ops._jit import jit_kernel

#: What the ELU kernels keep for an entry that dropout dropped in place of ELU's output,
#: which is never below -1: the backward pass reads the mask from it rather than drawing it
#: again (the draw is most of a backward pass that draws it again:
#: ``benchmarks/results/weight_copies.md``).
DROPPED = -2.0

__all__ = [
    "DROPPED",
    "elu_entries",
    "elu_entries_f32",
    "elu_grad_entries",
    "keep_entries",
    "kept_entries",
    "mask_entries",
    "mask_keep_entries",
    "relu_grad_entries",
]


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
def mask_keep_entries(lo, hi, x, out, keep, seed, threshold, scale):  # pragma: no cover
    """:func:`mask_entries` without ReLU that also writes each entry's flag to ``keep``
    (bool): whether it was kept."""
    zero = x.dtype.type(0)
    src, dst, kept = x[lo:hi], out[lo:hi], keep[lo:hi]
    for k in range(src.shape[0]):
        on = _draw(seed, lo + k) >= threshold
        kept[k] = on
        dst[k] = src[k] * (scale if on else zero)


@jit_kernel()
def kept_entries(lo, hi, keep, grad, result, scale):  # pragma: no cover - compiled
    """``result[i] = grad[i] * m``, ``m = scale`` where ``keep[i]``, else 0: the bits of
    :func:`mask_entries` for the same mask."""
    zero = grad.dtype.type(0)
    kept, src, dst = keep[lo:hi], grad[lo:hi], result[lo:hi]
    for k in range(src.shape[0]):
        dst[k] = src[k] * (scale if kept[k] else zero)


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


@jit_kernel(fastmath={"contract"})
def elu_entries_f32(lo, hi, x, elu, out, seed, threshold, scale, drop):  # pragma: no cover
    """``elu[i] = ELU(x[i])`` (:math:`\\alpha = 1`) and ``out[i] = elu[i] * m`` as in
    :func:`mask_entries` (``m = 1`` without ``drop``), for flat float32 arrays.

    :math:`\\mathrm{expm1}(x) = 2^n (1 + q) - 1 = 2^n q + (2^n - 1)` with Cephes' reduction
    :math:`x = n \\ln 2 + r` and :math:`q = e^r - 1 = r + r^2 p(r)` (:mod:`gnnkit.ops._expf`):
    no cancellation near 0, where :math:`n = 0` and the result is :math:`q` itself (within
    2 ulp of ``torch.expm1``). The first loop leaves :math:`q` in ``elu`` and the bits of
    :math:`2^n` in ``out``; both loops vectorise. A NaN stays NaN."""
    f = np.float32
    src, y, dst = x[lo:hi], elu[lo:hi], out[lo:hi]
    bits = dst.view(np.int32)
    for k in range(src.shape[0]):
        v = src[k]
        y[k], bits[k] = E.reduced(v if not v > f(0.0) else f(0.0))  # x itself where positive
    for k in range(src.shape[0]):
        v = src[k]
        two_n = dst[k]
        e = v if v > f(0.0) else two_n * y[k] + (two_n - f(1.0))
        e = e if v == v else v  # NaN in, NaN out
        kept = not drop or _draw(seed, lo + k) >= threshold
        y[k] = e if kept or e != e else f(DROPPED)
        dst[k] = e * (scale if kept else f(0.0))


@jit_kernel()
def elu_entries(lo, hi, x, elu, out, seed, threshold, scale, drop):  # pragma: no cover
    """:func:`elu_entries_f32` through the C library's ``expm1`` (float64)."""
    zero = x.dtype.type(0)
    for k in range(lo, hi):
        v = x[k]
        e = v if v > zero else math.expm1(v)
        kept = not drop or _draw(seed, k) >= threshold
        elu[k] = e if kept or e != e else x.dtype.type(DROPPED)
        out[k] = e * (scale if kept else zero)


@jit_kernel()
def elu_grad_entries(lo, hi, elu, grad, result, scale):  # pragma: no cover - compiled
    """The gradient through ``out = dropout(ELU(x))`` from ``elu``, ELU's output as the
    forward kernels keep it (:data:`DROPPED` where the entry was dropped): the dropout
    backward (``grad * m``, NaN stays NaN) times ELU's derivative, 1 where ``elu > 0`` and
    ``elu + 1`` (:math:`e^x`) elsewhere.

    A dropped entry's gradient is ``grad * 0`` whatever ELU's output was: that derivative
    lies in [0, 1] (ELU's output is at least -1), and ``(g * 0) * d`` has the bits of
    ``g * 0`` for every such ``d`` (a signed zero keeps its sign, NaN stays NaN). A NaN
    output is kept as NaN even where dropped, so that its gradient stays NaN (which NaN:
    there, that of the output rather than of ``g * 0``)."""
    zero, one = grad.dtype.type(0), grad.dtype.type(1)
    dropped = grad.dtype.type(DROPPED)
    y, src, dst = elu[lo:hi], grad[lo:hi], result[lo:hi]
    for k in range(src.shape[0]):
        v = y[k]
        if v == dropped:
            dst[k] = src[k] * zero
        else:
            dst[k] = src[k] * scale * (one if v > zero else v + one)
