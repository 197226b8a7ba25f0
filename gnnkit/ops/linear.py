r"""A dense linear map :math:`Y = X W^\top (+ b)` that is fast for few outputs and for large
outputs on CPU, and a bias's gradient (:func:`bias_gradient`, :func:`add_bias_`).

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
products are the same calls as ``F.linear``'s and its autograd's (``mm``, ``addmm`` with a
bias), so the output and the gradients of the input and the weight are bit-identical to it;
the input gradient, when as large, is written the same way. A bias's gradient is summed by
:func:`bias_gradient`, equal to autograd's to float rounding.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.ops._jit import jit_available
from gnnkit.ops._memory import MIN_ADVISED_BYTES, empty_advised

__all__ = ["NARROW_OUTPUTS", "add_bias_", "bias_gradient", "linear"]

NARROW_OUTPUTS = 8  # at most this many outputs take the compiled kernel (measured above)
_MIN_ENTRIES = 4096  # smaller inputs: the kernel call costs more than it saves
_MIN_SUM_BYTES = 1 << 20  # smaller gradients: torch's sum (the kernel call costs more)
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


def _product(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """``a @ b`` (``+ bias``, as ``F.linear`` adds it: ``addmm``); into huge-page memory when
    the product is large (and needs no graph)."""
    size = a.size(0) * b.size(1) * a.element_size()
    if size < MIN_ADVISED_BYTES or torch.is_grad_enabled():
        return a.mm(b) if bias is None else torch.addmm(bias, a, b)
    out = empty_advised(a, a.size(0), b.size(1))
    return torch.mm(a, b, out=out) if bias is None else torch.addmm(bias, a, b, out=out)


class _LargeLinear(torch.autograd.Function):
    """``x @ weight.T`` (``+ bias``) into huge-page memory; the backward as ``F.linear``'s
    (``mm``), the bias's gradient by :func:`bias_gradient`, and differentiable again (with
    ``create_graph=True`` the products run on the graph)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        # large (the caller checked), and no graph in forward
        return _product(x, weight.t(), bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad
        grad_x = _product(grad, weight) if need_x else None
        grad_weight = grad.t().mm(x) if need_weight else None
        grad_bias = bias_gradient(grad, (grad.size(1),)) if need_bias else None
        return grad_x, grad_weight, grad_bias


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


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)``: a compiled kernel for 2-D float CPU input with at most
    :data:`NARROW_OUTPUTS` outputs and no bias (equal to ``F.linear`` to float rounding, the
    same every run and for every thread count), ``F.linear``'s product into huge-page memory
    for a large 2-D CPU output (the output and the gradients of ``x`` and ``weight``
    bit-identical to ``F.linear``'s; the bias's gradient by :func:`bias_gradient`, equal to
    rounding), ``F.linear`` otherwise (and under autocast, which chooses ``F.linear``'s
    compute dtype).

    Args:
        x (Tensor): (N, K) dense features (any shape ``F.linear`` takes, off the kernel).
        weight (Tensor): (M, K), as ``torch.nn.Linear.weight``.
        bias (Tensor, optional): (M,), as ``torch.nn.Linear.bias``. (default: ``None``)
    """
    if torch.compiler.is_compiling() or x.dim() != 2 or torch.is_autocast_enabled(x.device.type):
        return F.linear(x, weight, bias)  # autocast picks F.linear's compute dtype
    if bias is None and _narrow(x, weight):
        if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
            return _NarrowLinear.apply(x, weight)
        return _kernels().narrow_linear(x.contiguous(), weight.contiguous())  # no Function
    if _large(x, weight) and (bias is None or _matching_bias(bias, weight)):
        return _LargeLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


def _matching_bias(bias: Tensor, weight: Tensor) -> bool:
    """A (M,) bias of the weight's dtype and device, dense."""
    return (
        bias.shape == weight.shape[:1]
        and bias.dtype == weight.dtype
        and bias.device == weight.device
        and bias.layout == torch.strided
    )


def _sums_compiled(values: Tensor) -> bool:
    """Whether the compiled kernel sums ``values`` (or a gradient like them): contiguous
    float CPU values of at least 1 MiB, outside ``torch.compile``."""
    return (
        values.numel() * values.element_size() >= _MIN_SUM_BYTES  # first: small ones end here
        and values.device.type == "cpu"
        and values.dtype in _DTYPES
        and values.is_contiguous()
        and not torch.compiler.is_compiling()
        and jit_available()
    )


def bias_gradient(grad: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """The gradient of a bias of ``shape`` broadcast over the leading dimensions of an output
    whose gradient is ``grad``: ``grad`` summed over those dimensions.

    torch's ``sum`` over the leading dimension of a tall CPU tensor reads it at a third of the
    memory bandwidth: at ogbn-arxiv's size (169,343 x 256, float32, 1 thread) 23 ms, where a
    compiled loop that keeps one running sum per column takes 8 ms
    (:func:`gnnkit.ops._linear_cpu.column_sums`, in blocks of rows, so the result is the same
    for every thread count). That loop serves contiguous float CPU gradients of at least
    1 MiB; torch's ``sum`` the rest (read in place), and every gradient while gradients are
    recorded (``create_graph``).
    """
    small = grad.numel() * grad.element_size() < _MIN_SUM_BYTES
    if small and len(shape) == 1 and grad.dim() and grad.size(-1) == shape[0]:
        return grad.reshape(-1, shape[0]).sum(0)  # a small (C,) bias: the quickest call
    shape = tuple(shape)
    width = math.prod(shape)
    if len(shape) > grad.dim() or grad.shape[grad.dim() - len(shape) :] != shape:
        raise InputError(
            f"bias_gradient: a gradient of shape {tuple(grad.shape)} does not end in the "
            f"bias's shape {shape}; pass the bias's own shape"
        )
    if small:
        return grad.reshape(-1, width).sum(0).view(shape)
    if not torch.is_grad_enabled() and _sums_compiled(grad):  # (recorded: differentiable)
        return _kernels().column_sums(grad.view(-1, width)).view(shape)
    return grad.sum(tuple(range(grad.dim() - len(shape)))).view(shape)  # read in place


class _AddBias(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, out: Tensor, bias: Tensor) -> Tensor:
        ctx.mark_dirty(out)
        ctx.shape = bias.shape
        return out.add_(bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor | None]:
        return grad, bias_gradient(grad, ctx.shape) if ctx.needs_input_grad[1] else None


def add_bias_(out: Tensor, bias: Tensor) -> Tensor:
    """``out.add_(bias)`` for a ``bias`` shaped as ``out``'s trailing dimensions, its
    gradient summed by :func:`bias_gradient` where that takes the compiled kernel (a large
    CPU output; elsewhere autograd's own ``add_``, one operator call fewer on small graphs).
    ``out`` must be free to overwrite: nothing saved for a backward pass may hold it."""
    expected = tuple(out.shape[max(0, out.dim() - bias.dim()) :])
    if tuple(bias.shape) != expected:
        raise InputError(
            f"add_bias_: a bias of shape {tuple(bias.shape)} does not match the trailing "
            f"dimensions of an output of shape {tuple(out.shape)}; reshape it to {expected}"
        )
    recorded = torch.is_grad_enabled() and (out.requires_grad or bias.requires_grad)
    if recorded and bias.requires_grad and _sums_compiled(out):  # as bias_gradient will ask
        return _AddBias.apply(out, bias)
    return out.add_(bias)
