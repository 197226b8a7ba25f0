"""Cephes' float32 ``expf`` (its constants and range reduction), shared by the CPU kernels
that vectorise it, and the fused GAT forward's pass of exponentials over a chunk of rows'
scores (:func:`exp_rows`, :mod:`gnnkit.ops._gat_cpu`).

exp(x) for float32 x <= 0 is computed as :math:`2^n p(r)` with :math:`x = n \\ln 2 + r`,
:math:`|r| \\le \\ln(2) / 2`: ln 2 in two parts, a degree-6 polynomial, about 1 ulp (S. Moshier,
Cephes Math Library 2.2, 1992). Written out in a kernel without a library call, LLVM
vectorises the loop over entries; :math:`2^n` is built from its exponent bits in an int32
array, ``(n + 127) << 23``.

This module imports numba (through :func:`gnnkit.ops._jit.jit_kernel`): only kernel modules
import it.
"""

import math

import numpy as np

from gnnkit.ops._jit import jit_kernel

LOG2E, LN2_HI, LN2_LO = 1.44269504088896341, 0.693359375, -2.12194440e-4
P0, P1, P2 = 1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3
P3, P4, P5 = 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1
EXP_FLOOR = -87.0  # exp(-87) ~ 1.6e-38 is still a normal float32; below it, that value
ROUND = 12582912.0  # 1.5 * 2^23: adding and subtracting it rounds a float32 to an integer


@jit_kernel(fastmath={"contract"})
def reduced(x):  # pragma: no cover - compiled
    """``(q, bits)`` for float32 ``x <= 0``: :math:`e^x = 2^n (1 + q)`, ``q`` the polynomial
    part :math:`r + r^2 p(r)` and ``bits`` the int32 pattern of :math:`2^n`. Small enough for
    LLVM to inline into a caller's loop, which it then vectorises."""
    f = np.float32
    x = x if not x < f(EXP_FLOOR) else f(EXP_FLOOR)
    n = (x * f(LOG2E) + f(ROUND)) - f(ROUND)  # round to nearest, no call
    r = x - n * f(LN2_HI) - n * f(LN2_LO)
    p = f(P0) * r + f(P1)
    p = p * r + f(P2)
    p = p * r + f(P3)
    p = p * r + f(P4)
    p = p * r + f(P5)
    return p * r * r + r, (np.int32(n) + np.int32(127)) * np.int32(1 << 23)


@jit_kernel(fastmath={"contract"})
def exp_entries_f32(lo, hi, values, powers):  # pragma: no cover - compiled
    """``values[k] = exp(values[k])`` for float32 ``values[k] <= 0``; ``powers`` is an int32
    scratch array of at least ``hi - lo`` entries (2^n is built from its exponent bits). A
    NaN stays NaN. The loops run over 0-based slices with no library call (``reduced`` is
    inlined), which LLVM vectorises (16 lanes on AVX-512: 0.2 ns an entry against 1.6-2.2 for
    the C library's ``expf``)."""
    v, bits = values[lo:hi], powers[: hi - lo]
    for k in range(v.shape[0]):
        q, bits[k] = reduced(v[k])
        v[k] = q + np.float32(1.0)
    two_n = bits.view(np.float32)
    for k in range(v.shape[0]):
        v[k] *= two_n[k]


@jit_kernel()
def exp_entries(lo, hi, values):  # pragma: no cover - compiled
    """``values[k] = exp(values[k])`` through the C library (float64: full precision)."""
    for k in range(lo, hi):
        values[k] = math.exp(values[k])


EXP_BLOCK = 4096  # exponentials per vectorised block: the int32 scratch stays in L1 (16 KiB)


@jit_kernel()
def exp_rows(lo, hi, rowptr, alpha, fast_exp):  # pragma: no cover - compiled
    """``alpha = exp(alpha)`` for the entries of rows ``lo:hi``, contiguous in ``alpha``, in
    blocks of :data:`EXP_BLOCK` entries that share one small scratch array (``fast_exp``:
    float32's vectorised ``expf``)."""
    heads = alpha.shape[1]
    flat = alpha.reshape(-1)
    first, last = rowptr[lo] * heads, rowptr[hi] * heads
    if fast_exp:
        powers = np.empty(min(EXP_BLOCK, last - first), dtype=np.int32)
        for block in range(first, last, EXP_BLOCK):
            exp_entries_f32(block, min(block + EXP_BLOCK, last), flat, powers)
    else:
        exp_entries(first, last, flat)
