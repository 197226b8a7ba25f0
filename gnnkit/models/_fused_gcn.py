r"""The two-layer GCN on sparse CPU features as one autograd node.

A Cora epoch of :class:`gnnkit.models.GCN` is dominated by fixed costs: each layer checks its
inputs, looks up its cached graph and records several autograd nodes (the sparse transform,
the aggregation, the bias, the dropouts), and the backward pass walks them one by one. Here
the network

.. math::
    H_0 = \mathrm{dropout}(X) W_1^\top, \quad Z_1 = \hat{A}_1 H_0 + b_1, \quad
    A_1 = \mathrm{dropout}(\mathrm{ReLU}(Z_1)), \quad
    Z_2 = \hat{A}_2 (A_1 W_2^\top) + b_2

runs as one :class:`torch.autograd.Function` whose backward pass is written out:

.. math::
    \bar{b}_2 = \textstyle\sum_i \bar{Z}_{2,i}, \quad \bar{H}_1 = \hat{A}_2^\top \bar{Z}_2,
    \quad \bar{W}_2 = \bar{H}_1^\top A_1, \quad
    \bar{Z}_1 = \frac{\mathbb{1}[A_1 > 0]}{1 - p} \odot \bar{H}_1 W_2, \quad
    \bar{b}_1 = \textstyle\sum_i \bar{Z}_{1,i}, \quad
    \bar{W}_1 = \bigl(\mathrm{dropout}(X)^\top \hat{A}_1^\top \bar{Z}_1\bigr)^\top

(:math:`A_1 > 0` exactly where ReLU passed and dropout kept the unit, as in
:func:`gnnkit.nn.relu_dropout`). Every product is the kernel the layers call
(:func:`gnnkit.ops.spmm`'s, :func:`gnnkit.ops.linear.linear`, the same dropout draws in the
same order), so the
output and the gradients equal the layer-by-layer network's bit for bit (tested); only the
bookkeeping around them goes. The checks and the cached graphs are the layers' own
(:meth:`gnnkit.nn.GCNConv._checked_inputs`).

:func:`fused_gcn` returns ``None`` whenever the layers would do something this pass does not:
dense or COO features, another device than the CPU, hooks on either layer, PyG's plain path,
a learned self-loop weight or edge weights that need a gradient, no bias, a second layer
wider than the first (aggregated before its transform), features that need a gradient, or
``torch.compile`` and TorchScript. The caller then runs the layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from gnnkit.nn import GCNConv
from gnnkit.nn._common import runs_propagate, uses_plain_path
from gnnkit.nn._gcn_graph import prepare
from gnnkit.nn.functional import dropout, relu_dropout
from gnnkit.nn.gcn_norm import _Structure
from gnnkit.nn.linear import sparse_structure
from gnnkit.ops import backend
from gnnkit.ops._autograd import differentiable_once
from gnnkit.ops.csr import CSRGraph, ordinary_tensors
from gnnkit.ops.dropout import relu_dropout_grad
from gnnkit.ops.linear import linear as dense_linear
from gnnkit.ops.matmul import (
    _csr_matrix,
    _csr_product,
    _spmm_kernel,
    _spmm_raw,
    _spmm_transposed,
    _take_edges,
)

if TYPE_CHECKING:
    from gnnkit.models.gcn import GCN

__all__ = ["fused_gcn"]


def _matrix(graph: CSRGraph, values: Tensor, transpose: bool) -> Tensor:
    """``A`` (or ``A^T``) as a torch.sparse CSR matrix for values (1, nnz) in ``A``'s CSR
    order: the one-head matrix :func:`gnnkit.ops.spmm`'s CSR kernel multiplies by."""
    ptr, idx = graph.kernel_indices(transpose)
    if transpose:  # A^T's values in its CSR order, as spmm's backward takes them
        values = _take_edges(values, graph.transpose()[3])
    rows, cols = graph.num_rows, graph.num_cols
    return _csr_matrix(ptr, idx, values, (cols, rows) if transpose else (rows, cols))


