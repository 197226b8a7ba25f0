"""The attention scores of :class:`gnnkit.nn.GATConv`, and its fused lean path.

The per-node products :math:`a^{h\\top}_{src} W^h x_j` and :math:`a^{h\\top}_{dst} W^h x_i`
come from one matmul (:func:`node_scores`). Where a fused kernel serves the device and dtype
(:func:`gnnkit.ops.fused_gat`: numba on CPU, Triton on CUDA), :func:`fused_attend` runs the
rest of the layer's sparse part (scores per edge, leaky ReLU, softmax, attention dropout,
aggregation) in one pass over the CSR graph, and where the products come from their compiled
pass too, both as one autograd Function (:func:`gnnkit.ops._gat_scored.fused_gat_scored`);
otherwise :func:`attend` computes the attention in torch's operators: per edge of the
head-interleaved CSR graph (the unfused lean path) or per edge in PyG's layout (the plain
path, which PyG's ``propagate`` then aggregates).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from gnnkit import ops
from gnnkit.nn._common import linear
from gnnkit.nn._gat_inputs import Sides, Structure, att_block
from gnnkit.ops._gat_scored import fused_gat_scored
from gnnkit.ops.attention import (
    fused_gat,
    fused_gat_backend,
    node_scores_available,
    projected_node_scores,
)
from gnnkit.ops.attention import node_scores as ops_node_scores

if TYPE_CHECKING:
    from gnnkit.nn.gat import GATConv

__all__ = [
    "attend",
    "dst_features",
    "edge_order",
    "fused_attend",
    "node_scores",
    "uses_fused_kernel",
]

# xw of at least this many bytes takes projected_node_scores' forward pass over xw (measured,
# 1 thread: 2 MB about even with x (W^T A), 8 MB 1.4-1.9x faster, 29 MB 1.6-2.1x)
MIN_PROJECTED_BYTES = 4 << 20


def uses_fused_kernel(layer, sides: Sides, lean: bool, attention_weights: bool) -> bool:
    """Whether this call runs :func:`gnnkit.ops.fused_gat` (a kernel, not its torch form).

    Not for coefficients returned with gradients recorded while attention dropout is active:
    the kernel's coefficients carry no gradient (PyG's do), and coefficients computed beside
    the kernel (:func:`fused_attend`) would not be the dropped-out ones it used.
    """
    if not lean or (attention_weights and torch.is_grad_enabled() and dropout_active(layer)):
        return False
    weight = sides.lin_src.weight
    return fused_gat_backend(sides.x_src.device, weight.dtype) != "torch"


def dropout_active(layer) -> bool:
    """Whether ``layer`` drops attention coefficients in this call (training, ``p > 0``)."""
    return layer.training and layer.dropout > 0.0


def dst_features(sides: Sides) -> Tensor:
    assert sides.x_dst is not None
    return linear(sides.x_dst, sides.lin_dst.weight)  # (N_d, H C)


def node_scores(layer, sides: Sides, xw: Tensor) -> tuple[Tensor, Tensor | None]:
    """Per-node attention products (|V_src|, H) and (|V_dst|, H) or ``None``: one compiled
    pass (:func:`gnnkit.ops.attention.node_scores`) or one matmul with the block-diagonal
    matrix of the attention vectors, on whichever side is narrower."""
    H = layer.heads
    if not sides.shared:
        a_src = xw @ att_block(sides.att_src)
        if sides.x_dst is None:
            return a_src, None
        return a_src, dst_features(sides) @ att_block(sides.att_dst)
    # a_src[j, h] = <att_src[h], W_h x_j>. On CPU one compiled pass over xw computes both
    # (a matmul costs more in operator calls than in arithmetic on small graphs). Else both
    # products of every head in one matmul with A (H C, 2H), as (x W^T) A, or x (W^T A) for
    # dense x with fewer input than output channels: that reads x once more but leaves xw
    # with a single consumer, so its backward adds no (|V|, H C) gradient. On CPU with a
    # large xw the products of x (W^T A) come from the compiled pass over xw, their gradients
    # still through x (gnnkit.ops.attention.projected_node_scores).
    x = sides.x_src
    if _compiled_products(sides, xw):
        return ops_node_scores(xw.view(xw.size(0), H, -1), sides.att_src, sides.att_dst)
    narrow_input = _narrow_input(x, xw)
    att = torch.cat([sides.att_src, sides.att_dst])  # (2, H, C)
    eye = torch.eye(H, dtype=att.dtype, device=att.device)
    # blocks[h, c, s, k] = att[s, h, c] if k == h else 0; the product keeps the permuted
    # (column-major) layout, which selects the GEMM kernel the results were pinned with.
    blocks = att.permute(1, 2, 0).unsqueeze(-1) * eye.view(H, 1, 1, H)  # (H, C, 2, H)
    attention = blocks.reshape(-1, 2 * H)  # (H C, 2H)
    if not narrow_input:
        return _split(xw @ attention, H)
    projection = sides.lin_src.weight.t() @ attention  # (F_in, 2H)
    if xw.nbytes >= MIN_PROJECTED_BYTES:  # (x @ projection itself off the compiled pass)
        xw = xw.view(xw.size(0), H, -1)  # the products from xw, their gradients through x
        return projected_node_scores(x, projection, xw, sides.att_src, sides.att_dst)
    return _split(x @ projection, H)


def _compiled_products(sides: Sides, xw: Tensor) -> bool:
    """Whether :func:`node_scores` takes both products from the compiled pass over ``xw``
    (one node set, input features no narrower than ``xw``, a kernel for its device)."""
    return sides.shared and not _narrow_input(sides.x_src, xw) and node_scores_available(xw)


def _narrow_input(x: Tensor, xw: Tensor) -> bool:
    """Dense input features with fewer channels than the transformed ones ``xw``."""
    return x.layout == torch.strided and x.size(1) < xw.size(1)


def _split(logits: Tensor, heads: int) -> tuple[Tensor, Tensor]:
    """Both products of every head, (N, 2H), as ``(a_src, a_dst)`` (N, H) each."""
    a_src, a_dst = logits.split(heads, dim=1)
    return a_src, a_dst


def fused_attend(
    layer,
    sides: Sides,
    structure: Structure,
    edge_scores: Tensor | None,
    training: bool,
    return_attention: bool,
) -> tuple[Tensor, Tensor | None]:
    """The aggregated features (|V_dst|, H, C) and, if asked, the coefficients after dropout
    (|E'|, H) in CSR order, through :func:`gnnkit.ops.fused_gat`.

    Coefficients asked for while gradients are recorded (no attention dropout active: see
    :func:`uses_fused_kernel`) come from PyG's per-edge softmax beside the kernel, with their
    gradients; the output is still the kernel's, the very output of the same call without
    them (PyG's tests compare the two with ``allclose``'s default tolerance, tighter than the
    rounding difference between the kernel's sums and the unfused path's)."""
    H, C = layer.heads, layer.out_channels
    csr = structure.graph
    assert csr is not None and structure.fused  # built for the fused kernel
    xw = linear(sides.x_src, sides.lin_src.weight, layer._feature_cache)  # (N_s, H C)
    scores = None if edge_scores is None else edge_scores.index_select(0, csr.perm)  # CSR order
    beside = return_attention and torch.is_grad_enabled()
    options = (layer.negative_slope, layer.dropout, training)
    returned = return_attention and not beside
    if _compiled_products(sides, xw):  # the products and the kernels as one Function
        att_src, att_dst = sides.att_src, sides.att_dst
        features = xw.view(-1, H, C)
        out, alpha = fused_gat_scored(
            csr, features, att_src, att_dst, scores, *options, return_attention=returned
        )
    else:
        a_src, a_dst = node_scores(layer, sides, xw)  # (N_s, H), (N_d, H) or None
        out, alpha = fused_gat(
            csr, a_src, a_dst, scores, xw.view(-1, H, C), *options,
            deterministic=layer.deterministic, return_attention=returned,
        )  # fmt: skip
    if beside:  # (|E'|, H) in edge order, with gradients, gathered into CSR order
        _, alpha = attend(layer, sides, structure, edge_scores, False, csr.num_rows)
        alpha = alpha.index_select(0, csr.perm)
    return out, alpha


def attend(
    layer: GATConv,
    sides: Sides,
    structure: Structure,
    edge_scores: Tensor | None,
    lean: bool,
    num_dst: int,
) -> tuple[Tensor, Tensor]:
    """Transformed sender features and softmax-normalised attention, in torch's operators.

    Lean path: features (|V_src|, H C) and attention (|E'| H,), one entry per edge of the
    head-interleaved graph, in its CSR order. Plain path: features (|V_src|, H, C) and
    attention (|E'|, H) in ``structure.edge_index`` order (PyG's layout).
    """
    H, C = layer.heads, layer.out_channels
    xw = linear(sides.x_src, sides.lin_src.weight, layer._feature_cache)  # (N_s, H C)
    if lean:
        a_src, a_dst = node_scores(layer, sides, xw)  # (N_s, H), (N_d, H) or None
        csr = structure.graph  # heads interleaved: node (i, h) is i * H + h
        assert csr is not None  # the lean path builds it
        scores = ops.gather_src(csr, a_src.reshape(-1))
        if a_dst is not None:
            scores = scores + ops.gather_dst(csr, a_dst.reshape(-1))
        if edge_scores is not None:
            scores = scores + edge_scores.reshape(-1)[csr.perm]
        scores = F.leaky_relu(scores, layer.negative_slope)  # (E' H,)
        return xw, ops.edge_softmax(csr, scores)
    xw = xw.view(-1, H, C)
    a_src = (xw * sides.att_src).sum(-1)  # (N_s, H)
    src, dst = structure.edge_index[0], structure.edge_index[1]
    scores = a_src[src]
    if sides.x_dst is not None:
        xw_dst = xw if sides.shared else dst_features(sides).view(-1, H, C)
        scores = scores + (xw_dst * sides.att_dst).sum(-1)[dst]
    if edge_scores is not None:
        scores = scores + edge_scores
    scores = F.leaky_relu(scores, layer.negative_slope)  # (E', H)
    alpha = ops.scatter_softmax(scores, dst, num_dst, deterministic=layer.deterministic)
    return xw, alpha


def edge_order(layer: GATConv, structure: Structure, alpha: Tensor, lean: bool) -> Tensor:
    """Attention as (|E'|, H) in ``structure.edge_index`` order."""
    if not lean:
        return alpha
    ordered = torch.empty_like(alpha)  # (E', H) or (E' H,) in CSR order -> edge order
    assert structure.graph is not None  # the lean path builds it
    ordered[structure.graph.perm] = alpha
    return ordered.view(-1, layer.heads)
