"""The fused GAT layer's sparse part in torch's operators (:mod:`gnnkit.ops.attention`'s math):
the reference its kernels are tested against, its ``"torch"`` backend, and the form a backward
pass with ``create_graph=True`` differentiates."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from gnnkit.ops.csr import CSRGraph
from gnnkit.ops.scatter import index_sum, segment_max, segment_sum

__all__ = ["reference_gat", "torch_form"]


def reference_gat(
    graph: CSRGraph, a_src: Tensor, a_dst: Tensor | None, edge_score: Tensor | None,
    xw: Tensor, negative_slope: float, keep: Tensor | None, scale: float, *,
    twice_differentiable: bool = False,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """The same math as torch operations (autograd through them): ``(out, alpha)``, alpha
    before dropout. Builds the (|E|, H, C) messages; deterministic (segment sums only).
    ``twice_differentiable`` sums the rows with ``index_add`` instead, whose backward is
    differentiable again (torch's segment reduction's is not); on CUDA it adds in no fixed
    order."""

    def row_sums(values: Tensor) -> Tensor:  # (E, ...) -> (N_d, ...)
        if twice_differentiable:
            return index_sum(values, graph.row, graph.num_rows)
        return segment_sum(values, graph.rowptr)

    scores = a_src.index_select(0, graph.col)  # (E, H)
    if a_dst is not None:
        scores = scores + a_dst.index_select(0, graph.row)
    if edge_score is not None:
        scores = scores + edge_score
    scores = F.leaky_relu(scores, negative_slope)
    peak = segment_max(scores.detach(), graph.rowptr)  # (N_d, H), -inf on empty rows
    exp = (scores - peak.index_select(0, graph.row)).exp()
    alpha = exp / row_sums(exp).index_select(0, graph.row)  # (E, H)
    weights = alpha if keep is None else alpha * keep * scale
    messages = weights.unsqueeze(-1) * xw.index_select(0, graph.col)  # (E, H, C)
    return row_sums(messages), alpha


def torch_form(graph: CSRGraph, options: tuple[float, float], keep: Tensor | None) -> Any:
    """The fused forward's output as a function of ``(a_src, a_dst, edge_score, xw)`` in
    torch's operators, differentiable twice (a backward pass with ``create_graph=True``
    differentiates it); ``options`` are the Function's ``(negative_slope, scale)``."""
    slope, scale = options

    def form(a_src: Tensor, a_dst: Tensor | None, edge_score: Tensor | None, xw: Tensor) -> Tensor:
        inputs = (a_src, a_dst, edge_score, xw, slope, keep, scale)
        return reference_gat(graph, *inputs, twice_differentiable=True)[0]

    return form
