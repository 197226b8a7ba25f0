"""Node values copied onto edges (``x[row_e]``, ``x[col_e]``) with deterministic gradients.

Autograd's gradient of ``x[index]`` is a scatter-add, which is atomic (so not reproducible
bit for bit) on CUDA. On a :class:`CSRGraph` the same gradient is a segment sum: over rows for
receivers, over the transpose's rows for senders.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from gnnkit.ops.csr import CSRGraph
from gnnkit.ops.scatter import _segment

__all__ = ["gather_dst", "gather_src"]


class _GatherDst(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, graph: CSRGraph) -> Tensor:
        ctx.graph = graph
        return x.index_select(x.dim() - 1, graph.row)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        return _segment(grad.contiguous(), ctx.graph.rowptr, "sum", grad.dim() - 1), None


class _GatherSrc(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, graph: CSRGraph) -> Tensor:
        ctx.graph = graph
        return x.index_select(x.dim() - 1, graph.col)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        colptr, _, _, perm_t = ctx.graph.transpose()
        axis = grad.dim() - 1
        return _segment(grad.index_select(axis, perm_t), colptr, "sum", axis), None


def gather_dst(graph: CSRGraph, x: Tensor) -> Tensor:
    """The receiver's value for every edge, in CSR order: ``x[..., row_e]``.

    Shapes:
        - **input:** ``x`` (|V|,) or (H, |V|)
        - **output:** (|E|,) or (H, |E|)
    """
    return _GatherDst.apply(x, graph)


def gather_src(graph: CSRGraph, x: Tensor) -> Tensor:
    """The sender's value for every edge, in CSR order: ``x[..., col_e]``.

    Shapes:
        - **input:** ``x`` (|V|,) or (H, |V|)
        - **output:** (|E|,) or (H, |E|)
    """
    return _GatherSrc.apply(x, graph)
