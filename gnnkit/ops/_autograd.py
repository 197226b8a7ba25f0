"""The backward passes of gnnkit's compiled kernels: differentiable once, and saying so.

A compiled kernel (numba, Triton, a fused sequence of in-place torch operations) records no
autograd graph of its own backward pass. With ``create_graph=True`` its gradient would come
back without a graph, and whatever a second derivative needs from it, the terms through the
saved inputs (weights, features), would be left out without a word. PyTorch's
``once_differentiable`` raises only when the incoming gradient itself requires one, which a
loss linear in the output (``out.sum()``) does not. :func:`differentiable_once` refuses any
backward pass that builds a graph, with a message that says where and what to use instead.
Where the math has a torch form, :func:`recomputed_gradients` serves such a backward pass
instead: it recomputes the forward with torch's operators and differentiates that, with a
graph (the memory the kernels save, spent only then).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from gnnkit.errors import SecondDerivativeError

__all__ = ["differentiable_once", "recomputed_gradients"]


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


def recomputed_gradients(
    forward: Callable[..., Tensor | tuple[Tensor, ...]],
    inputs: Sequence[Tensor | None],
    needs: Sequence[bool],
    grads: Sequence[Tensor],
) -> tuple[Tensor | None, ...]:
    """The gradients a Function's backward pass returns under ``create_graph=True``:
    ``forward(*inputs)`` recomputed with torch's differentiable operators, and its gradients
    with respect to the inputs ``needs`` flags (``ctx.needs_input_grad``), with a graph of
    their own. ``inputs`` must be the Function's own inputs as saved (not copies made in its
    forward pass): the second derivative reaches back through them. ``grads`` are the incoming
    gradients, one per output of ``forward``; unflagged inputs get ``None``."""
    wanted = [t for t, need in zip(inputs, needs, strict=True) if need and t is not None]
    found: list[Tensor] = []
    if wanted:
        with torch.enable_grad():
            outputs = forward(*inputs)
            outputs = outputs if isinstance(outputs, tuple) else (outputs,)
            found = list(
                torch.autograd.grad(
                    outputs, wanted, list(grads), create_graph=True, materialize_grads=True
                )
            )
    taken = iter(found)
    return tuple(
        next(taken) if need and t is not None else None
        for t, need in zip(inputs, needs, strict=True)
    )
