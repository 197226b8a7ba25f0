"""Graph attention (Velickovic et al.) with a memory-lean sparse path.

:class:`GATConv` is a drop-in replacement for PyG's ``GATConv``: the same constructor
(positional order and defaults), inputs, outputs and ``MessagePassing`` semantics, with
gnnkit's extras keyword-only. This module has no ``from __future__ import annotations``: PyG's
inspector reads the annotations of ``message`` and ``aggregate``.
"""

from typing import Any, Optional

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import glorot, zeros
from torch_geometric.typing import Adj, OptTensor

from gnnkit import ops
from gnnkit.nn._adjacency import GraphInput, attention_adjacency, read_graph
from gnnkit.nn._cache import GraphCache
from gnnkit.nn._common import (
    check_graph_device,
    check_kwargs,
    check_options,
    check_sum_aggregation,
    layer_caches,
    linear,
    uses_plain_path,
)
from gnnkit.nn._gat_attend import attend, edge_order, fused_attend, uses_fused_kernel
from gnnkit.nn._gat_inputs import (
    ACCEPTED,
    Structure,
    build_structure,
    check_arguments,
    edge_scores,
    read_sides,
    sizes,
)
from gnnkit.nn.functional import dropout
from gnnkit.ops.csr import CSRGraph, ordinary_tensors
from gnnkit.ops.linear import add_bias_

__all__ = ["GATConv"]


