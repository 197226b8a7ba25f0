r"""Softmax over the incoming edges of each node (the attention normalisation of GAT).

.. math::
    \alpha_{e} = \frac{\exp(s_e - m_i)}{\sum_{e' \to i} \exp(s_{e'} - m_i)}, \qquad
    m_i = \max_{e' \to i} s_{e'}

for every edge :math:`e` into node :math:`i`. Subtracting the per-node maximum keeps every
exponential at most 1 and every denominator at least 1, so the result is finite for any finite
input; nodes without incoming edges simply have no entries.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.ops.csr import CSRGraph
from gnnkit.ops.scatter import _segment, index_sum, scatter_max, scatter_sum
from gnnkit.utils.checks import describe

__all__ = ["edge_softmax", "scatter_softmax"]


class _EdgeSoftmax(torch.autograd.Function):
    """Segment softmax whose backward needs only its output (saves one |E| x H tensor). Under
    ``create_graph`` the backward sums rows with ``index_add`` (torch's segment reduction's
    backward is not differentiable), so the softmax is differentiable twice."""

    @staticmethod
    def forward(ctx, scores: Tensor, rowptr: Tensor, row: Tensor) -> Tensor:
        axis = scores.dim() - 1  # edges are the last dimension: (|E|,) or (H, |E|)
        peak = _segment(scores, rowptr, "max", axis)  # (N,) or (H, N)
        out = (scores - peak.index_select(axis, row)).exp_()
        total = _segment(out, rowptr, "sum", axis)
        out.div_(total.index_select(axis, row))
        ctx.save_for_backward(out, rowptr, row)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        out, rowptr, row = ctx.saved_tensors
        axis = out.dim() - 1
        weighted = out * grad_out
        # d softmax: alpha_e * (g_e - sum_{e' into i} alpha_e' g_e')
        if torch.is_grad_enabled():  # create_graph=True: ops whose backward is differentiable
            sums = index_sum(weighted, row, rowptr.numel() - 1, axis)
            return weighted - out * sums.index_select(axis, row), None, None
        correction = _segment(weighted, rowptr, "sum", axis).index_select(axis, row)
        return weighted.sub_(out * correction), None, None


def edge_softmax(graph: CSRGraph, scores: Tensor) -> Tensor:
    """Softmax of edge scores over the incoming edges of each receiver (CSR segments).

    Deterministic on every device (segment reductions only). Several heads are batched in
    the leading dimension, as in :func:`gnnkit.ops.spmm`.

    Args:
        graph (CSRGraph): the connectivity; ``scores`` follow its CSR order.
        scores (Tensor): (|E|,) or (H, |E|) unnormalised floating-point scores.

    Shapes:
        - **input:** ``scores`` (|E|,) or (H, |E|)
        - **output:** same as ``scores``; the entries into each node sum to 1
    """
    if (
        not isinstance(scores, Tensor)
        or scores.dim() not in (1, 2)
        or scores.size(-1) != graph.num_edges
    ):
        got = describe(scores, dtype=False)
        raise InputError(
            f"edge_softmax expects scores (|E|,) or (H, |E|) with |E| = {graph.num_edges}, "
            f"got {got}"
        )
    _check_floating("edge_softmax", scores)
    if scores.numel() == 0:
        return scores.clone()
    return _EdgeSoftmax.apply(scores, graph.rowptr, graph.row)


def _check_floating(name: str, scores: Tensor) -> None:
    """A softmax of integers would round every probability to 0 or 1: refused."""
    if not scores.is_floating_point():
        raise InputError(
            f"{name}: scores must be a floating-point tensor, got {scores.dtype}; pass "
            "scores.float()"
        )


def scatter_softmax(
    scores: Tensor, index: Tensor, num_nodes: int, *, deterministic: bool | None = None
) -> Tensor:
    """Softmax of edge scores grouped by ``index`` (receivers), for edges in any order.

    The plain message-passing path of :class:`gnnkit.nn.GATConv` uses it; built from
    differentiable scatter reductions (:func:`gnnkit.ops.scatter_max`,
    :func:`gnnkit.ops.scatter_sum`). Edges are the first dimension here, as in PyG.

    Shapes:
        - **input:** ``scores`` (|E|,) or (|E|, H), ``index`` (|E|,)
        - **output:** same as ``scores``
    """
    if not isinstance(scores, Tensor):
        raise InputError(f"scatter_softmax: scores must be a tensor, got {type(scores).__name__}")
    _check_floating("scatter_softmax", scores)
    if scores.numel() == 0:
        return scores.clone()
    peak = scatter_max(scores.detach(), index, num_nodes, deterministic=deterministic)
    out = (scores - peak[index]).exp()
    total = scatter_sum(out, index, num_nodes, deterministic=deterministic)
    return out / total[index]