def _adjacency(structure: _Structure, weights: Tensor) -> tuple[Tensor, Tensor]:
    """``(A, A^T)`` for a layer's normalised weights, built once while they are the same,
    unmodified tensor (kept on the layer's cached structure)."""
    memo = structure.matrices
    if memo is not None and memo[0] is weights and memo[1] == weights._version:
        return memo[2], memo[3]
    graph = structure.graph
    assert graph is not None
    with ordinary_tensors():  # kept beyond this call, maybe built under inference_mode
        values = weights.detach().unsqueeze(0)
        matrices = (_matrix(graph, values, False), _matrix(graph, values, True))
    structure.matrices = (weights, weights._version, *matrices)
    return matrices


@dataclass(frozen=True)
class _Product:
    """A sparse matrix times dense rows: structure, values in CSR order, the kernel mode and,
    for fixed values, the matrix and its transpose built once (:func:`_adjacency`)."""

    graph: CSRGraph
    values: Tensor  # (1, nnz)
    deterministic: bool
    matrices: tuple[Tensor, Tensor] | None = None

    def __call__(self, x: Tensor, transpose: bool = False, bias: Tensor | None = None) -> Tensor:
        """``self @ x + bias`` (or the transpose times ``x``, no bias) for a dense (N, C)
        ``x``: one ``addmm`` into a fresh output where spmm would run its CSR kernel (the
        same call, so the same bits), else :func:`gnnkit.ops.spmm`'s other kernel (on the
        transposed values kept in ``matrices`` where there are any). The bias is added as
        ``add_`` would, by the narrow kernel as it stores each row."""
        graph, x = self.graph, x.contiguous()
        kernel = _spmm_kernel(graph, x, self.deterministic, bias is not None)
        if kernel != "csr" or graph.num_edges == 0:
            rows = x.unsqueeze(0)  # one head
            if not transpose:
                return _spmm_raw(graph, False, self.values, rows, kernel, bias, flat=True)
            if self.matrices:  # A^T's values in its CSR order, gathered once
                values = self.matrices[1].values().unsqueeze(0)
                return _spmm_raw(graph, True, values, rows, kernel, flat=True)
            return _spmm_transposed(graph, self.values, rows, kernel)[0]
        matrix = (
            self.matrices[transpose] if self.matrices else _matrix(graph, self.values, transpose)
        )
        out = _csr_product(matrix, x, x.new_empty(matrix.size(0), x.size(-1)))
        return out if bias is None else out.add_(bias)


@dataclass(frozen=True)
class _Network:
    """What one pass needs besides the parameters: the dropped-out features and the graphs."""

    features: _Product  # dropout(X), (|V|, F_in)
    first: _Product  # the first layer's normalised adjacency
    second: _Product  # the second layer's
    p: float  # hidden dropout
    training: bool


