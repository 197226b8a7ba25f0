r"""Dropout on CPU in one compiled pass: counter-based draws, a large tensor's mask drawn again.

Dropout (Srivastava et al., JMLR 2014) keeps each entry with probability :math:`1 - p` and
scales it by :math:`1 / (1 - p)`. Drawn with torch on CPU, ``x * (torch.rand_like(x) >= p) /
(1 - p)`` costs five passes over the tensor and a mask kept for the backward pass, and
``rand_like`` itself (a Mersenne twister, one call per entry) is most of the time. Here one
numba pass (:mod:`gnnkit.ops._dropout_cpu`) draws every entry's uniform from a counter-based
generator (SplitMix64: Steele, Lea & Flood, OOPSLA 2014), compares, scales and writes. The
backward pass of a large tensor's dropout draws the same mask again from the seed, so that
nothing of the tensor's size is kept; a small one's keeps the mask (:data:`MAX_KEPT_MASK`), and
ELU-dropout marks the dropped entries in the ELU output its backward keeps anyway:

.. math::
    y_i = x_i \, \frac{\mathbb{1}[u_i \ge p]}{1 - p}, \qquad
    u_i = 2^{-24} \lfloor \mathrm{SplitMix64}(s, i) / 2^{40} \rfloor, \qquad
    \frac{\partial L}{\partial x_i} = \frac{\partial L}{\partial y_i} \,
    \frac{\mathbb{1}[u_i \ge p]}{1 - p}

The seed :math:`s` is one 63-bit draw from torch's default generator per call, so
``torch.manual_seed`` reproduces the masks, and the mask does not depend on the number of
threads. The uniforms have 24 bits, as ``torch.rand``'s float32 ones do; :math:`p` is rounded
to a multiple of :math:`2^{-24}` (exact for 0.5, 0.6 off by less than :math:`6 \cdot 10^{-8}`).

:func:`counter_dropout_available` says when this runs (a float32 or float64 CPU tensor with
numba available); elsewhere callers use torch's draws, which have the same distribution but
another random stream.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gnnkit.ops._autograd import differentiable_once
from gnnkit.ops._jit import as_numpy, jit_available, run_rows

__all__ = [
    "MAX_KEPT_MASK",
    "counter_dropout",
    "counter_dropout_available",
    "counter_elu_dropout",
    "counter_keep_mask",
    "relu_dropout_grad",
]

_BITS = 24  # bits of each uniform draw
#: Dropout (without ReLU) of at most this many entries keeps its mask for the backward pass,
#: one byte an entry (as torch's dropout keeps one): reading it is about ten times faster
#: than drawing it again (Cora's 2708 x 64 hidden layer, 1 thread: 55 against 232 us, the
#: kernels alone: ``benchmarks/results/weight_copies.md``). Larger tensors
#: draw the mask again, so that dropout keeps nothing of their size.
MAX_KEPT_MASK = 1 << 22
_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _kernels() -> ModuleType:
    """:mod:`gnnkit.ops._dropout_cpu`, imported (with numba) when a kernel first runs."""
    from gnnkit.ops import _dropout_cpu

    return _dropout_cpu


def counter_dropout_available(x: Tensor) -> bool:
    """Whether :func:`counter_dropout` runs for ``x``: a float32 or float64 CPU tensor, numba
    available (``GNNKIT_JIT`` not 0)."""
    return x.device.type == "cpu" and x.dtype in _DTYPES and jit_available()


def _seed() -> np.uint64:
    """One draw from torch's default generator: the seed of one call's counter stream."""
    return np.uint64(int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64)))


def _threshold(p: float) -> np.uint64:
    return np.uint64(round(p * 2**_BITS))


def _entries(kernel: Any, *args: Any) -> None:
    """Run a flat-entry kernel of :mod:`gnnkit.ops._dropout_cpu` over all entries: its tensor
    arguments (contiguous, one size) go in as flat numpy views, the others as they are."""
    arrays = [as_numpy(a.view(-1)) if isinstance(a, Tensor) else a for a in args]
    run_rows(kernel, args[0].numel(), *arrays)


def _mask(x: Tensor, seed: np.uint64, p: float, relu: bool) -> Tensor:
    """``x`` (contiguous, any shape) times its scaled keep mask for ``seed``."""
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    _entries(_kernels().mask_entries, x, out, seed, _threshold(p), _scale(p, x.dtype), relu)
    return out


def _scale(p: float, dtype: torch.dtype) -> Any:
    """Dropout's scale of a kept entry, :math:`1 / (1 - p)`, as a numpy scalar of ``dtype``
    (0 for :math:`p = 1`, where nothing is kept)."""
    return _DTYPES[dtype](1.0 / (1.0 - p) if p < 1.0 else 0.0)


class _CounterDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, p: float, relu: bool) -> Tensor:
        seed = _seed()
        x = x.contiguous()
        ctx.seed, ctx.p, ctx.relu = seed, p, relu
        ctx.kept = not relu and x.numel() <= MAX_KEPT_MASK
        if ctx.kept:  # the mask kept for the backward pass
            out, keep = torch.empty_like(x), torch.empty_like(x, dtype=torch.bool)
            _entries(_kernels().mask_keep_entries, x, out, keep, seed, _threshold(p),
                     _scale(p, x.dtype))  # fmt: skip
            ctx.save_for_backward(keep)
            return out
        out = _mask(x, seed, p, relu)
        if relu:  # out > 0 exactly where x > 0 and the entry was kept
            ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        grad = grad.contiguous()
        if ctx.relu:
            (out,) = ctx.saved_tensors
            return relu_dropout_grad(out, grad, ctx.p), None, None
        # (grad mode on: a backward pass with create_graph, the product stays differentiable)
        if ctx.kept:
            (keep,) = ctx.saved_tensors
            scale = _scale(ctx.p, grad.dtype)
            if torch.is_grad_enabled():
                return grad * keep.to(grad.dtype).mul_(float(scale)), None, None
            result = torch.empty_like(grad)
            _entries(_kernels().kept_entries, keep, grad, result, scale)
            return result, None, None
        if torch.is_grad_enabled():
            return grad * _mask(torch.ones_like(grad), ctx.seed, ctx.p, False), None, None
        return _mask(grad, ctx.seed, ctx.p, False), None, None


def relu_dropout_grad(out: Tensor, grad: Tensor, p: float) -> Tensor:
    """The gradient through ``out = dropout(relu(x), p)``: ``grad / (1 - p)`` where ``out > 0``
    (a kept, positive unit), else 0. One compiled pass for float32 and float64 CPU tensors
    with numba (10-30x faster than ``torch.where`` on Cora's hidden layer), else torch, and
    torch with grad mode on (a backward pass with ``create_graph=True``: the result stays
    differentiable, with the same bits)."""
    scale = 1.0 / (1.0 - p)
    if torch.is_grad_enabled() or not (counter_dropout_available(grad) and out.is_contiguous()):
        # (grad mode on inside a backward pass with create_graph: torch's differentiable ops)
        return torch.where(out > 0, grad, 0.0).mul_(scale)
    grad = grad.contiguous()
    result = torch.empty_like(grad)
    _entries(_kernels().relu_grad_entries, out, grad, result, _DTYPES[grad.dtype](scale))
    return result


def counter_dropout(x: Tensor, p: float, *, relu: bool = False) -> Tensor:
    r"""``dropout(x, p)`` (``dropout(relu(x), p)`` with ``relu``) in one compiled pass.

    Only for tensors where :func:`counter_dropout_available` holds. Differentiable in ``x``:
    with ``relu`` the backward pass reads the output, which is positive exactly where the
    gradient passes; without, it reads the mask, kept (one byte an entry) for ``x`` of up to
    :data:`MAX_KEPT_MASK` entries, and draws it again from the call's seed for larger ``x``,
    so that nothing of their size is kept. Values are ``x * mask`` to the bit: NaN stays NaN.

    Args:
        x (Tensor): float32 or float64 on CPU, any shape.
        p (float): the probability of dropping an entry, in [0, 1].
        relu (bool, optional): apply ReLU before dropout. (default: ``False``)
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return _CounterDropout.apply(x, float(p), relu)
    return _mask(x.contiguous(), _seed(), float(p), relu)


def counter_keep_mask(shape: tuple[int, ...], p: float) -> Tensor:
    """A boolean CPU keep mask from the counter stream: entry ``i`` (flat) is kept with
    probability :math:`1 - p`. Only where :func:`gnnkit.ops._jit.jit_available` holds."""
    out = torch.empty(shape, dtype=torch.bool)
    _entries(_kernels().keep_entries, out, _seed(), _threshold(p))
    return out


def _elu_mask(x: Tensor, seed: np.uint64, p: float, drop: bool) -> tuple[Tensor, Tensor]:
    """ELU of contiguous ``x`` and that times its scaled keep mask (the ELU without ``drop``)."""
    elu, out = torch.empty_like(x), torch.empty_like(x)
    kernels = _kernels()
    kernel = kernels.elu_entries_f32 if x.dtype == torch.float32 else kernels.elu_entries
    scale = _DTYPES[x.dtype](1.0 / (1.0 - p) if drop else 1.0)
    _entries(kernel, x, elu, out, seed, _threshold(p), scale, drop)
    return elu, out


class _CounterELUDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, p: float, drop: bool) -> Tensor:
        seed = _seed() if drop else np.uint64(0)
        elu, out = _elu_mask(x.contiguous(), seed, p, drop)
        ctx.p, ctx.drop = p, drop
        ctx.save_for_backward(elu)
        return out

    @staticmethod
    @differentiable_once("gnnkit's ELU-dropout (elu_dropout)")
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (elu,) = ctx.saved_tensors
        grad = grad.contiguous()
        result = torch.empty_like(grad)
        scale = _DTYPES[grad.dtype](1.0 / (1.0 - ctx.p) if ctx.drop else 1.0)
        _entries(_kernels().elu_grad_entries, elu, grad, result, scale)
        return result, None, None


def counter_elu_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    r"""``dropout(elu(x), p)`` (ELU with :math:`\alpha = 1`; just ELU unless ``training``)
    in one compiled pass, with :func:`counter_dropout`'s draws.

    Only for tensors where :func:`counter_dropout_available` holds. ELU's negative branch is
    computed in float32 by a vectorised ``expm1`` (Cephes' reduction, within 2 ulp of
    ``torch.expm1``; float64 calls the C library). The backward pass keeps ELU's output, as
    ``F.elu(inplace=True)`` does, with the dropped entries marked in it
    (:data:`gnnkit.ops._dropout_cpu.DROPPED`), so it reads the mask rather than drawing it
    again: nothing more is kept than ELU's backward keeps.
    """
    drop = training and p > 0.0
    if torch.is_grad_enabled() and x.requires_grad:
        return _CounterELUDropout.apply(x, float(p), drop)
    return _elu_mask(x.contiguous(), _seed() if drop else np.uint64(0), float(p), drop)[1]
