r"""One :class:`gnnkit.nn.GCNConv` call as one autograd node, for a training step.

On its fused path the layer computes

.. math::
    H = X W^\top, \qquad Z = \hat{A} H + b

as two operations: the transform (:func:`gnnkit.ops.linear.linear`'s compiled kernel for dense
``X`` with few outputs, or :func:`gnnkit.nn.sparse_linear` for sparse CSR ``X``) and the SpMM
with the bias (:func:`gnnkit.ops.spmm`), each an autograd Function. On a small graph each
Function costs more in bookkeeping than in arithmetic (recording the node, saving tensors, the
engine's visit in the backward pass), so :func:`layer_node` runs both as one node whose
backward pass is written out:

.. math::
    \bar{b} = \textstyle\sum_i \bar{Z}_i, \qquad \bar{H} = \hat{A}^\top \bar{Z}, \qquad
    \bar{W} = \bar{H}^\top X, \qquad \bar{X} = \bar{H} W

(:math:`\bar{W} = (X^\top \bar{H})^\top` for sparse ``X``, on its cached transposed
structure). Every product is the kernel the two Functions call, in the same order, so the
output and the gradients equal theirs bit for bit (tested). :mod:`gnnkit.models._fused_gcn`
does the same across both layers of :class:`gnnkit.models.GCN`; this serves any model built
from the layers, a user's own included: a user's two-layer Cora script
(``benchmarks/user_script.py``'s one-step variant) trains about 3 % faster per epoch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gnnkit.nn._common import runs_propagate
from gnnkit.nn.linear import sparse_structure
from gnnkit.ops import backend
from gnnkit.ops._layout import transposed_gradient
from gnnkit.ops.csr import CSRGraph
from gnnkit.ops.linear import _kernels as _linear_kernels
from gnnkit.ops.linear import _narrow, bias_gradient
from gnnkit.ops.matmul import _spmm_forward, _spmm_transposed

__all__ = ["hooked_propagate", "layer_node"]


class _GCNLayer(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        features: CSRGraph | None,
        graph: CSRGraph,
        values: Tensor,
        deterministic: tuple[bool, bool],
    ) -> Tensor:
        """``graph`` (its normalised ``values``) times ``x W^T``, plus ``bias``: (N, F_out).
        ``features``: the structure of a sparse CSR ``x``, else ``None`` (dense ``x``)."""
        if features is not None:  # sparse_linear's product
            x = x.values().unsqueeze(0)  # (1, nnz): one head
            h, ctx.transform = _spmm_forward(
                features, x, weight.t().unsqueeze(0), deterministic[0], None, True
            )
        else:  # the narrow kernel of gnnkit.ops.linear.linear (x and weight saved as given)
            narrow = _linear_kernels().narrow_linear(x.contiguous(), weight.contiguous())
            h, ctx.transform = narrow, ""
        values = values.unsqueeze(0)  # one head
        out, ctx.kernel = _spmm_forward(
            graph, values, h.unsqueeze(0), deterministic[1], bias, True
        )  # (N, F_out)
        ctx.features, ctx.graph, ctx.values = features, graph, values
        ctx.save_for_backward(x, weight)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        # (with create_graph every product here is differentiable: _spmm_transposed and mm)
        grad = grad.contiguous().unsqueeze(0)  # (1, N, F_out)
        grad_bias = bias_gradient(grad, (grad.size(-1),)) if need_bias else None
        grad_h = _spmm_transposed(ctx.graph, ctx.values, grad, ctx.kernel)  # (1, N, F_out)
        grad_x = grad_weight = None
        if ctx.features is not None:  # (X^T grad_h)^T, as sparse_linear's backward
            if need_weight:  # a row-major parameter's gradient in its layout (no copy later)
                grad_t = _spmm_transposed(ctx.features, x, grad_h, ctx.transform)[0]
                row_major = weight.is_leaf and weight.is_contiguous()
                grad_weight = transposed_gradient(grad_t) if row_major else grad_t.t()
        else:  # as the narrow kernel's backward
            grad_h = grad_h[0]
            grad_x = grad_h.mm(weight) if need_x else None
            grad_weight = grad_h.t().mm(x) if need_weight else None
        return grad_x, grad_weight, grad_bias, None, None, None, None


def layer_node(layer: Any, base: type, x: Tensor, graph: CSRGraph | None, weights: Tensor) -> Any:
    """``layer``'s transform, SpMM and bias on its fused path as one autograd node, or
    ``None`` where the separate operations must run: no gradient to record (an evaluation
    runs the kernels without Functions), hooks on ``propagate`` or a subclass of ``base``
    (:func:`gnnkit.nn._common.runs_propagate`), a static batch, autocast, edge weights or
    sparse features that need a gradient, sparse COO features, or dense features that the
    narrow kernel does not serve. ``x`` and the graph are the layer's checked inputs."""
    if not torch.is_grad_enabled() or graph is None or weights.requires_grad:
        return None  # (first: an evaluation reads nothing more)
    weight, bias = layer.lin.weight, layer.bias  # (a bias may be a plain tensor attribute)
    if not (weight.requires_grad or x.requires_grad or (bias is not None and bias.requires_grad)):
        return None
    if x.dim() != 2 or runs_propagate(layer, base) or torch.is_autocast_enabled(x.device.type):
        return None
    if x.layout == torch.sparse_csr and not x.requires_grad:
        features = sparse_structure(x, layer._feature_cache)
    elif x.layout == torch.strided and _narrow(x, weight):
        features = None
    else:
        return None
    # The feature product follows the global setting, as sparse_linear's spmm call does.
    deterministic = (backend.is_deterministic(None), backend.is_deterministic(layer.deterministic))
    return _GCNLayer.apply(x, weight, bias, features, graph, weights, deterministic)


def hooked_propagate(layer: Any, graph: CSRGraph, h: Tensor, weights: Tensor) -> Tensor:
    """PyG's ``propagate`` on the fused path's oriented CSR ``graph``, for hooks registered on
    it or on ``message_and_aggregate`` (or a subclass): run with the default flow, since the
    graph is already oriented; the layer's ``message_and_aggregate`` reads the graph from
    ``layer._fused_graph`` and multiplies by it."""
    flow = layer.flow
    layer._fused_graph, layer.flow = graph, "source_to_target"
    try:
        return layer.propagate(graph.to_sparse_csr(weights.detach()), x=h, edge_weight=weights)
    finally:
        layer._fused_graph, layer.flow = None, flow