def _forward(net: _Network, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> tuple[Tensor, ...]:
    """The logits, and the hidden activations the backward pass needs."""
    h0 = net.features(w1.t())  # (|V|, hidden): sparse_linear's product
    z1 = net.first(h0, bias=b1)
    a1 = relu_dropout(z1, net.p, net.training)  # the layers' draw, in the layers' order
    z2 = net.second(dense_linear(a1, w2), bias=b2)  # (|V|, out): the second layer's transform
    return z2, a1


class _TwoLayerGCN(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, net: _Network, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor
    ) -> Tensor:
        out, a1 = _forward(net, w1, b1, w2, b2)
        ctx.net = net
        ctx.save_for_backward(a1, w2)
        return out

    @staticmethod
    @differentiable_once("gnnkit.models.GCN's fused two-layer step")
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        net: _Network = ctx.net
        a1, w2 = ctx.saved_tensors
        grad = grad.contiguous()
        _, need_w1, need_b1, need_w2, need_b2 = ctx.needs_input_grad
        g_b2 = grad.sum(0) if need_b2 else None
        g_h1 = net.second(grad, transpose=True)  # (|V|, out)
        g_w2 = g_h1.t().mm(a1) if need_w2 else None
        g_w1 = g_b1 = None
        if need_w1 or need_b1:
            # (|V|, hidden), then through ReLU and dropout (scale 1 in evaluation mode)
            g_z1 = relu_dropout_grad(a1, g_h1.mm(w2), net.p if net.training else 0.0)
            g_b1 = g_z1.sum(0) if need_b1 else None
            if need_w1:
                g_w1 = net.features(net.first(g_z1, transpose=True), transpose=True).t()
        return None, g_w1, g_b1, g_w2, g_b2


def _eligible(model: GCN, x: Any) -> tuple[GCNConv, GCNConv, tuple[Tensor, ...]] | None:
    """The two layers and their parameters ``(W1, b1, W2, b2)``, where the layers would run
    exactly what :func:`_forward` runs (module docstring); else ``None``. Each module
    attribute is read once (``nn.Module.__getattr__`` is slow, and this runs every call)."""
    if torch.jit.is_scripting() or torch.compiler.is_compiling():
        return None
    if not isinstance(x, Tensor) or x.layout != torch.sparse_csr or x.dim() != 2:
        return None
    if x.device.type != "cpu" or x.requires_grad:
        return None
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        return None
    conv1, conv2 = model.conv1, model.conv2
    if not (isinstance(conv1, GCNConv) and isinstance(conv2, GCNConv)):
        return None
    params = []
    for conv in (conv1, conv2):
        if type(conv) is not GCNConv or runs_propagate(conv, GCNConv) or uses_plain_path(conv):
            return None
        if conv._forward_hooks or conv._forward_pre_hooks or conv._backward_hooks:
            return None
        own = conv._parameters  # registered, so never plain attributes
        if own.get("bias") is None or own.get("raw_self_loop_weight") is not None:
            return None
        params += [conv.lin.weight, own["bias"]]
    first, second = params[0], params[2]
    fits = (
        second.dim() == 2  # not a lazy weight
        and second.size(1) == first.size(0)
        and second.size(0) <= second.size(1)  # transformed before it is aggregated
        and second.dtype == x.dtype
        and second.device == x.device
    )
    return (conv1, conv2, tuple(params)) if fits else None


def fused_gcn(model: GCN, x: Tensor, edge_index: Any) -> Tensor | None:
    """``model(x, edge_index)`` as one autograd node, or ``None`` where the layers must run.

    The first layer checks ``x`` and the graph as its ``forward`` would; both layers keep
    their graphs in their own caches.
    """
    layers = _eligible(model, x)
    if layers is None:
        return None
    conv1, conv2, params = layers
    x, graph, plain, first, weights1 = conv1._checked_inputs(x, edge_index, None)
    if plain or weights1.requires_grad:
        return None
    second, weights2 = prepare(conv2, graph, graph.values, x.size(0), x.dtype, True)
    if weights2.requires_grad or first.graph is None or second.graph is None:
        return None  # (the CSR graphs exist: both were prepared for the fused kernels)
    values = dropout(x.values(), model.dropout, model.training)  # sparse_dropout's draw
    features = sparse_structure(x, conv1._feature_cache)
    det1 = backend.is_deterministic(conv1.deterministic)
    det2 = backend.is_deterministic(conv2.deterministic)
    net = _Network(
        _Product(features, values.unsqueeze(0), det1),
        _Product(first.graph, weights1.unsqueeze(0), det1, _adjacency(first, weights1)),
        _Product(second.graph, weights2.unsqueeze(0), det2, _adjacency(second, weights2)),
        model.dropout,
        model.training,
    )
    if torch.is_grad_enabled() and any(p.requires_grad for p in params):
        return _TwoLayerGCN.apply(net, *params)
    return _forward(net, *params)[0]
