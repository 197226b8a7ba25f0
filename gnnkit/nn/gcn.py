"""Graph convolution (Kipf & Welling) with a weighted self-loop, and its normalisation.

:class:`GCNConv` is a drop-in replacement for PyG's: the same constructor (positional order and
defaults), inputs (``edge_index``, ``EdgeIndex``, torch.sparse and ``SparseTensor`` adjacency,
static graphs), ``MessagePassing`` semantics (``flow``, hooks, ``decomposed_layers``, explain
mode, TorchScript) and ``repr``; gnnkit's extras are keyword-only. This module has no
``from __future__ import annotations``: TorchScript reads the annotations of the methods it
compiles.
"""

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import zeros
from torch_geometric.typing import Adj, OptTensor

from gnnkit import ops
from gnnkit.errors import InputError
from gnnkit.nn._adjacency import GraphInput, read_graph, square_graph_weights
from gnnkit.nn._cache import GraphCache, PygCacheAttributes
from gnnkit.nn._common import (
    check_channels,
    check_features,
    check_graph_device,
    check_kwargs,
    check_options,
    check_sum_aggregation,
    layer_caches,
    linear,
    refuse_pair,
    runs_propagate,
    uses_plain_path,
)
from gnnkit.nn._gcn_graph import prepare
from gnnkit.nn._gcn_layer import hooked_propagate, layer_node
from gnnkit.nn.gcn_norm import (
    _check_self_loop_weight,
    _resolve_self_loop_weight,
    _script_gcn_norm,
    _Structure,
    gcn_norm,
)
from gnnkit.ops.csr import CSRGraph
from gnnkit.ops.linear import linear as dense_linear
from gnnkit.utils.checks import check_edge_weight

__all__ = ["GCNConv", "gcn_norm"]

_ACCEPTED = (
    "in_channels",
    "out_channels",
    "improved",
    "cached",
    "add_self_loops",
    "normalize",
    "bias",
    "self_loop_weight",
    "learn_self_loop_weight",
    "deterministic",
    "validate",
    "graph_cache",
)


# ---------------------------------------------------------------------------------------------
# The layer
# ---------------------------------------------------------------------------------------------


