"""Graph attention (Velickovic et al.) with a memory-lean sparse path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import glorot, zeros

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
from gnnkit.nn.functional import dropout
from gnnkit.ops.csr import CSRGraph, ordinary_tensors
from gnnkit.utils.checks import check_edge_index

__all__ = ["GATConv"]


@dataclass
class _Structure:
    edge_index: Tensor  # (2, E') edges attention runs on (self-loops replaced), PyG order
    graph: CSRGraph | None  # CSR form, one copy per head, interleaved (lean path only)


def _replace_self_loops(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Drop existing self-loops and append one per node (PyG's remove + add_self_loops)."""
    keep = edge_index[0] != edge_index[1]
    nodes = torch.arange(num_nodes, dtype=edge_index.dtype, device=edge_index.device)
    return torch.cat([edge_index[:, keep], torch.stack([nodes, nodes])], dim=1)


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
    :math:`a^{h\top}_{src} W^h x_j` and :math:`a^{h\top}_{dst} W^h x_i` (|V| x H each), so the
    layer computes |E| x H scores, takes the softmax over each node's incoming edges
    (:func:`gnnkit.ops.edge_softmax`) and aggregates as a weighted CSR matmul
    (:func:`gnnkit.ops.spmm`). All heads run as one graph of |V| H nodes, node :math:`(i, h)`
    numbered :math:`iH + h` (:meth:`gnnkit.ops.CSRGraph.interleave_heads`, built once per
    graph), so the (|V|, H, C) features of the linear map are its node features as they
    are, with no transpose to a head-major layout in either pass, and every kernel runs once
    for all heads. The two per-node products come from one (|V|, H C) x (H C, 2H) matmul.
    The backward is an SpMM on the transposed graph and one dot product per edge and head
    (SDDMM). No |E| x H x C tensor exists in either pass; PyG's
    ``GATConv`` builds several (the messages and their gradients). The layer falls back to
    PyG's plain ``message``/``aggregate`` path (per-edge messages, same result) only when the
    lean path cannot serve: in PyG's explain mode, which needs per-edge messages, and when the
    user sets ``layer.fuse = False``.

    NOTE: departures from PyG's ``GATConv``: bipartite inputs, ``edge_dim``/edge features,
    ``fill_value`` and ``residual`` are not supported; attention weights come from the
    separate method :meth:`attention` rather than a ``return_attention_weights`` flag that
    changes the return type; ``x`` may be a sparse COO or CSR matrix (multiplied by
    :math:`W` with :func:`gnnkit.nn.sparse_linear`, its structure cached in the layer).
    Self-loops are handled as PyG does: existing ones are removed and one loop per node is
    added. Attention dropout has ``F.dropout``'s distribution but, on CPU, draws its mask
    from another random stream (uniforms, not Bernoulli samples), so a seed drops other
    coefficients than PyG's layer would.

    Args:
        in_channels (int): :math:`F_{in}`, the size of each input feature vector.
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
        add_self_loops (bool, optional): replace existing self-loops by one per node, so
            every node attends to itself. (default: ``True``)
        bias (bool, optional): learn the additive bias :math:`b`. (default: ``True``)
        cached (bool, optional): keep the graph with self-loops and its CSR form between
            calls; rebuilt whenever ``edge_index`` differs from the cached one (different
            contents or an in-place change). A cache filled under ``torch.inference_mode()``
            holds ordinary tensors and serves later training steps. (default: ``False``)
        deterministic (bool, optional): bit-reproducible kernels for this layer (sorted
            segment reductions, no atomics); ``None`` follows
            :func:`gnnkit.ops.is_deterministic`. The plain path's backward also runs PyG's
            gather, which is atomic on CUDA unless ``torch.use_deterministic_algorithms(True)``
            is set as well. (default: ``None``)
        validate (bool, optional): check the inputs: dtypes and shapes at every call, node
            indices whenever the graph is (re)built, NaN in ``x`` at every call. ``False``
            skips the checks that read whole tensors. (default: ``True``)
        graph_cache (GraphCache, optional): the cache of ``cached=True``; layers given one
            :class:`~gnnkit.nn.GraphCache` share the structure built for a graph. (default:
            the layer's own)
        **kwargs (optional): passed to :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** node features ``x`` (|V|, F_in), dense or sparse COO/CSR;
          ``edge_index`` (2, |E|)
        - **output:** (|V|, H C) with ``concat=True``, else (|V|, C)

    Example:
        >>> conv = GATConv(16, 8, heads=8, dropout=0.6)
        >>> out = conv(x, edge_index)  # (|V|, 64)
        >>> loops_edge_index, alpha = conv.attention(x, edge_index)  # alpha: (|E'|, 8)
    """

    propagate_type: ClassVar[dict[str, Any]] = {"x": Tensor, "alpha": Tensor, "graph": Any}

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        add_self_loops: bool = True,
        bias: bool = True,
        cached: bool = False,
        deterministic: bool | None = None,
        validate: bool = True,
        graph_cache: GraphCache | None = None,
        **kwargs: Any,
    ) -> None:
        check_sum_aggregation("GATConv", kwargs)
        super().__init__(node_dim=0, **kwargs)
        check_channels(in_channels=in_channels, out_channels=out_channels, heads=heads)
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not (0.0 <= dropout < 1.0)
        ):
            raise InputError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
            raise InputError(f"negative_slope must be a number, got {negative_slope!r}")
        check_options(
            deterministic,
            concat=concat,
            add_self_loops=add_self_loops,
            bias=bias,
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
        self.cached = cached
        self.deterministic = deterministic
        self.validate = validate
        self._cache, self._feature_cache = layer_caches(graph_cache)

        self.lin = Linear(
            in_channels, heads * out_channels, bias=False, weight_initializer="glorot"
        )
        self.att_src = Parameter(torch.empty(1, heads, out_channels))
        self.att_dst = Parameter(torch.empty(1, heads, out_channels))
        if bias:
            self.bias = Parameter(torch.empty(heads * out_channels if concat else out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot weights and attention vectors, zero bias; clear the graph cache."""
        super().reset_parameters()
        self.lin.reset_parameters()
        glorot(self.att_src)
        glorot(self.att_dst)
        zeros(self.bias)
        self.clear_cache()

    def clear_cache(self) -> None:
        """Forget the cached graph structure and feature structure; the next call rebuilds them."""
        self._cache.clear()
        self._feature_cache.clear()

    # -- graph preparation ------------------------------------------------------------------

    def _build(self, edge_index: Tensor, num_nodes: int, lean: bool) -> _Structure:
        if self.validate:
            check_edge_index(edge_index, num_nodes)
        ei = _replace_self_loops(edge_index, num_nodes) if self.add_self_loops else edge_index
        graph = None
        if lean:  # node (i, h) is i * H + h: (|V|, H, C) features are (|V| H, C) as they are
            graph = CSRGraph.from_edge_index(ei, num_nodes).interleave_heads(self.heads)
            if torch.is_grad_enabled():  # the backward needs the transpose: build it before
                graph.transpose()  # the activations exist, not on top of them
        return _Structure(ei, graph)

    def _structure(self, edge_index: Tensor, num_nodes: int, lean: bool) -> _Structure:
        if not self.cached:
            return self._build(edge_index, num_nodes, lean)
        extra = (num_nodes, lean, self.add_self_loops)
        entry = self._cache.lookup((edge_index,), extra)
        if entry is None:
            with ordinary_tensors():  # reusable by training even if built under inference_mode
                entry = self._build(edge_index, num_nodes, lean)
            self._cache.store((edge_index,), extra, entry)
        return entry

    def _scores(self, x: Tensor, edge_index: Tensor, lean: bool):
        """Transformed features, graph structure and softmax-normalised attention.

        Lean path: features (|V|, H C) and attention (|E'| H,), one entry per edge of the
        head-interleaved graph, in its CSR order. Plain path: features (|V|, H, C) and
        attention (|E'|, H), edges in ``structure.edge_index`` order (PyG's layout).
        """
        num_nodes = check_inputs(self, x, edge_index, validate=self.validate)
        H, C = self.heads, self.out_channels
        structure = self._structure(edge_index, num_nodes, lean)
        if lean:
            graph = structure.graph  # heads interleaved: node (i, h) is i * H + h
            xw = linear(x, self.lin.weight, self._feature_cache)  # (N, H C) = (N H, C)
            # a_src[j, h] = <att_src[h], W_h x_j>: both attention products of every head in
            # one matmul with A, the (H C, 2H) block-diagonal matrix holding the vectors,
            # on whichever side is narrower: (x W^T) A, or x (W^T A) for dense x with fewer
            # input than output channels. The latter reads x once more but leaves xw with a
            # single consumer, so its backward adds no (|V|, H C) gradient.
            attention = self._attention_matrix()  # (H C, 2H)
            if x.layout == torch.strided and x.size(1) < H * C:
                logits = x @ (self.lin.weight.t() @ attention)  # (N, 2H)
            else:
                logits = xw @ attention  # (N, 2H)
            a_src, a_dst = (part.reshape(-1) for part in logits.split(H, dim=1))  # (N H,) each
            scores = ops.gather_src(graph, a_src) + ops.gather_dst(graph, a_dst)
            scores = F.leaky_relu(scores, self.negative_slope)  # (E' H,)
            return xw, structure, ops.edge_softmax(graph, scores)
        xw = linear(x, self.lin.weight, self._feature_cache).view(num_nodes, H, C)
        a_src = (xw * self.att_src).sum(-1)  # (N, H)
        a_dst = (xw * self.att_dst).sum(-1)  # (N, H)
        src, dst = structure.edge_index[0], structure.edge_index[1]
        scores = F.leaky_relu(a_src[src] + a_dst[dst], self.negative_slope)  # (E', H)
        alpha = ops.scatter_softmax(scores, dst, num_nodes, deterministic=self.deterministic)
        return xw, structure, alpha

    def _attention_matrix(self) -> Tensor:
        """(H C, 2H) block-diagonal: ``xw @ it`` is ``[a_src | a_dst]``, (|V|, 2H)."""
        H, C = self.heads, self.out_channels
        att = torch.cat([self.att_src, self.att_dst])  # (2, H, C)
        eye = torch.eye(H, dtype=att.dtype, device=att.device)
        # blocks[h, c, s, k] = att[s, h, c] if k == h else 0
        blocks = att.permute(1, 2, 0).unsqueeze(-1) * eye.view(H, 1, 1, H)  # (H, C, 2, H)
        return blocks.reshape(H * C, 2 * H)

    # -- forward ----------------------------------------------------------------------------

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Apply the attention layer.

        Args:
            x (Tensor): node features (|V|, F_in), dense or sparse COO/CSR.
            edge_index (Tensor): (2, |E|) edges, row 0 sources, row 1 targets.

        Returns:
            Tensor: (|V|, H C) with ``concat=True``, else (|V|, C).
        """
        lean = bool(self.fuse) and not self.explain
        xw, structure, alpha = self._scores(x, edge_index, lean)
        # F.dropout's semantics (keep with 1 - p, scale by 1 / (1 - p)); a faster draw on CPU.
        alpha = dropout(alpha, self.dropout, self.training)  # (E' H,) or (E', H)
        if lean:
            graph = structure.graph
            adj_t = graph.to_sparse_csr(alpha.detach())  # (N H, N H)
            xw = xw.view(-1, self.out_channels)  # (N H, C), no copy
            out = self.propagate(adj_t, x=xw, alpha=alpha, graph=graph)  # (N H, C)
            out = out.view(-1, self.heads, self.out_channels)  # (N, H, C), no copy
        else:
            out = self.propagate(structure.edge_index, x=xw, alpha=alpha, graph=None)  # (N, H, C)
        if self.concat:
            out = out.reshape(-1, self.heads * self.out_channels)  # (N, H C)
        else:
            out = out.view(-1, self.out_channels) if self.heads == 1 else out.mean(1)  # (N, C)
        if self.bias is not None:
            # Not in place: `out` may be a view of the aggregation's output, and an in-place
            # add on a view makes autograd copy the whole gradient in the backward pass.
            out = out + self.bias
        return out

    @torch.no_grad()
    def attention(self, x: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        r"""The attention coefficients :math:`\alpha^h_{j \to i}` the layer would use.

        Computed without attention dropout and without gradients (for inspection and
        plotting). Every node's coefficients sum to 1 per head.

        Args:
            x (Tensor): node features (|V|, F_in).
            edge_index (Tensor): (2, |E|) edges.

        Returns:
            (Tensor, Tensor): the edges attention runs on, (2, |E'|) — with
            ``add_self_loops=True`` the input's non-loop edges in input order, then one loop
            per node, as PyG's ``return_attention_weights`` — and the coefficients (|E'|, H)
            in the same order.
        """
        lean = bool(self.fuse) and not self.explain
        _, structure, alpha = self._scores(x, edge_index, lean)
        if lean:  # (E' H,) in CSR order -> (E', H) in edge_index order
            ordered = torch.empty_like(alpha)
            ordered[structure.graph.perm] = alpha
            alpha = ordered.view(-1, self.heads)
        return structure.edge_index, alpha

    def message(self, x_j: Tensor, alpha: Tensor) -> Tensor:
        return alpha.unsqueeze(-1) * x_j  # (E', H, C)

    def aggregate(self, inputs: Tensor, index: Tensor, dim_size: int | None = None) -> Tensor:
        return ops.scatter_sum(inputs, index, dim_size, deterministic=self.deterministic)

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor, alpha: Tensor, graph: Any) -> Tensor:
        # Lean path: one graph for all heads, interleaved: alpha (E' H,), x (N H, C) -> (N H, C).
        return ops.spmm(graph, alpha, x, deterministic=self.deterministic)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, heads={self.heads}, concat={self.concat}, "
            f"negative_slope={self.negative_slope:g}, dropout={self.dropout:g}, "
            f"add_self_loops={self.add_self_loops}, cached={self.cached}, "
            f"bias={self.bias is not None}"
        )

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.extra_repr()})"
