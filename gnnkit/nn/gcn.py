"""Graph convolution (Kipf & Welling) with a weighted self-loop, and its normalisation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import zeros

from gnnkit import ops
from gnnkit.errors import InputError
from gnnkit.nn._cache import GraphCache
from gnnkit.nn._common import (
    check_channels,
    check_inputs,
    check_options,
    check_sum_aggregation,
    layer_caches,
    linear,
)
from gnnkit.ops.csr import CSRGraph, ordinary_tensors
from gnnkit.utils.checks import check_edge_index, check_edge_weight

__all__ = ["GCNConv", "gcn_norm"]


# ---------------------------------------------------------------------------------------------
# Normalisation (pure functions)
# ---------------------------------------------------------------------------------------------


@dataclass
class _LoopedEdges:
    """``edge_index`` with remaining self-loops added (PyG's ``add_remaining_self_loops``).

    ``edge_index`` holds the input's non-loop edges in input order, then one loop per node
    ``0 .. |V|-1``. ``keep`` are the input positions of the non-loop edges; ``loop_edge[i]`` is
    the input position of node ``i``'s own self-loop (the last one if several), or -1.
    """

    edge_index: Tensor  # (2, E_nl + N)
    keep: Tensor  # (E_nl,)
    loop_edge: Tensor  # (N,)
    num_nodes: int


def _add_remaining_self_loops(edge_index: Tensor, num_nodes: int) -> _LoopedEdges:
    src, dst = edge_index[0], edge_index[1]
    is_loop = src == dst
    keep = (~is_loop).nonzero().view(-1)
    loop_edge = torch.full((num_nodes,), -1, dtype=torch.long, device=edge_index.device)
    loop_pos = is_loop.nonzero().view(-1)
    if loop_pos.numel():
        loop_edge.scatter_reduce_(0, src[loop_pos].long(), loop_pos, "amax")
    nodes = torch.arange(num_nodes, dtype=edge_index.dtype, device=edge_index.device)
    looped = torch.cat([edge_index[:, keep], torch.stack([nodes, nodes])], dim=1)
    return _LoopedEdges(looped, keep, loop_edge, num_nodes)


def _looped_weights(
    looped: _LoopedEdges,
    edge_weight: Tensor | None,
    self_loop_weight: float | Tensor,
    dtype: torch.dtype,
) -> Tensor:
    """Unnormalised weights of ``looped.edge_index``: input weights, then the loop weights.

    A node's existing self-loop keeps its own weight (1 without ``edge_weight``); nodes without
    one get ``self_loop_weight``.
    """
    device = looped.edge_index.device
    has_loop = looped.loop_edge >= 0
    if edge_weight is None:
        edge_part = torch.ones(looped.keep.numel(), dtype=dtype, device=device)
        existing = torch.ones(looped.num_nodes, dtype=dtype, device=device)
    else:
        edge_part = edge_weight[looped.keep]
        existing = edge_weight[looped.loop_edge.clamp(min=0)]
    if isinstance(self_loop_weight, Tensor):
        fill = self_loop_weight.to(dtype).expand(looped.num_nodes)
    else:
        fill = torch.full((looped.num_nodes,), float(self_loop_weight), dtype=dtype, device=device)
    return torch.cat([edge_part, torch.where(has_loop, existing, fill)])


def _inverse_sqrt_degree(degree: Tensor) -> Tensor:
    if degree.numel() and bool((degree < 0).any()):
        bad = (degree < 0).nonzero().view(-1)[:5].tolist()
        raise InputError(
            f"the weighted in-degree (including the self-loop) is negative for nodes {bad}; "
            "symmetric normalisation D^-1/2 needs non-negative edge weights"
        )
    inv = degree.pow(-0.5)
    return inv.masked_fill_(torch.isinf(inv), 0.0)


def _check_self_loop_weight(value: Any, name: str = "self_loop_weight") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise InputError(
            f"{name} must be a positive finite number (1 is the paper, 2 is PyG's "
            f"improved=True), got {value!r}"
        )
    return float(value)


def gcn_norm(
    edge_index: Tensor,
    edge_weight: Tensor | None = None,
    num_nodes: int | None = None,
    *,
    self_loop_weight: float | Tensor = 1.0,
    add_self_loops: bool = True,
    dtype: torch.dtype | None = None,
    deterministic: bool | None = None,
) -> tuple[Tensor, Tensor]:
    r"""The symmetric GCN normalisation of a graph with weighted self-loops.

    Returns the edges and weights of

    .. math::
        \hat{A} = \tilde{D}^{-1/2} (A + \lambda I) \tilde{D}^{-1/2}, \qquad
        \tilde{D}_{ii} = \lambda + \sum_{j \to i} e_{j,i}

    i.e. per edge :math:`j \to i`: :math:`\hat{e}_{j,i} = e_{j,i} / \sqrt{\tilde{d}_j
    \tilde{d}_i}`, where :math:`e_{j,i}` is the weight of edge :math:`j \to i` (1 without
    ``edge_weight``) and :math:`\lambda` is ``self_loop_weight``. Degrees are in-degrees
    counted on the target (``edge_index[1]``), as in PyG's ``gcn_norm``; nodes of zero degree
    get zero weights, never ``inf`` or ``NaN``.

    NOTE: self-loops follow PyG's ``add_remaining_self_loops``: a node that already has a
    self-loop keeps it with its own weight (1 for an unweighted graph, whatever
    :math:`\lambda`); only nodes without one get a loop of weight :math:`\lambda`. If a node
    has several self-loops, the last one's weight is used and the others are dropped.
    :func:`gnnkit.adjacency` instead adds :math:`\lambda I` on top of existing loops.

    Args:
        edge_index (Tensor): (2, |E|) edges, row 0 sources, row 1 targets.
        edge_weight (Tensor, optional): (|E|,) edge weights. (default: all ones)
        num_nodes (int, optional): the number of nodes. (default: largest index plus one)
        self_loop_weight (float or Tensor, optional): :math:`\lambda > 0`; 1 is the paper,
            2 is PyG's ``improved=True``. A 0-dimensional tensor keeps the gradient.
            (default: ``1.0``)
        add_self_loops (bool, optional): ``False`` normalises :math:`A` alone (no loops are
            added or removed and ``self_loop_weight`` is unused). (default: ``True``)
        dtype (torch.dtype, optional): dtype of the returned weights without ``edge_weight``.
            (default: ``torch.get_default_dtype()``)
        deterministic (bool, optional): bit-reproducible degree sums; ``None`` follows
            :func:`gnnkit.ops.is_deterministic`. (default: ``None``)

    Returns:
        (Tensor, Tensor): ``edge_index`` (2, |E'|) — the input's non-loop edges in input order,
        then the self-loops of nodes 0 .. |V|-1 (PyG's order) — and the normalised weights
        (|E'|,).

    Shapes:
        - **input:** ``edge_index`` (2, |E|), ``edge_weight`` (|E|,)
        - **output:** (2, |E'|) and (|E'|,) with |E'| = |E| - #loops + |V|
    """
    num_nodes = check_edge_index(edge_index, num_nodes)
    check_edge_weight(edge_weight, edge_index.size(1))
    if not isinstance(self_loop_weight, Tensor):
        _check_self_loop_weight(self_loop_weight)
    dtype = edge_weight.dtype if edge_weight is not None else dtype or torch.get_default_dtype()
    if add_self_loops:
        looped = _add_remaining_self_loops(edge_index, num_nodes)
        edge_index = looped.edge_index
        weight = _looped_weights(looped, edge_weight, self_loop_weight, dtype)
    elif edge_weight is not None:
        weight = edge_weight
    else:
        weight = torch.ones(edge_index.size(1), dtype=dtype, device=edge_index.device)
    src, dst = edge_index[0], edge_index[1]
    degree = ops.scatter_sum(weight, dst, num_nodes, deterministic=deterministic)
    inv = _inverse_sqrt_degree(degree)
    return edge_index, inv[src] * weight * inv[dst]


# ---------------------------------------------------------------------------------------------
# The layer
# ---------------------------------------------------------------------------------------------


@dataclass
class _Structure:
    """What a GCN layer derives from a graph, independent of lambda and edge weights."""

    looped: _LoopedEdges | None  # None when normalize=False (no loops added)
    edge_index: Tensor  # (2, E') the edges messages run on, PyG order
    graph: CSRGraph | None  # CSR form (fused path only)


class GCNConv(MessagePassing):
    r"""The graph convolution of `"Semi-Supervised Classification with Graph Convolutional
    Networks" <https://arxiv.org/abs/1609.02907>`_ (Kipf & Welling, ICLR 2017, arXiv
    1609.02907), with a weighted self-loop.

    .. math::
        H' = \tilde{D}^{-1/2} (A + \lambda I) \tilde{D}^{-1/2} H W + b

    where :math:`A_{ij} = e_{j,i}` is the weight of edge :math:`j \to i` (1 without edge
    weights), :math:`\lambda` the self-loop weight, :math:`\tilde{D}_{ii} = \lambda +
    \sum_{j \to i} e_{j,i}` the weighted in-degree including the loop,
    :math:`W \in \mathbb{R}^{F_{in} \times F_{out}}` the weight matrix (``lin.weight`` holds
    :math:`W^\top`, as in PyG) and :math:`b` the bias. Per node:

    .. math::
        h'_i = W^\top \Big( \frac{\lambda}{\tilde{d}_i} h_i + \sum_{j \to i}
        \frac{e_{j,i}}{\sqrt{\tilde{d}_j \tilde{d}_i}} h_j \Big) + b

    :math:`\lambda = 1` is the paper; :math:`\lambda = 2` is PyG's ``improved=True``; any
    positive value is allowed, and ``learn_self_loop_weight=True`` learns it. Messages flow
    from ``edge_index[0]`` to ``edge_index[1]``.

    The aggregation runs as a CSR sparse-dense matmul (:func:`gnnkit.ops.spmm`), whose backward
    is an SpMM on the transposed graph plus, when :math:`\lambda` or the edge weights need a
    gradient, one dot product per edge: no ``|E| x C`` message tensor exists in either pass.
    The layer multiplies by :math:`W` first when ``out_channels <= in_channels`` and
    aggregates first otherwise, so the SpMM always runs on the narrower side. With
    ``layer.fuse = False`` or in PyG's explain mode the layer uses PyG's plain
    ``message``/``aggregate`` path instead (same result).

    NOTE: departures from the paper and from PyG's ``GCNConv``:

    - Self-loops follow PyG's ``add_remaining_self_loops`` (see :func:`gcn_norm`): an existing
      self-loop keeps its own weight; only nodes without one get :math:`\lambda`.
    - ``self_loop_weight`` generalises PyG's ``improved`` flag.
    - ``cached=True`` checks that the graph is unchanged before reusing the cache (PyG reuses
      it blindly); a changed graph is renormalised, never silently served stale.
    - ``x`` may be a sparse COO or CSR matrix (e.g. bag-of-words features with
      :func:`gnnkit.nn.sparse_dropout`); it is multiplied by :math:`W` without densifying
      (:func:`gnnkit.nn.sparse_linear`). The layer keeps the sparsity structure of the last
      sparse ``x`` and its transpose for the backward pass, whatever ``cached`` says; a
      dropped-out copy of the same matrix reuses them.
    - ``in_channels=-1`` (PyG's lazy initialisation) is not supported.

    Args:
        in_channels (int): :math:`F_{in}`, the size of each input feature vector.
        out_channels (int): :math:`F_{out}`, the size of each output feature vector.
        self_loop_weight (float, optional): :math:`\lambda > 0`, or its initial value when
            learned. (default: ``1.0``)
        learn_self_loop_weight (bool, optional): learn :math:`\lambda` as
            :math:`\operatorname{softplus}(\rho)`, a positive function of the parameter
            ``raw_self_loop_weight`` (:math:`\rho`). (default: ``False``)
        normalize (bool, optional): ``False`` computes :math:`H' = A H W + b` with no
            self-loops and no normalisation (PyG's ``normalize=False``); ``self_loop_weight``
            must then stay at its default. (default: ``True``)
        cached (bool, optional): keep the normalised adjacency (and its CSR form) between
            calls; it is rebuilt whenever ``edge_index`` or ``edge_weight`` differ from the
            cached ones (different tensors with different contents, or an in-place change).
            With a learned :math:`\lambda` or edge weights that require a gradient only the
            graph structure is cached. A cache filled under ``torch.inference_mode()``
            (an evaluation before any training) holds ordinary tensors and serves later
            training steps. (default: ``False``)
        bias (bool, optional): learn the additive bias :math:`b`. (default: ``True``)
        deterministic (bool, optional): bit-reproducible kernels for this layer (sorted
            segment reductions, no atomics); ``None`` follows
            :func:`gnnkit.ops.is_deterministic`. The plain path's backward also runs PyG's
            gather, which is atomic on CUDA unless ``torch.use_deterministic_algorithms(True)``
            is set as well. (default: ``None``)
        validate (bool, optional): check the inputs: dtypes and shapes at every call, node
            indices and NaN in ``edge_weight`` whenever the graph is (re)built, NaN in ``x`` at
            every call. ``False`` skips the checks that read whole tensors. (default: ``True``)
        graph_cache (GraphCache, optional): the cache of ``cached=True``; layers given one
            :class:`~gnnkit.nn.GraphCache` share the structure built for a graph. (default:
            the layer's own)
        **kwargs (optional): passed to :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** node features ``x`` (|V|, F_in), dense or sparse COO/CSR; ``edge_index``
          (2, |E|); ``edge_weight`` (|E|,) *(optional)*
        - **output:** (|V|, F_out)

    Example:
        >>> conv = GCNConv(16, 32, self_loop_weight=2.0)
        >>> out = conv(x, edge_index)  # (|V|, 32)
    """

    # PyG compiles propagate() from these types; it cannot parse ``Tensor | None``.
    propagate_type: ClassVar[dict[str, Any]] = {
        "x": Tensor,
        "edge_weight": Optional[Tensor],  # noqa: UP045
        "graph": Any,
    }

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        self_loop_weight: float = 1.0,
        learn_self_loop_weight: bool = False,
        normalize: bool = True,
        cached: bool = False,
        bias: bool = True,
        deterministic: bool | None = None,
        validate: bool = True,
        graph_cache: GraphCache | None = None,
        **kwargs: Any,
    ) -> None:
        check_sum_aggregation("GCNConv", kwargs)
        super().__init__(**kwargs)
        check_channels(in_channels=in_channels, out_channels=out_channels)
        _check_self_loop_weight(self_loop_weight)
        if not normalize and (learn_self_loop_weight or self_loop_weight != 1.0):
            raise InputError(
                "normalize=False adds no self-loops, so self_loop_weight and "
                "learn_self_loop_weight have no effect; leave them at their defaults"
            )
        check_options(
            deterministic,
            learn_self_loop_weight=learn_self_loop_weight,
            normalize=normalize,
            cached=cached,
            bias=bias,
            validate=validate,
        )

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.initial_self_loop_weight = float(self_loop_weight)
        self.learn_self_loop_weight = learn_self_loop_weight
        self.normalize = normalize
        self.cached = cached
        self.deterministic = deterministic
        self.validate = validate
        self._cache, self._feature_cache = layer_caches(graph_cache)

        self.lin = Linear(in_channels, out_channels, bias=False, weight_initializer="glorot")
        if learn_self_loop_weight:
            self.raw_self_loop_weight = Parameter(torch.empty(()))
        else:
            self.register_parameter("raw_self_loop_weight", None)
        if bias:
            self.bias = Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot weights, zero bias, :math:`\\lambda` back to its initial value; clear caches."""
        super().reset_parameters()
        self.lin.reset_parameters()
        zeros(self.bias)
        if self.raw_self_loop_weight is not None:
            with torch.no_grad():
                # softplus^-1(lambda) = log(exp(lambda) - 1), computed stably.
                lam = torch.tensor(self.initial_self_loop_weight, dtype=torch.float64)
                self.raw_self_loop_weight.fill_(float(lam + torch.log(-torch.expm1(-lam))))
        self.clear_cache()

    def clear_cache(self) -> None:
        """Forget the cached graph structure and feature structure; the next call rebuilds them."""
        self._cache.clear()
        self._feature_cache.clear()

    @property
    def self_loop_weight(self) -> float | Tensor:
        """:math:`\\lambda`: a float, or a 0-dim tensor with a gradient when learned."""
        if self.raw_self_loop_weight is None:
            return self.initial_self_loop_weight
        return F.softplus(self.raw_self_loop_weight)

    # -- graph preparation ------------------------------------------------------------------

    def _structure(
        self, edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int, fused: bool
    ) -> _Structure:
        if self.validate:
            check_edge_index(edge_index, num_nodes)
            check_edge_weight(edge_weight, edge_index.size(1))
        if self.normalize:
            looped = _add_remaining_self_loops(edge_index, num_nodes)
            ei = looped.edge_index
        else:
            looped, ei = None, edge_index
        graph = CSRGraph.from_edge_index(ei, num_nodes) if fused else None
        return _Structure(looped, ei, graph)

    def _weights(
        self, structure: _Structure, edge_weight: Tensor | None, dtype: torch.dtype
    ) -> Tensor:
        """Normalised edge weights in CSR order (fused) or ``structure.edge_index`` order."""
        graph = structure.graph
        if structure.looped is None:
            ei = structure.edge_index
            weight = (
                edge_weight
                if edge_weight is not None
                else torch.ones(ei.size(1), dtype=dtype, device=ei.device)
            )
            return weight[graph.perm] if graph is not None else weight
        weight = _looped_weights(structure.looped, edge_weight, self.self_loop_weight, dtype)
        if graph is None:
            dst = structure.edge_index[1]
            degree = ops.scatter_sum(
                weight, dst, structure.looped.num_nodes, deterministic=self.deterministic
            )
            inv = _inverse_sqrt_degree(degree)
            return inv[structure.edge_index[0]] * weight * inv[dst]
        weight = weight[graph.perm]  # CSR order: rows are targets
        inv = _inverse_sqrt_degree(ops.segment_sum(weight, graph.rowptr))
        return ops.gather_dst(graph, inv) * weight * ops.gather_src(graph, inv)

    def _prepare(
        self, edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int, dtype, fused: bool
    ) -> tuple[_Structure, Tensor]:
        if edge_weight is not None and not isinstance(edge_weight, Tensor):
            check_edge_weight(edge_weight, edge_index.size(1))  # raises, saying how to fix it
        if edge_weight is not None and edge_weight.dtype != dtype:
            raise InputError(
                f"edge_weight is {edge_weight.dtype} but x is {dtype}; convert one to the other"
            )
        if not self.cached:
            structure = self._structure(edge_index, edge_weight, num_nodes, fused)
            return structure, self._weights(structure, edge_weight, dtype)
        tensors = (edge_index, edge_weight)
        extra = (num_nodes, dtype, fused, self.normalize)
        entry = self._cache.lookup(tensors, extra)
        dynamic = self.raw_self_loop_weight is not None or (
            edge_weight is not None and edge_weight.requires_grad
        )
        if entry is None:
            # Ordinary tensors without autograd history even under inference_mode: the entry
            # outlives this call (an evaluation first, then training steps that save them).
            with ordinary_tensors():
                structure = self._structure(edge_index, edge_weight, num_nodes, fused)
                weights = None if dynamic else self._weights(structure, edge_weight, dtype)
            entry = (structure, weights)
            self._cache.store(tensors, extra, entry)
        structure, weights = entry
        if weights is None or dynamic:
            weights = self._weights(structure, edge_weight, dtype)
        return structure, weights

    # -- forward ----------------------------------------------------------------------------

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Apply the convolution.

        Args:
            x (Tensor): node features (|V|, F_in), dense or sparse COO/CSR.
            edge_index (Tensor): (2, |E|) edges, row 0 sources, row 1 targets.
            edge_weight (Tensor, optional): (|E|,) non-negative edge weights. (default: ``None``)

        Returns:
            Tensor: (|V|, F_out).
        """
        num_nodes = check_inputs(self, x, edge_index, validate=self.validate)
        fused = bool(self.fuse) and not self.explain
        structure, weights = self._prepare(edge_index, edge_weight, num_nodes, x.dtype, fused)

        # Multiply by W first when that narrows the features (or x is sparse), so the SpMM
        # runs on min(F_in, F_out) channels.
        transform_first = x.layout != torch.strided or self.out_channels <= self.in_channels
        h = linear(x, self.lin.weight, self._feature_cache) if transform_first else x  # (N, F)
        if fused:
            graph = structure.graph
            adj_t = graph.to_sparse_csr(weights.detach())
            out = self.propagate(adj_t, x=h, edge_weight=weights, graph=graph)
        else:
            out = self.propagate(structure.edge_index, x=h, edge_weight=weights, graph=None)
        if not transform_first:
            return F.linear(out, self.lin.weight, self.bias)  # (N, F_out), bias fused
        if self.bias is not None:
            out = out.add_(self.bias)  # in place: the aggregation's output is ours alone
        return out

    def message(self, x_j: Tensor, edge_weight: Tensor | None) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def aggregate(self, inputs: Tensor, index: Tensor, dim_size: int | None = None) -> Tensor:
        return ops.scatter_sum(inputs, index, dim_size, deterministic=self.deterministic)

    def message_and_aggregate(
        self, adj_t: Tensor, x: Tensor, edge_weight: Tensor | None, graph: Any
    ) -> Tensor:
        return ops.spmm(graph, edge_weight, x, deterministic=self.deterministic)

    def extra_repr(self) -> str:
        lam = (
            f"learned, init {self.initial_self_loop_weight:g}"
            if self.learn_self_loop_weight
            else f"{self.initial_self_loop_weight:g}"
        )
        return (
            f"{self.in_channels}, {self.out_channels}, self_loop_weight={lam}, "
            f"normalize={self.normalize}, cached={self.cached}, bias={self.bias is not None}"
        )

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.extra_repr()})"
