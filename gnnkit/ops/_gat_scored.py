r"""GAT's per-node attention products and the fused sparse part as one autograd Function (CPU).

:class:`gnnkit.nn.GATConv` computes the products :math:`a^{src}_{jh} = \langle x_{jh},
a^{src}_h \rangle` and :math:`a^{dst}_{jh} = \langle x_{jh}, a^{dst}_h \rangle`
(:func:`gnnkit.ops.attention.node_scores`) and hands them to :func:`gnnkit.ops.fused_gat`.
As two autograd Functions, the features :math:`x` have two consumers, and the backward pass
sums their two (|V|, H, C) gradients into a third tensor: a fresh allocation and a pass over
all three, for Cora's first layer (2708 x 8 x 8) about 100-170 us of a 6 ms epoch on one
thread, the largest such operator of the epoch. :func:`fused_gat_scored` computes both in one
Function, and its backward pass adds the products' gradient into the fused kernels' own
gradient of :math:`x` in place (``"features grad add"``, :mod:`gnnkit.ops._node_scores`):
each entry the same two terms added (``a + b``), so the same bits as the two Functions, one
operator and one autograd node fewer.

It serves where both pieces run compiled kernels (numba on CPU, gradients recorded); elsewhere
it is the two functions called one after the other, after the same checks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.ops._autograd import recomputed_gradients
from gnnkit.ops._gat_reference import torch_form
from gnnkit.ops.attention import (
    _check,
    _cpu_kernels,
    _score_inputs,
    _score_kernels,
    _torch_scores,
    attention_dropout,
    check_score_inputs,
    checked_fused_gat,
    fused_gat_backend,
    kernels_backward,
    kernels_forward,
    node_scores,
    node_scores_available,
    returned_attention,
)
from gnnkit.ops.csr import CSRGraph

__all__ = ["fused_gat_scored"]


class _ScoredGAT(torch.autograd.Function):
    """:func:`node_scores` then the fused kernels; ``alpha`` (before dropout) is saved."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        kernels: Any,
        graph: CSRGraph,
        xw: Tensor,
        att_src: Tensor,
        att_dst: Tensor,
        edge_score: Tensor | None,
        negative_slope: float,
        keep: Tensor | None,
        scale: float,
    ) -> tuple[Tensor, Tensor]:
        a_src, a_dst = _score_kernels().node_scores(*_score_inputs(xw, att_src, att_dst))
        scores = (a_src, a_dst, edge_score)
        out, alpha = kernels_forward(ctx, kernels, graph, scores, xw, negative_slope, keep, scale)
        ctx.shapes = (att_src.shape, att_dst.shape)
        ctx.save_for_backward(xw, att_src, att_dst, edge_score, a_src, a_dst, alpha, keep)
        return out, alpha

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor | None, _grad_alpha: None) -> tuple[Any, ...]:
        if grad_out is None:  # an undefined gradient (gradcheck passes one): zero
            return (None,) * 9
        xw, att_src, att_dst, edge_score, a_src, a_dst, alpha, keep = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the torch form, differentiable again
            form = torch_form(ctx.graph, ctx.options, keep)

            def scored_form(
                xw: Tensor, att_src: Tensor, att_dst: Tensor, edge_score: Tensor | None
            ) -> Tensor:
                return form(*_torch_scores(xw, att_src, att_dst), edge_score, xw)

            inputs = (xw, att_src, att_dst, edge_score)
            needs = ctx.needs_input_grad[2:6]
            grads = recomputed_gradients(scored_form, inputs, needs, [grad_out])
            return None, None, *grads, None, None, None
        saved = (a_src, a_dst, edge_score, xw, alpha, keep)
        grad_xw, grad_a_src, grad_a_dst, grad_score = kernels_backward(ctx, saved, grad_out)
        needs = ctx.needs_input_grad[2:5]  # xw, att_src, att_dst
        xw, att_src, att_dst = _score_inputs(xw, att_src, att_dst)
        grad_xw, grad_src, grad_dst = _score_kernels().node_scores_grad(
            xw, grad_a_src, grad_a_dst, att_src, att_dst, needs, into=grad_xw
        )
        grad_src = None if grad_src is None else grad_src.view(ctx.shapes[0])
        grad_dst = None if grad_dst is None else grad_dst.view(ctx.shapes[1])
        return None, None, grad_xw, grad_src, grad_dst, grad_score, None, None, None


def _one_function(xw: Tensor, att_src: Tensor, att_dst: Tensor, edge_score: Any) -> bool:
    """Whether :class:`_ScoredGAT` serves: compiled products and kernels, gradients recorded."""
    return (
        node_scores_available(xw)
        and fused_gat_backend(xw.device, xw.dtype) == "numba"
        and torch.is_grad_enabled()
        and any(
            isinstance(t, Tensor) and t.requires_grad for t in (xw, att_src, att_dst, edge_score)
        )
    )


def fused_gat_scored(
    graph: CSRGraph,
    xw: Tensor,
    att_src: Tensor,
    att_dst: Tensor,
    edge_score: Tensor | None,
    negative_slope: float = 0.2,
    dropout_p: float = 0.0,
    training: bool = False,
    *,
    return_attention: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """``fused_gat(graph, *node_scores(xw, att_src, att_dst), edge_score, xw, ...)``: the
    same results, drawn from the same random stream, as one autograd Function where both run
    compiled kernels (module docstring).

    Args:
        graph (CSRGraph): the edges (rows = receivers) over one node set (senders and
            receivers alike), one copy per edge.
        xw (Tensor): (|V|, H, C) the nodes' features per head.
        att_src (Tensor): (H, C) or (1, H, C), the sender attention vector per head.
        att_dst (Tensor): the receiver's, shaped as ``att_src``.
        edge_score, negative_slope, dropout_p, training, return_attention: as
            :func:`gnnkit.ops.fused_gat`.

    Returns:
        ``(out, alpha)`` as :func:`gnnkit.ops.fused_gat`.
    """
    _check(graph, None, None, edge_score, xw, negative_slope, dropout_p, scores_given=False)
    check_score_inputs("fused_gat_scored", xw, att_src, att_dst)
    if graph.num_rows != graph.num_cols:
        raise InputError(
            f"fused_gat_scored: graph must join one node set (|V_src| = |V_dst|), got "
            f"{graph.num_cols} senders and {graph.num_rows} receivers; use fused_gat"
        )
    options = (negative_slope, dropout_p, training, return_attention)
    if not _one_function(xw, att_src, att_dst, edge_score):  # checked: the two functions' work
        a_src, a_dst = node_scores(xw, att_src, att_dst)
        return checked_fused_gat(graph, a_src, a_dst, edge_score, xw, *options)
    keep, scale = attention_dropout(graph, xw, dropout_p, training)
    graph.transpose()  # built once per graph, before the activations exist
    out, alpha = _ScoredGAT.apply(
        _cpu_kernels(), graph, xw, att_src, att_dst, edge_score, float(negative_slope), keep,
        scale,
    )  # fmt: skip
    return returned_attention(out, alpha, keep, scale, return_attention)
