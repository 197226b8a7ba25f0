"""The backward passes of gnnkit's compiled kernels: differentiable once, and saying so.

A compiled kernel (numba, Triton, a fused sequence of in-place torch operations) records no
autograd graph of its own backward pass. With ``create_graph=True`` its gradient would come
back without a graph, and whatever a second derivative needs from it, the terms through the
saved inputs (weights, features), would be left out without a word. PyTorch's
``once_differentiable`` raises only when the incoming gradient itself requires one, which a
loss linear in the output (``out.sum()``) does not. :func:`differentiable_once` refuses any
backward pass that builds a graph, with a message that says where and what to use instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from gnnkit.errors import SecondDerivativeError

__all__ = ["differentiable_once"]


def differentiable_once(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate the ``backward`` of an autograd Function computed by compiled kernels: a
    backward pass with ``create_graph=True`` (grad mode on inside it) raises
    :class:`~gnnkit.errors.SecondDerivativeError` naming ``what``; any other runs ``backward``
    as it is (grad mode is off there)."""

    def decorate(backward: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(backward)
        def checked(ctx: Any, *grads: Any) -> Any:
            if torch.is_grad_enabled():
                raise SecondDerivativeError(
                    f"{what} is differentiable once: its compiled backward pass cannot build "
                    "the graph that create_graph=True asks for (a second derivative); use "
                    "PyG's layers and torch's dropout there (docs/pyg-compatibility.md)"
                )
            return backward(ctx, *grads)

        return checked

    return decorate
