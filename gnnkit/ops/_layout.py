"""Memory layouts around the SpMM kernels: row-major inputs, column-major weights' gradients.

A weight stored row-major (``torch.nn.Linear``'s layout) enters a product on sparse features as
its transpose, a column-major view. The kernels read their input row by row, so such a view is
copied row-major first (:func:`_row_major`); the gradient for the view comes out row-major and
goes back to the weight in the weight's own layout (:func:`transposed_gradient`), which autograd
keeps as ``.grad`` without a copy. Both copies run in the blocked kernel of
:mod:`gnnkit.ops._transpose_cpu` where it serves, else in torch.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

__all__ = ["transposed_gradient"]


def _transpose_kernels() -> ModuleType:
    """:mod:`gnnkit.ops._transpose_cpu`, imported (with numba) when its kernel first runs."""
    from gnnkit.ops import _transpose_cpu

    return _transpose_cpu


def _column_major(x: Tensor) -> bool:
    """Whether ``x``, (N, C) or one head's (1, N, C), is stored column-major: the ``.t()``
    of a row-major matrix, such as a ``torch.nn.Linear`` weight's transpose multiplied by
    sparse features. (Strides only: no view, no operator call.)"""
    if x.dim() == 3 and x.size(0) != 1:
        return False
    rows, cols = x.shape[-2:]
    return x.stride(-2) == 1 and x.stride(-1) == rows and cols > 1 and not x.is_contiguous()


def _of_leaf(x: Tensor) -> bool:
    """Whether ``x`` is a view of a leaf tensor (a parameter's ``.t()``), whose gradient
    autograd keeps as ``.grad`` without a copy only when it comes in the leaf's layout."""
    base = x._base
    return base is not None and base.is_leaf


def _row_major(x: Tensor) -> Tensor:
    """``x.contiguous()`` for (H, N, C) ``x``; one head stored column-major copied by the
    blocked kernel of :mod:`gnnkit.ops._transpose_cpu` (faster than torch's copy of a
    transposed view, whose reads stride across whole rows: measured there)."""
    if x.is_contiguous():
        return x
    if _column_major(x):
        matrix = x[0].t()  # row-major
        if _transpose_kernels().serves(matrix):
            return _transpose_kernels().transposed(matrix).unsqueeze(0)
    return x.contiguous()


def transposed_gradient(grad: Tensor) -> Tensor:
    """``grad.t()`` stored row-major: the gradient of a row-major weight ``W`` whose
    transpose was multiplied (``X W^T``), from the product's gradient for ``W^T``, in ``W``'s
    own layout. autograd keeps a gradient laid out like its parameter as the parameter's
    ``.grad``; any other it copies with torch's copy of a transposed view, which the blocked
    kernel of :mod:`gnnkit.ops._transpose_cpu` does faster (measured there). With grad mode
    on (a backward pass with ``create_graph``) the differentiable view ``grad.t()``."""
    if not torch.is_grad_enabled() and _transpose_kernels().serves(grad):
        return _transpose_kernels().transposed(grad)
    return grad.t()
