"""Node values copied onto edges (``x[row_e]``, ``x[col_e]``) with deterministic gradients.

Autograd's gradient of ``x[index]`` is a scatter-add, which is atomic (so not reproducible
bit for bit) on CUDA. On a :class:`CSRGraph` the same gradient is a segment sum: over rows for
receivers, over the transpose's rows for senders.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.ops.csr import CSRGraph, check_graph
from gnnkit.ops.scatter import _segment, index_sum

__all__ = ["gather_dst", "gather_src"]


class _Gather(torch.autograd.Function):
    """``x[..., row_e]`` (``receivers=True``) or ``x[..., col_e]``; the gradient is a segment
    sum over the CSR rows or over the transpose's rows (under ``create_graph`` an
    ``index_add``, differentiable again)."""

    @staticmethod
    def forward(ctx, x: Tensor, graph: CSRGraph, receivers: bool) -> Tensor:
        ctx.graph, ctx.receivers = graph, receivers
        return x.index_select(x.dim() - 1, graph.row if receivers else graph.col)

    @staticmethod
    def backward(ctx, grad: Tensor):
        axis = grad.dim() - 1
        if torch.is_grad_enabled():  # create_graph=True: index_add, differentiable again
            graph = ctx.graph
            index, size = (
                (graph.row, graph.num_rows) if ctx.receivers else (graph.col, graph.num_cols)
            )
            return index_sum(grad, index, size, axis), None, None
        if ctx.receivers:
            return _segment(grad.contiguous(), ctx.graph.rowptr, "sum", axis), None, None
        colptr, _, _, perm_t = ctx.graph.transpose()
        return _segment(grad.index_select(axis, perm_t), colptr, "sum", axis), None, None


def _check(name: str, graph: object, x: object, receivers: bool) -> None:
    check_graph(name, graph)
    assert isinstance(graph, CSRGraph)
    size, what = (graph.num_rows, "receivers") if receivers else (graph.num_cols, "senders")
    if not isinstance(x, Tensor) or x.dim() not in (1, 2) or x.size(-1) != size:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(
            f"{name}: x must be ({size},) or (H, {size}), one value per node of the graph's "
            f"{size} {what}, got {got}"
        )


def gather_dst(graph: CSRGraph, x: Tensor) -> Tensor:
    """The receiver's value for every edge, in CSR order: ``x[..., row_e]``.

    Shapes:
        - **input:** ``x`` (|V_out|,) or (H, |V_out|)
        - **output:** (|E|,) or (H, |E|)
    """
    _check("gather_dst", graph, x, True)
    return _Gather.apply(x, graph, True)


def gather_src(graph: CSRGraph, x: Tensor) -> Tensor:
    """The sender's value for every edge, in CSR order: ``x[..., col_e]``.

    Shapes:
        - **input:** ``x`` (|V_in|,) or (H, |V_in|)
        - **output:** (|E|,) or (H, |E|)
    """
    _check("gather_src", graph, x, False)
    return _Gather.apply(x, graph, False)