class GCNConv(PygCacheAttributes, MessagePassing):
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
    aggregates first otherwise, so the SpMM always runs on the narrower side.

    A drop-in replacement for PyG's ``GCNConv`` (``docs/pyg-compatibility.md``): the same
    constructor, inputs (``edge_index``, ``EdgeIndex``, torch.sparse or ``SparseTensor``
    ``adj_t`` whose values are the weights, static (B, |V|, F) features) and semantics. Hooks
    on ``message``/``aggregate``, ``decomposed_layers > 1``, explain mode, ``fuse = False``,
    ``torch.compile`` and TorchScript run PyG's plain path (transform, then per-edge
    messages), with the same result.

    NOTE: departures from the paper and from PyG's ``GCNConv``:

    - Self-loops follow PyG for each input form (see :mod:`gnnkit.nn._loops`): with
      ``edge_index``, an existing self-loop keeps its own weight and only nodes without one
      get :math:`\lambda`.
    - ``self_loop_weight`` generalises PyG's ``improved`` flag; ``improved=True`` is
      :math:`\lambda = 2` and giving both inconsistently is an error. PyG 2.8's
      ``improved=True`` adds loops of weight 2 only when ``edge_weight`` is given (its
      ``add_remaining_self_loops`` drops the fill value otherwise); gnnkit always does.
    - The graph's structure is reused between calls only while the graph is unchanged (PyG's
      ``cached=True`` reuses it blindly); a changed graph is rebuilt, never served stale.
    - ``x`` may be a sparse COO or CSR matrix (e.g. bag-of-words features with
      :func:`gnnkit.nn.sparse_dropout`); it is multiplied by :math:`W` without densifying
      (:func:`gnnkit.nn.sparse_linear`), whose structure the layer keeps, as the graph's.
    - An adjacency input carries the edge weights; passing ``edge_weight`` as well is an
      error (PyG ignores it).

    Args:
        in_channels (int): :math:`F_{in}`, the size of each input feature vector; -1 infers
            it from the first input (PyG's lazy initialisation).
        out_channels (int): :math:`F_{out}`, the size of each output feature vector.
        improved (bool, optional): PyG's flag for :math:`\lambda = 2`. (default: ``False``)
        cached (bool, optional): PyG's flag; gnnkit keeps what it can in any case. The graph
            structure (self-loops, CSR form) is kept while ``edge_index`` is unchanged (the
            same tensor unmodified, or equal contents), and the normalised weights while
            ``edge_weight`` is too: with ``cached=False`` while it is the same tensor,
            unmodified (or absent); with ``cached=True`` also for another tensor with equal
            contents. Weights from a learned :math:`\lambda` or an ``edge_weight`` that
            requires a gradient are recomputed on every call. A cache filled under
            ``torch.inference_mode()`` holds ordinary tensors and serves later training
            steps. (default: ``False``)
        add_self_loops (bool, optional): add self-loops before normalising; ``False`` with
            ``normalize=True`` normalises :math:`A` alone. (default: ``normalize``)
        normalize (bool, optional): ``False`` computes :math:`H' = A H W + b` with no
            self-loops and no normalisation (PyG's ``normalize=False``). (default: ``True``)
        bias (bool, optional): learn the additive bias :math:`b`. (default: ``True``)
        self_loop_weight (float, optional): :math:`\lambda > 0`, or its initial value when
            learned (keyword-only). (default: 2 with ``improved=True``, else 1)
        learn_self_loop_weight (bool, optional): learn :math:`\lambda` as
            :math:`\operatorname{softplus}(\rho)`, a positive function of the parameter
            ``raw_self_loop_weight`` (:math:`\rho`). (default: ``False``)
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
        **kwargs (optional): passed to :class:`torch_geometric.nn.conv.MessagePassing`
            (``aggr`` must stay ``"add"``; ``flow``, ``node_dim``, ``decomposed_layers``).

    Shapes:
        - **input:** node features ``x`` (|V|, F_in), dense or sparse COO/CSR, or (B, |V|,
          F_in) dense; ``edge_index`` (2, |E|) or an adjacency (|V|, |V|); ``edge_weight``
          (|E|,) *(optional)*
        - **output:** (|V|, F_out), or (B, |V|, F_out)

    Example:
        >>> conv = GCNConv(16, 32, improved=True)  # or self_loop_weight=2.0
        >>> out = conv(x, edge_index)  # (|V|, 32)
    """

    # PyG compiles propagate() from these types (for TorchScript as well).
    propagate_type = {"x": Tensor, "edge_weight": Optional[Tensor]}  # noqa: RUF012, UP045
    # Properties TorchScript must not compile (they return Python objects).
    __jit_unused_properties__ = ["self_loop_weight", "_cached_edge_index", "_cached_adj_t"]  # noqa: RUF012

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        improved: bool = False,
        cached: bool = False,
        add_self_loops: bool | None = None,
        normalize: bool = True,
        bias: bool = True,
        *,
        self_loop_weight: float | None = None,
        learn_self_loop_weight: bool = False,
        deterministic: bool | None = None,
        validate: bool = True,
        graph_cache: GraphCache | None = None,
        **kwargs: Any,
    ) -> None:
        check_kwargs("GCNConv", kwargs, _ACCEPTED)
        check_sum_aggregation("GCNConv", kwargs)
        super().__init__(**kwargs)
        check_channels(("in_channels",), in_channels=in_channels, out_channels=out_channels)
        if add_self_loops is None:
            add_self_loops = normalize
        check_options(
            deterministic,
            improved=improved,
            cached=cached,
            normalize=normalize,  # before add_self_loops, which defaults to it
            add_self_loops=add_self_loops,
            bias=bias,
            learn_self_loop_weight=learn_self_loop_weight,
            validate=validate,
        )
        if add_self_loops and not normalize:
            raise InputError(
                "'GCNConv' does not support adding self-loops to the graph when no on-the-fly "
                "normalization is applied; pass add_self_loops=False with normalize=False"
            )
        lam = _resolve_self_loop_weight(improved, self_loop_weight)
        if not add_self_loops and (learn_self_loop_weight or self_loop_weight is not None):
            raise InputError(
                "add_self_loops=False (or normalize=False) adds no self-loops, so "
                "self_loop_weight and learn_self_loop_weight have no effect; leave them unset"
            )

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.improved = improved
        self.cached = cached
        self.add_self_loops = add_self_loops
        self.normalize = normalize
        self.initial_self_loop_weight = _check_self_loop_weight(float(lam))
        self.learn_self_loop_weight = learn_self_loop_weight
        self.deterministic = deterministic
        self.validate = validate
        self._cache, self._feature_cache = layer_caches(graph_cache)
        self._fused_graph: CSRGraph | None = None

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
    def self_loop_weight(self) -> "float | Tensor":
        """:math:`\\lambda`: a float, or a 0-dim tensor with a gradient when learned."""
        if self.raw_self_loop_weight is None:
            return self.initial_self_loop_weight
        return F.softplus(self.raw_self_loop_weight)

    # -- forward ----------------------------------------------------------------------------

    def forward(self, x: Tensor, edge_index: Adj, edge_weight: OptTensor = None) -> Tensor:
        """Apply the convolution: ``x`` (|V|, F_in), sparse COO/CSR or a static (B, |V|, F_in)
        batch; ``edge_index`` (2, |E|), an ``EdgeIndex`` or ``adj_t``; ``edge_weight`` (|E|,)
        non-negative. Returns (|V|, F_out), or (B, |V|, F_out)."""
        if torch.jit.is_scripting():
            return self._forward_script(x, edge_index, edge_weight)
        return self._forward(x, edge_index, edge_weight)

    @torch.jit.unused
    def _forward(self, x: Tensor, edge_index: Adj, edge_weight: OptTensor) -> Tensor:
        x, graph, plain, structure, weights = self._checked_inputs(x, edge_index, edge_weight)
        if plain:  # PyG's order: transform, then message and aggregate
            out = self.propagate(
                graph.as_input(structure.edge_index), x=self._transform(x), edge_weight=weights
            )
            return out if self.bias is None else out + self.bias
        # Multiply by W first when that narrows the features (or x is sparse), so the SpMM
        # runs on min(F_in, F_out) channels.
        transform_first = x.layout != torch.strided or self.out_channels <= x.size(-1)
        if not transform_first:  # aggregated, then (..., N, F_out) with F.linear's bias
            out = self._fused_propagate(x, structure, weights)
            return dense_linear(out, self.lin.weight, self.bias)
        out = layer_node(self, GCNConv, x, structure.graph, weights)  # one autograd node
        if out is None:  # no graph to record, or a case one node does not serve
            out = self._fused_propagate(self._transform(x), structure, weights, self.bias)
        return out

    @torch.jit.unused
    def _checked_inputs(
        self, x: Tensor, edge_index: Adj, edge_weight: OptTensor
    ) -> "tuple[Tensor, GraphInput, bool, _Structure, Tensor]":
        """``forward``'s checks and graph preparation: the checked ``x``, the graph read from
        ``edge_index``, whether PyG's plain path runs, the structure and normalised weights
        (CSR order unless plain). :class:`gnnkit.models.GCN`'s fused step calls it too."""
        refuse_pair("GCNConv", x)
        graph = read_graph("GCNConv", edge_index, None, self.flow)
        x = check_features(self, x, self.lin, validate=self.validate, static=True)
        check_graph_device(self, graph.edge_index, x)  # x is on the parameters' device
        num_nodes = x.size(-2)
        edge_weight = square_graph_weights("GCNConv", graph, edge_weight, num_nodes)
        if edge_weight is not None and not isinstance(edge_weight, Tensor):
            check_edge_weight(edge_weight, graph.edge_index.size(1))  # raises, saying how to fix
        plain = uses_plain_path(self)
        structure, weights = prepare(self, graph, edge_weight, num_nodes, x.dtype, not plain)
        return x, graph, plain, structure, weights

    def _transform(self, x: Tensor) -> Tensor:
        cache = self._feature_cache if x.dim() == 2 else None  # a static batch is dense
        return linear(x, self.lin.weight, cache)

    def _fused_propagate(
        self, h: Tensor, structure: "_Structure", weights: Tensor, bias: OptTensor = None
    ) -> Tensor:
        """One SpMM on the cached CSR graph, plus ``bias`` (added by gnnkit's SpMM as it stores
        each row, else after); a static batch (B, N, F) runs as (N, B F)."""
        csr = structure.graph
        assert csr is not None
        batch = h.size(0) if h.dim() == 3 else 0
        if batch:
            h = h.transpose(0, 1).reshape(h.size(1), -1)  # (N, B F)
        if not runs_propagate(self, GCNConv):  # what propagate would run: the SpMM (+ bias)
            fused, bias = (None, bias) if batch else (bias, None)  # (N, B F): added after
            out = ops.spmm(csr, weights, h, bias=fused, deterministic=self.deterministic)
        else:  # PyG's propagate, for its hooks
            out = hooked_propagate(self, csr, h, weights)
        if batch:
            out = out.view(out.size(0), batch, -1).transpose(0, 1)  # (B, N, F)
        # Out of place under autograd: added in place to the SpMM's output (a view), autograd
        # would copy it through as_strided in the backward pass.
        grad = torch.is_grad_enabled()
        return out if bias is None else (out + bias if grad else out.add_(bias))

    def _forward_script(self, x: Tensor, edge_index: Adj, edge_weight: OptTensor) -> Tensor:
        """PyG's path for ``torch.jit.script``: an ``edge_index`` tensor input."""
        if not isinstance(edge_index, Tensor) or edge_index.layout != torch.strided:
            raise RuntimeError("a scripted gnnkit GCNConv takes an edge_index tensor")
        h = self.lin(x)
        if self.normalize:
            fill = torch.tensor(self.initial_self_loop_weight)
            raw = self.raw_self_loop_weight
            if raw is not None:
                fill = F.softplus(raw)
            edge_index, edge_weight = _script_gcn_norm(
                edge_index, edge_weight, x.size(-2), fill, self.add_self_loops, self.flow,
                h.dtype,
            )  # fmt: skip
        out = self.propagate(edge_index, x=h, edge_weight=edge_weight)
        bias = self.bias
        if bias is not None:
            out = out + bias
        return out

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def aggregate(
        self,
        inputs: Tensor,
        index: Tensor,
        ptr: OptTensor = None,
        dim_size: Optional[int] = None,  # noqa: UP045 (PyG reads these annotations)
    ) -> Tensor:
        if torch.jit.is_scripting() or inputs.dim() != 2:
            return self.aggr_module(inputs, index, ptr=ptr, dim_size=dim_size, dim=self.node_dim)
        return self._scatter(inputs, index, dim_size)

    @torch.jit.unused
    def _scatter(self, inputs: Tensor, index: Tensor, dim_size: int | None) -> Tensor:
        size = dim_size if dim_size is not None else int(index.max()) + 1 if index.numel() else 0
        return ops.scatter_sum(inputs, index, size, deterministic=self.deterministic)

    @torch.jit.unused
    def message_and_aggregate(self, adj_t: Adj, x: Tensor, edge_weight: OptTensor) -> Tensor:
        graph = self._fused_graph
        assert graph is not None, "message_and_aggregate serves the fused path only"
        return ops.spmm(graph, edge_weight, x, deterministic=self.deterministic)

    def __repr__(self) -> str:
        extras = []
        if self.learn_self_loop_weight:
            extras.append(f"learn_self_loop_weight=True, init {self.initial_self_loop_weight:g}")
        elif self.initial_self_loop_weight != (2.0 if self.improved else 1.0):
            extras.append(f"self_loop_weight={self.initial_self_loop_weight:g}")
        if self.deterministic is not None:
            extras.append(f"deterministic={self.deterministic}")
        if not self.validate:
            extras.append("validate=False")
        tail = "".join(f", {e}" for e in extras)
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}{tail})"
