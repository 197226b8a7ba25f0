"""The first layer of a Hadamard-product link predictor as one fused autograd step.

Link predictors in the style of OGB's ``LinkPredictor`` score a node pair :math:`(u, v)` with
an MLP on :math:`h_u \\odot h_v`. On ogbl-ddi a training step scores 131,072 pairs of 256
channels, so every (B, C) tensor of that layer is 134 MB: :func:`hadamard_mlp` gathers,
multiplies, projects, applies ReLU and dropout (and the last layer of a two-layer MLP) with
one hand-written backward, and can keep its large tensors in a :class:`Workspace` between
steps.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.ops._autograd import differentiable_once
from gnnkit.ops.random import uniform_draws
from gnnkit.utils.checks import describe, is_integer_tensor

__all__ = ["Workspace", "check_pair_shape", "hadamard_mlp"]


class _Lease:
    """Held by the autograd graph of one training step while it owns a :class:`Workspace`."""

    __slots__ = ("__weakref__",)


class Workspace:
    """Large buffers one predictor reuses from one training step to the next.

    On CPU every fresh tensor of the predictor's size (131,072 x 256 floats, 134 MB, on
    ogbl-ddi) comes straight from the kernel (glibc ``mmap``s blocks this large and unmaps
    them when freed), and filling its pages costs more than the operation writing it:
    ``index_select`` into a new tensor takes 64 ms, into an existing one 22 ms. A step's graph
    takes the workspace with :meth:`acquire` in the forward pass and gives it back at the end
    of its backward pass, or when the graph is freed (a weak reference to its lease). While
    the workspace is taken, another forward pass allocates fresh tensors instead. Reusing a
    buffer bumps its version counter, so an old graph that still saved it (a second
    ``backward`` with ``retain_graph=True`` after a newer forward pass) raises autograd's
    "modified by an inplace operation" error rather than computing a wrong gradient.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}
        self._lease: weakref.ref[_Lease] | None = None

    def __reduce__(self):  # copies and pickles start empty (a weak reference cannot be kept)
        return (Workspace, ())

    def __deepcopy__(self, memo: dict) -> Workspace:
        return Workspace()

    def acquire(self) -> _Lease | None:
        """A lease on the buffers, or ``None`` while another graph holds them."""
        if self._lease is not None and self._lease() is not None:
            return None
        lease = _Lease()
        self._lease = weakref.ref(lease)
        return lease

    def release(self, lease: _Lease | None) -> None:
        if lease is not None and self._lease is not None and self._lease() is lease:
            self._lease = None

    def take(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """A (possibly reused) uninitialised tensor ``shape`` with ``like``'s dtype and device."""
        numel = math.prod(shape)
        buffer = self._buffers.get(name)
        if (
            buffer is None
            or buffer.numel() < numel
            or buffer.dtype != like.dtype
            or buffer.device != like.device
        ):
            buffer = like.new_empty(max(numel, 1))
            self._buffers[name] = buffer
        return buffer[:numel].view(shape)

    def clear(self) -> None:
        self._buffers.clear()

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self._buffers.values())