class GATConv(MessagePassing):
    r"""The graph attention layer of `"Graph Attention Networks"
    <https://arxiv.org/abs/1710.10903>`_ (Velickovic et al., ICLR 2018, arXiv 1710.10903).

    For each head :math:`h = 1..H`, with :math:`W^h` the rows of ``lin.weight`` for that head
    and :math:`a^h_{src}, a^h_{dst}` the vectors ``att_src[0, h]``, ``att_dst[0, h]``:

    .. math::
        e^h_{j \to i} = \operatorname{LeakyReLU}\big( a^{h\top}_{src} W^h x_j +
        a^{h\top}_{dst} W^h x_i \big), \qquad
        \alpha^h_{j \to i} = \frac{\exp e^h_{j \to i}}{\sum_{k \to i} \exp e^h_{k \to i}}

    .. math::
        x'_i = \mathop{\Big\Vert}_{h=1}^{H} \sum_{j \to i} \alpha^h_{j \to i} W^h x_j + b
        \quad \text{(concat)}, \qquad
        x'_i = \frac{1}{H} \sum_{h=1}^{H} \sum_{j \to i} \alpha^h_{j \to i} W^h x_j + b
        \quad \text{(mean)}

    where :math:`j \to i` runs over the edges into :math:`i` (``edge_index[0]`` sends to
    ``edge_index[1]``) including the self-loop :math:`i \to i`. In matrix form, per head,
    :math:`X'^h = \operatorname{softmax}_{\text{rows}}(M \odot E^h) X W^h` with
    :math:`E^h_{ij} = e^h_{j \to i}` and :math:`M` the adjacency mask with self-loops
    (the softmax runs over each row's edges only). The paper's score
    :math:`a^\top [W x_i \Vert W x_j]` is the same thing with :math:`a = [a_{dst} \Vert a_{src}]`.

    Memory-lean path (the default): the scores need only the per-node products
    :math:`a^{h\top}_{src} W^h x_j` and :math:`a^{h\top}_{dst} W^h x_i` (|V| x H each, from one
    (|V|, H C) x (H C, 2H) matmul). Where a fused kernel serves the device and dtype (float32
    and float64: numba on CPU, Triton on CUDA), the rest runs in one pass over the CSR graph,
    :func:`gnnkit.ops.fused_gat`: per receiver, the edge scores, leaky ReLU, softmax over its
    incoming edges, attention dropout and the weighted sum of its senders' features, and a
    backward of one pass over receivers and one over senders (the FusedMM / dgNN approach).
    Otherwise the layer computes |E| x H scores, takes the softmax over each node's incoming
    edges (:func:`gnnkit.ops.edge_softmax`) and aggregates as a weighted CSR matmul
    (:func:`gnnkit.ops.spmm`) on a graph of |V| H nodes, node :math:`(i, h)` numbered
    :math:`iH + h` (:meth:`gnnkit.ops.CSRGraph.interleave_heads`), so every kernel runs once for
    all heads. Either way the CSR structure (and the transpose the backward needs) is built
    once per graph, and no |E| x H x C tensor exists in either pass; PyG's ``GATConv`` builds
    several (the messages and their gradients). The layer falls back to PyG's plain
    ``message``/``aggregate`` path (per-edge messages, same result) only when the lean path
    cannot serve: in PyG's explain mode, which needs per-edge messages, and when the user sets
    ``layer.fuse = False``. ``GNNKIT_FUSED_GAT=0`` in the environment (read at every call)
    turns the fused kernel off.

    NOTE: the CPU kernel is compiled by numba on its first call (tens of seconds, once per
    dtype), then loaded from numba's on-disk cache; ``GNNKIT_JIT=0``, or numba missing, gives
    the unfused lean path. The fused kernel sums in another order than the unfused path, and
    draws the attention-dropout mask as (|E'|, H) in CSR order, so a seed drops other
    coefficients than the unfused path did: results agree to float rounding, training runs
    differ. Coefficients requested with ``return_attention_weights`` while gradients are
    recorded (the kernel's carry none) are computed beside the kernel by PyG's per-edge
    softmax, so that the output is the same as without them; while attention dropout is
    active (training, ``dropout > 0``) such a call takes the unfused path instead, whose
    coefficients are the dropped-out ones it aggregates with.

    The layer is a drop-in replacement for PyG's ``GATConv`` (see
    ``docs/pyg-compatibility.md``): bipartite ``(x_src, x_dst)`` input with separate weights
    for ``(in_src, in_dst)`` channels, ``size=``, edge features (``edge_dim``, with
    ``fill_value`` for the self-loops' features), ``residual``, ``return_attention_weights``,
    and ``edge_index`` as a tensor, ``EdgeIndex``, torch.sparse or ``SparseTensor``
    adjacency. With edge features the score adds
    :math:`a^{h\top}_{edge} W^h_{edge} e_{j,i}` (PyG's form).

    NOTE: departures from PyG's ``GATConv``: ``x`` may be a sparse COO or CSR matrix
    (multiplied by :math:`W` with :func:`gnnkit.nn.sparse_linear`, its structure cached in the
    layer). Attention dropout has ``F.dropout``'s distribution but, on CPU, draws its mask
    from another random stream (uniforms, not Bernoulli samples), so a seed drops other
    coefficients than PyG's layer would. TorchScript is not supported (PyG's ``GATConv``
    scripts only with its own plain path); :meth:`attention` gives the coefficients without
    dropout, as a convenience beside ``return_attention_weights``.

    Args:
        in_channels (int or tuple): :math:`F_{in}`, the size of each input feature vector;
            a pair ``(F_src, F_dst)`` gives source and target nodes their own weights
            (``lin_src``, ``lin_dst``); -1 infers a size from the first input.
        out_channels (int): :math:`C`, the size of each head's output.
        heads (int, optional): :math:`H`, the number of attention heads. (default: ``1``)
        concat (bool, optional): concatenate the heads (output :math:`H C`); ``False``
            averages them (output :math:`C`), as the paper's last layer. (default: ``True``)
        negative_slope (float, optional): LeakyReLU slope for negative scores.
            (default: ``0.2``)
        dropout (float, optional): dropout probability on the normalised attention
            coefficients during training: each coefficient is zeroed with probability
            :math:`p` and the others are scaled by :math:`1 / (1 - p)`, as ``F.dropout``
            does (on CPU the mask is drawn by :func:`gnnkit.nn.functional.dropout`, same
            distribution, faster). (default: ``0.0``)
        add_self_loops (bool, optional): replace existing self-loops by one per node (per
            node present on both sides of a bipartite graph), so every node attends to
            itself. (default: ``True``)
        edge_dim (int, optional): the size of edge features ``edge_attr``; ``None`` ignores
            them, as PyG does. (default: ``None``)
        fill_value (float, Tensor or str, optional): the features of the added self-loops:
            a value, or ``"mean"``, ``"add"``, ``"max"``, ``"min"``, ``"mul"`` of the features
            of the edges into the node (PyG's ``add_self_loops``). (default: ``"mean"``)
        bias (bool, optional): learn the additive bias :math:`b`. (default: ``True``)
        residual (bool, optional): add a learned linear map of the target nodes' input
            features (``res``) to the output. (default: ``False``)
        cached (bool, optional): kept for compatibility with earlier gnnkit versions (keyword
            only): every layer keeps the graph with self-loops and its CSR form between calls,
            reused while ``edge_index`` is unchanged (the same tensor unmodified, or equal
            contents) and rebuilt otherwise. A structure built under
            ``torch.inference_mode()`` holds ordinary tensors and serves later training
            steps. (default: ``False``)
        deterministic (bool, optional): bit-reproducible kernels for this layer (sorted
            segment reductions, no atomics); ``None`` follows
            :func:`gnnkit.ops.is_deterministic`. (default: ``None``)
        validate (bool, optional): check the inputs: dtypes and shapes at every call, node
            indices whenever the graph is (re)built, NaN in ``x`` at every call. ``False``
            skips the checks that read whole tensors. (default: ``True``)
        graph_cache (GraphCache, optional): the cache of ``cached=True``; layers given one
            :class:`~gnnkit.nn.GraphCache` share the structure built for a graph. (default:
            the layer's own)
        **kwargs (optional): passed to :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** node features ``x`` (|V|, F_in), dense or sparse COO/CSR, or a pair
          ((|V_src|, F_src), (|V_dst|, F_dst) or ``None``); ``edge_index`` (2, |E|) or an
          adjacency (|V_dst|, |V_src|); ``edge_attr`` (|E|, D) *(optional)*
        - **output:** (|V_dst|, H C) with ``concat=True``, else (|V_dst|, C); with
          ``return_attention_weights`` also the edges with self-loops and
          :math:`\alpha` (|E'|, H), in PyG's form for the input

    Example:
        >>> conv = GATConv(16, 8, heads=8, dropout=0.6)
        >>> out = conv(x, edge_index)  # (|V|, 64)
        >>> loops_edge_index, alpha = conv.attention(x, edge_index)  # alpha: (|E'|, 8)
    """

    # PyG reads these types when it generates propagate().
    propagate_type = {"x": Tensor, "alpha": Tensor}  # noqa: RUF012

    def __init__(
        self,
        in_channels: "int | tuple[int, int]",
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        add_self_loops: bool = True,
        edge_dim: "int | None" = None,
        fill_value: "float | Tensor | str" = "mean",
        bias: bool = True,
        residual: bool = False,
        *,
        cached: bool = False,
        deterministic: "bool | None" = None,
        validate: bool = True,
        graph_cache: "GraphCache | None" = None,
        **kwargs: Any,
    ) -> None:
        check_kwargs("GATConv", kwargs, ACCEPTED)
        check_sum_aggregation("GATConv", kwargs)
        super().__init__(node_dim=0, **kwargs)
        in_channels = check_arguments(
            in_channels, out_channels, heads, dropout, negative_slope, edge_dim, fill_value
        )
        check_options(
            deterministic,
            concat=concat,
            add_self_loops=add_self_loops,
            bias=bias,
            residual=residual,
            cached=cached,
            validate=validate,
        )

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.concat = concat
        self.negative_slope = float(negative_slope)
        self.dropout = float(dropout)
        self.add_self_loops = add_self_loops
        self.edge_dim = edge_dim
        self.fill_value = fill_value
        self.residual = residual
        self.cached = cached
        self.deterministic = deterministic
        self.validate = validate
        self._cache, self._feature_cache = layer_caches(graph_cache)
        self._fused_graph: CSRGraph | None = None  # set during a lean call

        # Bipartite channels (F_src, F_dst): source and target nodes get their own weights.
        self.lin = self.lin_src = self.lin_dst = None
        if isinstance(in_channels, tuple):
            self.lin_src = Linear(in_channels[0], heads * out_channels, False, "glorot")
            self.lin_dst = Linear(in_channels[1], heads * out_channels, False, "glorot")
        else:
            self.lin = Linear(in_channels, heads * out_channels, False, "glorot")
        self.att_src = Parameter(torch.empty(1, heads, out_channels))
        self.att_dst = Parameter(torch.empty(1, heads, out_channels))
        if edge_dim is not None:
            self.lin_edge = Linear(edge_dim, heads * out_channels, False, "glorot")
            self.att_edge = Parameter(torch.empty(1, heads, out_channels))
        else:
            self.lin_edge = None
            self.register_parameter("att_edge", None)
        total_out = out_channels * (heads if concat else 1)
        if residual:
            res_in = in_channels[1] if isinstance(in_channels, tuple) else in_channels
            self.res = Linear(res_in, total_out, bias=False, weight_initializer="glorot")
        else:
            self.register_parameter("res", None)
        if bias:
            self.bias = Parameter(torch.empty(total_out))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot weights and attention vectors, zero bias; clear the graph cache."""
        super().reset_parameters()
        for lin in (self.lin, self.lin_src, self.lin_dst, self.lin_edge, self.res):
            if lin is not None:
                lin.reset_parameters()
        glorot(self.att_src)
        glorot(self.att_dst)
        glorot(self.att_edge)
        zeros(self.bias)
        self.clear_cache()

    def clear_cache(self) -> None:
        """Forget the cached graph structure and feature structure; the next call rebuilds them."""
        self._cache.clear()
        self._feature_cache.clear()

    # -- inputs and graph preparation -------------------------------------------------------

    def _structure(
        self, graph: GraphInput, num_src: int, num_dst: int, lean: bool, fused: bool
    ) -> Structure:
        """The graph's structure, kept between calls while ``edge_index`` is unchanged."""
        heads = self.heads if lean and not fused else 0  # the lean CSR form interleaves heads
        extra = (num_src, num_dst, lean, fused, self.add_self_loops, heads)
        entry = self._cache.lookup((graph.edge_index,), extra)
        if entry is None:
            with ordinary_tensors():  # reusable by training even if built under inference_mode
                entry = build_structure(self, graph, num_src, num_dst, lean, fused)
            self._cache.store((graph.edge_index,), extra, entry)
        return entry

    # -- inputs and attention ------------------------------------------------------------

    def _read(self, x: Any, edge_index: Any, size: Any):
        """The graph, the two sides, (|V_src|, |V_dst|) and whether the lean path serves."""
        graph = read_graph("GATConv", edge_index, size, self.flow)
        sides = read_sides(self, x, graph)
        check_graph_device(self, graph.edge_index, sides.x_src)
        return graph, sides, sizes(sides, graph), not uses_plain_path(self)

    def _aggregate_unfused(
        self, structure: Structure, xw: Tensor, alpha: Tensor, lean: bool, size: "tuple[int, int]"
    ) -> Tensor:
        """PyG's propagate: a CSR matmul on the head-interleaved graph (lean) or per-edge
        messages (plain). Returns (N_d, H, C)."""
        H, C = self.heads, self.out_channels
        # The structure is already oriented (senders in row 0), so PyG's propagate runs it
        # with the default flow whatever the layer's flow is.
        flow: str = self.flow  # type: ignore[has-type]
        self.flow = "source_to_target"
        try:
            if lean:
                csr = self._fused_graph = structure.graph
                assert csr is not None  # the lean path builds it
                adj_t = csr.to_sparse_csr(alpha.detach())  # (N_d H, N_s H)
                out = self.propagate(adj_t, x=xw.view(-1, C), alpha=alpha)  # (N_d H, C)
                return out.view(-1, H, C)  # (N_d, H, C), no copy
            return self.propagate(structure.edge_index, x=xw, alpha=alpha, size=size)
        finally:
            self.flow, self._fused_graph = flow, None

    # -- forward ----------------------------------------------------------------------------

    def forward(
        self,
        x: "Tensor | tuple[Tensor, Tensor | None]",
        edge_index: Adj,
        edge_attr: OptTensor = None,
        size: "tuple[int, int] | None" = None,
        return_attention_weights: "bool | None" = None,
    ) -> Any:
        """Apply the attention layer.

        Args:
            x (Tensor or (Tensor, Tensor or None)): node features (|V|, F_in), dense or sparse
                COO/CSR, or a pair of source and target node features.
            edge_index (Tensor, EdgeIndex, torch.sparse or SparseTensor): (2, |E|) edges (row
                0 sources, row 1 targets), or the transposed adjacency ``adj_t``.
            edge_attr (Tensor, optional): (|E|, edge_dim) edge features. (default: ``None``)
            size ((int, int), optional): (|V_src|, |V_dst|). (default: from ``x``)
            return_attention_weights (bool, optional): also return the attention
                coefficients after dropout, in PyG's form: ``(edge_index, alpha)`` with
                ``alpha`` (|E'|, H); for a torch.sparse input ``(adj, alpha)`` with ``adj``
                holding ``alpha``; for a ``SparseTensor`` one holding ``alpha``.
                (default: ``None``)

        Returns:
            Tensor: (|V_dst|, H C) with ``concat=True``, else (|V_dst|, C); or
            ``(out, attention)`` with ``return_attention_weights=True``.
        """
        graph, sides, (num_src, num_dst), lean = self._read(x, edge_index, size)
        fused = uses_fused_kernel(self, sides, lean, bool(return_attention_weights))
        # Under torch.compile, no cache (a lookup reads tensor addresses) and built here, not
        # in a helper: the self-loop removal breaks the graph once per frame on the stack, so
        # it sits as shallow as in PyG's layer.
        structure = (
            build_structure(self, graph, num_src, num_dst, lean)
            if torch.compiler.is_compiling()
            else self._structure(graph, num_src, num_dst, lean, fused)
        )
        scores = edge_scores(self, graph, edge_attr, structure.num_loops)
        H, C = self.heads, self.out_channels
        if fused:  # scores, softmax, dropout and aggregation in one kernel: (N_d, H, C)
            out, alpha = fused_attend(
                self, sides, structure, scores, self.training, bool(return_attention_weights)
            )
        else:
            xw, alpha = attend(self, sides, structure, scores, lean, num_dst)
            # F.dropout's semantics (keep with 1 - p, scale by 1 / (1 - p)); a faster draw on CPU.
            alpha = dropout(alpha, self.dropout, self.training)  # (E' H,) or (E', H)
            out = self._aggregate_unfused(structure, xw, alpha, lean, (num_src, num_dst))
        residual = self.res is not None and sides.residual_input is not None
        bias_in_place = fused and self.bias is not None and (self.concat or H == 1) and not residual
        if bias_in_place:
            # On the kernel's own (N_d, H, C) output, which nothing saved for the backward pass:
            # the same sums (so the same bits) without a second output of that size.
            out = add_bias_(out, self.bias.view(H, C))
        # (N_d, H C), or (N_d, C) averaged over heads (one head: a view, no copy)
        out = out.reshape(-1, H * C) if self.concat or H == 1 else out.mean(1)
        if residual:
            out = out + linear(sides.residual_input, self.res.weight)
        if self.bias is not None and not bias_in_place:
            # Not in place: `out` may be a view of the aggregation's output, and an in-place
            # add on a view makes autograd copy the whole gradient in the backward pass.
            out = out + self.bias
        if return_attention_weights:
            assert alpha is not None  # asked for
            alpha = edge_order(self, structure, alpha, lean)
            return out, attention_adjacency(graph, structure.edge_index, alpha, num_src, num_dst)
        return out

    @torch.no_grad()
    def attention(
        self,
        x: "Tensor | tuple[Tensor, Tensor | None]",
        edge_index: Adj,
        edge_attr: OptTensor = None,
        size: "tuple[int, int] | None" = None,
    ) -> "tuple[Tensor, Tensor]":
        r"""The attention coefficients :math:`\alpha^h_{j \to i}` the layer would use.

        Computed without attention dropout and without gradients (for inspection and
        plotting). Every node's coefficients sum to 1 per head.

        Returns:
            (Tensor, Tensor): the edges attention runs on, (2, |E'|) in the input's
            orientation — with ``add_self_loops=True`` the input's non-loop edges in input
            order, then one loop per node, as PyG's ``return_attention_weights`` — and the
            coefficients (|E'|, H) in the same order.
        """
        graph, sides, (num_src, num_dst), lean = self._read(x, edge_index, size)
        fused = uses_fused_kernel(self, sides, lean, True)
        structure = self._structure(graph, num_src, num_dst, lean, fused)
        scores = edge_scores(self, graph, edge_attr, structure.num_loops)
        if fused:
            _, alpha = fused_attend(self, sides, structure, scores, False, True)
        else:
            _, alpha = attend(self, sides, structure, scores, lean, num_dst)
        assert alpha is not None
        return graph.as_input(structure.edge_index), edge_order(self, structure, alpha, lean)

    def message(self, x_j: Tensor, alpha: Tensor) -> Tensor:
        return alpha.unsqueeze(-1) * x_j  # (E', H, C)

    def aggregate(
        self,
        inputs: Tensor,
        index: Tensor,
        ptr: OptTensor = None,
        dim_size: Optional[int] = None,  # noqa: UP045 (PyG reads these annotations)
    ) -> Tensor:
        size = dim_size if dim_size is not None else int(index.max()) + 1 if index.numel() else 0
        return ops.scatter_sum(inputs, index, size, deterministic=self.deterministic)

    def message_and_aggregate(self, adj_t: Adj, x: Tensor, alpha: Tensor) -> Tensor:
        # Lean path: one graph for all heads, interleaved: alpha (E' H,), x (N H, C) -> (N H, C).
        graph = self._fused_graph
        assert graph is not None, "message_and_aggregate serves the lean path only"
        return ops.spmm(graph, alpha, x, deterministic=self.deterministic)

    def __repr__(self) -> str:
        extras = [f"heads={self.heads}"]
        if self.cached:
            extras.append("cached=True")
        if self.deterministic is not None:
            extras.append(f"deterministic={self.deterministic}")
        if not self.validate:
            extras.append("validate=False")
        return (
            f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
            f"{', '.join(extras)})"
        )
