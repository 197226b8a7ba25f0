r"""A dense linear map :math:`Y = X W^\top` that is fast for few outputs on CPU.

MKL's single-precision GEMM on the AMD EPYC this project is measured on runs products with
few output columns far below its peak: ``F.linear`` of Cora's 2708 x 16 hidden features to 7
classes takes 36 us, where the same products as one dot product per output in a compiled
loop take 18 us (measured, 1 thread; 2708 x 64 to 7: 68 against 26 us; 169,343 x 128 to 1:
7.9 against 2.3 ms; with 16 or more outputs MKL is as fast or faster). :func:`linear` takes
that loop (:mod:`gnnkit.ops._linear_cpu`) for at most :data:`NARROW_OUTPUTS` outputs on CPU,
and ``F.linear`` elsewhere. Its backward pass is two matmuls, as ``F.linear``'s:

.. math::
    \frac{\partial L}{\partial X} = \frac{\partial L}{\partial Y} W, \qquad
    \frac{\partial L}{\partial W} = \Big(\frac{\partial L}{\partial Y}\Big)^\top X

A large output (at least 8 MiB, 2-D, CPU) is the same matmul written into memory allocated
with transparent huge pages (:func:`gnnkit.ops._memory.empty_advised`): ``F.linear``'s fresh
output pays one page fault per 4 KiB on first touch, which at ogbn-arxiv's size (169,343 x
128 to 256 outputs, 173 MB) took a third of the product (166 against 111 ms, 1 thread). The
products are the same calls as ``F.linear``'s and its autograd's (``mm``), so the results are
bit-identical to it; the input gradient, when as large, is written the same way.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gnnkit.ops._jit import jit_available
from gnnkit.ops._memory import MIN_ADVISED_BYTES, empty_advised

__all__ = ["NARROW_OUTPUTS", "linear"]

NARROW_OUTPUTS = 8  # at most this many outputs take the compiled kernel (measured above)
_MIN_ENTRIES = 4096  # smaller inputs: the kernel call costs more than it saves
_DTYPES = (torch.float32, torch.float64)


def _kernels() -> ModuleType:
    from gnnkit.ops import _linear_cpu  # imports numba: only when the kernel first runs

    return _linear_cpu


class _NarrowLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)  # the inputs: with create_graph, reached again
        return _kernels().narrow_linear(x.contiguous(), weight.contiguous())

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        # torch's matmuls: with create_graph they are differentiated again
        x, weight = ctx.saved_tensors
        grad_x = grad.mm(weight) if ctx.needs_input_grad[0] else None
        grad_weight = grad.t().mm(x) if ctx.needs_input_grad[1] else None
        return grad_x, grad_weight


def _product(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b``; into huge-page memory when the product is large (and needs no graph)."""
    size = a.size(0) * b.size(1) * a.element_size()
    if size < MIN_ADVISED_BYTES or torch.is_grad_enabled():
        return a.mm(b)
    return torch.mm(a, b, out=empty_advised(a, a.size(0), b.size(1)))


class _LargeLinear(torch.autograd.Function):
    """``x @ weight.T`` into huge-page memory; the backward as ``F.linear``'s (``mm``), and
    differentiable again (with ``create_graph=True`` the products run on the graph)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return _product(x, weight.t())  # large (the caller checked), and no graph in forward

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        grad_x = _product(grad, weight) if ctx.needs_input_grad[0] else None
        grad_weight = grad.t().mm(x) if ctx.needs_input_grad[1] else None
        return grad_x, grad_weight


def _dense_cpu(x: Tensor, weight: Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dim() == 2
        and weight.dim() == 2
        and x.dtype in _DTYPES
        and weight.dtype == x.dtype
        and weight.device == x.device
        and x.layout == torch.strided
        and weight.layout == torch.strided
    )


def _narrow(x: Tensor, weight: Tensor) -> bool:
    return (
        weight.size(0) <= NARROW_OUTPUTS
        and x.numel() >= _MIN_ENTRIES
        and _dense_cpu(x, weight)
        and jit_available()
    )


def _large(x: Tensor, weight: Tensor) -> bool:
    return _dense_cpu(x, weight) and x.size(0) * weight.size(0) * x.element_size() >= (
        MIN_ADVISED_BYTES
    )


def linear(x: Tensor, weight: Tensor) -> Tensor:
    """``F.linear(x, weight)`` (no bias): a compiled kernel for 2-D float CPU input with at
    most :data:`NARROW_OUTPUTS` outputs (equal to ``F.linear`` to float rounding, the same every
    run and for every thread count), ``F.linear``'s product into huge-page memory for a large
    2-D CPU output (bit-identical to it), ``F.linear`` otherwise (and under autocast, which
    chooses ``F.linear``'s compute dtype).

    Args:
        x (Tensor): (N, K) dense features (any shape ``F.linear`` takes, off the kernel).
        weight (Tensor): (M, K), as ``torch.nn.Linear.weight``.
    """
    if torch.compiler.is_compiling() or x.dim() != 2 or torch.is_autocast_enabled(x.device.type):
        return F.linear(x, weight)  # autocast picks F.linear's compute dtype
    if _narrow(x, weight):
        if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
            return _NarrowLinear.apply(x, weight)
        return _kernels().narrow_linear(x.contiguous(), weight.contiguous())  # no Function
    if _large(x, weight):
        return _LargeLinear.apply(x, weight)
    return F.linear(x, weight)