def _empty(work: Workspace | None, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
    if work is None:
        return like.new_empty(shape)
    return work.take(name, shape, like)


def _keep_mask(work: Workspace | None, shape: tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """Dropout's keep mask as 0/1 in ``like``'s dtype (:func:`gnnkit.ops.random.uniform_draws`).

    Multiplying by a float mask is 5x faster on CPU than by a bool one (which torch converts
    on the fly).
    """
    words = None
    if work is not None:
        int64 = torch.empty((), dtype=torch.int64, device=like.device)
        words = work.take("words", ((math.prod(shape) + 7) // 8,), int64)
    draws, threshold = uniform_draws(shape, p, like.device, words=words)
    return torch.ge(draws, threshold, out=_empty(work, "keep", shape, like))


class _HadamardMLPFunction(torch.autograd.Function):
    """The predictor's first layer, and its last one when there are two, with one backward.

    ``dropout(relu((h[src] * h[dst]) W^T + b))``, then ``hidden @ W_out^T + b_out`` when
    ``last_weight`` is given (otherwise the hidden activations are returned). Dropout's
    :math:`1 / (1 - p)` multiplies the (F, C) weights, never a (B, F) tensor, since
    :math:`s \\operatorname{ReLU}(z) = \\operatorname{ReLU}(s z)` for :math:`s > 0`. A hidden
    entry is non-zero exactly when it survived both the ReLU and dropout, so the backward
    masks the gradient with the activations themselves (one ``threshold_backward`` pass, no
    saved mask). The backward accumulates onto the |V| rows of ``h`` with ``index_add_`` (4x
    faster on CPU than the ``index_put_(accumulate=True)`` autograd runs for ``h[src]``).
    With a ``lease`` every (B, C) and (B, F) tensor lives in ``workspace`` (:class:`Workspace`).
    """

    @staticmethod
    def forward(ctx, h, src, dst, weight, bias, last_weight, last_bias, p, workspace, lease):
        work = workspace if lease is not None else None
        B, C, F_hidden = src.numel(), h.size(1), weight.size(0)
        h_src = torch.index_select(h, 0, src, out=_empty(work, "h_src", (B, C), h))
        h_dst = torch.index_select(h, 0, dst, out=_empty(work, "h_dst", (B, C), h))
        prod = torch.mul(h_src, h_dst, out=_empty(work, "prod", (B, C), h))
        scale = 1.0 / (1.0 - p)
        w = weight * scale if p > 0.0 else weight  # (F, C)
        hidden = _empty(work if last_weight is not None else None, "hidden", (B, F_hidden), h)
        if bias is not None:
            torch.addmm(bias * scale if p > 0.0 else bias, prod, w.t(), out=hidden)
        else:
            torch.mm(prod, w.t(), out=hidden)
        hidden.relu_()
        if p > 0.0:
            hidden.mul_(_keep_mask(work, (B, F_hidden), p, hidden))
        out = hidden
        if last_weight is not None:
            out = hidden @ last_weight.t()  # (B, out)
            if last_bias is not None:
                out += last_bias
        ctx.scale = scale if p > 0.0 else 1.0
        ctx.has_bias = bias is not None
        ctx.num_nodes = h.size(0)
        ctx.workspace, ctx.lease = workspace, lease
        ctx.save_for_backward(src, dst, w, h_src, h_dst, prod, hidden, last_weight)
        return out

    @staticmethod
    @differentiable_once("gnnkit's Hadamard MLP link predictor")
    def backward(ctx, grad_out):
        src, dst, w, h_src, h_dst, prod, hidden, last_weight = ctx.saved_tensors
        work = ctx.workspace if ctx.lease is not None else None
        B, F_hidden = hidden.shape
        grad_last_w = grad_last_b = None
        if last_weight is not None:
            if ctx.needs_input_grad[5]:
                grad_last_w = grad_out.t() @ hidden  # (out, F)
            if ctx.needs_input_grad[6]:
                grad_last_b = grad_out.sum(0)
            grad = _empty(work, "grad", (B, F_hidden), hidden)
            if last_weight.size(0) == 1:  # an outer product: 3x faster as a broadcast multiply
                torch.mul(grad_out, last_weight, out=grad)
            else:
                torch.mm(grad_out, last_weight, out=grad)
            target = grad
        else:
            grad = grad_out
            target = _empty(work, "grad", (B, F_hidden), hidden)
        # d loss / d(s z): zero where the ReLU or dropout zeroed the activation.
        grad = torch.ops.aten.threshold_backward.grad_input(grad, hidden, 0.0, grad_input=target)
        grad_h = grad_w = grad_b = None
        if ctx.needs_input_grad[3]:
            grad_w = grad.t() @ prod  # (F, C)
            if ctx.scale != 1.0:
                grad_w.mul_(ctx.scale)
        if ctx.has_bias and ctx.needs_input_grad[4]:
            grad_b = grad.sum(0)
            if ctx.scale != 1.0:
                grad_b.mul_(ctx.scale)
        if ctx.needs_input_grad[0]:
            grad_prod = torch.mm(grad, w, out=_empty(work, "grad_prod", h_src.shape, h_src))
            grad_h = grad_prod.new_zeros(ctx.num_nodes, grad_prod.size(1))
            spent = _empty(work, "grad", h_dst.shape, h_dst)  # "grad" is spent: reuse it
            grad_h.index_add_(0, src, torch.mul(grad_prod, h_dst, out=spent))
            grad_h.index_add_(0, dst, grad_prod.mul_(h_src))
        if ctx.workspace is not None:
            ctx.workspace.release(ctx.lease)
        return grad_h, None, None, grad_w, grad_b, grad_last_w, grad_last_b, None, None, None


def _check_inputs(h: Tensor, pairs: Tensor, weight: Tensor) -> None:
    """Shapes, dtypes and devices only (no pass over the data): torch's matmul error would
    name neither the argument nor the fix."""
    if not isinstance(h, Tensor) or h.dim() != 2 or h.size(1) != weight.size(1):
        shape = describe(h, dtype=False)
        raise InputError(
            f"hadamard_mlp: h must be (|V|, {weight.size(1)}) node representations, the width "
            f"the first layer's weight {tuple(weight.shape)} takes (HadamardMLP's "
            f"in_channels), got {shape}"
        )
    if h.dtype != weight.dtype or h.device != weight.device:
        raise InputError(
            f"hadamard_mlp: h is {h.dtype} on {h.device} but the weights are {weight.dtype} on "
            f"{weight.device}; convert h with h.to(weight) or the model with model.to(h)"
        )
    check_pair_shape(pairs, "hadamard_mlp: ")


def check_pair_shape(pairs: Any, prefix: str = "") -> None:
    """Refuse ``pairs`` that are not an integer (2, B) tensor of node pairs."""
    if not (is_integer_tensor(pairs) and pairs.dim() == 2 and pairs.size(0) == 2):
        raise InputError(
            f"{prefix}pairs must be an integer tensor of shape (2, B) (row 0 one endpoint, row "
            f"1 the other), got {describe(pairs)}; transpose an (B, 2) edge list with .t()"
        )


def hadamard_mlp(
    h: Tensor,
    pairs: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    last_weight: Tensor | None = None,
    last_bias: Tensor | None = None,
    *,
    p: float = 0.0,
    workspace: Workspace | None = None,
) -> Tensor:
    r"""``dropout(relu((h[u] * h[v]) W^T + b))`` for every pair, then the last layer if given.

    .. math::
        z_{uv} = \operatorname{dropout}_p\big(\operatorname{ReLU}(W (h_u \odot h_v) + b)
        \big), \qquad s_{uv} = W_L z_{uv} + b_L \ (\text{with } W_L)

    Dropout's :math:`1 / (1 - p)` multiplies the (F, C) weights, never a (B, F) tensor,
    since :math:`s \operatorname{ReLU}(z) = \operatorname{ReLU}(s z)` for :math:`s > 0`; a
    hidden entry is non-zero exactly when it survived both the ReLU and dropout, so the
    backward masks the gradient with the activations themselves (no saved mask). The
    gradient with respect to ``h`` accumulates with ``index_add_`` (4x faster on CPU than the
    ``index_put_(accumulate=True)`` autograd runs for ``h[src]``). Dropout masks come from
    :func:`gnnkit.ops.random.uniform_draws`.

    Args:
        h (Tensor): (|V|, C) node representations, of the weights' dtype and device.
        pairs (Tensor): (2, B) node pairs, row 0 one endpoint and row 1 the other.
        weight (Tensor): (F, C) the first layer's weight; ``bias`` (F,) or ``None``.
        last_weight (Tensor, optional): (out, F) the last layer's weight, fused into the same
            step; ``None`` returns the hidden activations. ``last_bias``: (out,) or ``None``.
        p (float, optional): dropout probability after the ReLU (``0`` in evaluation).
            (default: ``0.0``)
        workspace (Workspace, optional): reuse its buffers for the (B, C) and (B, F) tensors
            while no other step holds it. (default: fresh tensors)

    Shapes:
        - **output:** (B, out) with ``last_weight``, else (B, F)
    """
    _check_inputs(h, pairs, weight)
    lease = workspace.acquire() if workspace is not None else None
    return _HadamardMLPFunction.apply(
        h, pairs[0], pairs[1], weight, bias, last_weight, last_bias, p, workspace, lease
    )
