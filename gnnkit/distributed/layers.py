"""Partition-parallel GCN and GAT layers and the two-layer models built from them.

Each layer transforms its own nodes' features, fetches the transformed halo rows
(:meth:`~gnnkit.distributed.PartitionGraph.with_halo`, one all-to-all, sending
:math:`F_{out}` rather than :math:`F_{in}` columns) and aggregates over the local CSR with
gnnkit's kernels (:func:`gnnkit.ops.spmm`, :func:`gnnkit.ops.edge_softmax`). Parameters have
the names and shapes of :class:`gnnkit.nn.GCNConv` / :class:`gnnkit.nn.GATConv`
(``lin.weight``, ``bias``, ``att_src``, ``att_dst``), so a state dict moves between them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.distributed.dropout import attention_dropout, node_dropout
from gnnkit.distributed.halo import PartitionGraph
from gnnkit.errors import InputError
from gnnkit.ops import edge_softmax, gather_dst, gather_src, spmm
from gnnkit.utils.checks import check_ints

__all__ = ["PartitionGAT", "PartitionGATConv", "PartitionGCN", "PartitionGCNConv"]


class PartitionGCNConv(nn.Module):
    r"""The graph convolution of Kipf & Welling ("Semi-Supervised Classification with Graph
    Convolutional Networks", arXiv 1609.02907) on one part of a partitioned graph.

    .. math::
        X' = \hat D^{-1/2} (A + I) \hat D^{-1/2} X W + b, \qquad
        x'_i = \sum_{j \in \mathcal N(i) \cup \{i\}} \frac{1}{\sqrt{\hat d_i \hat d_j}}
        W^\top x_j + b

    with :math:`\hat d_i` node :math:`i`'s **global** in-degree plus one. Row :math:`i` runs
    on the rank that owns :math:`i`; the :math:`W^\top x_j` of halo senders come from their owners.

    Args:
        in_channels (int): F_in.
        out_channels (int): F_out.

    Shapes:
        - **input:** ``x`` (|V_local|, F_in)
        - **output:** (|V_local|, F_out)
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        check_ints(in_channels=in_channels, out_channels=out_channels)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.lin = nn.Linear(in_channels, out_channels, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.lin.weight)
        nn.init.zeros_(self.bias)

    def forward(
        self, x: Tensor, graph: PartitionGraph, *, seed: int = 0, step: int = 0, layer: int = 0
    ) -> Tensor:
        """``seed``, ``step`` and ``layer`` are unused (no randomness), taken so that a model
        calls GCN and GAT layers alike."""
        h = graph.with_halo(self.lin(x))  # (|V_local| + |V_halo|, F_out)
        return spmm(graph.csr, graph.gcn_weight.to(h.dtype), h) + self.bias

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"


class PartitionGATConv(nn.Module):
    r"""The graph attention layer of Veličković et al. ("Graph Attention Networks", arXiv
    1710.10903) on one part of a partitioned graph.

    .. math::
        \alpha_{ij} = \mathrm{softmax}_{j \in \mathcal N(i) \cup \{i\}}
        \mathrm{LeakyReLU}(a_s^\top W x_j + a_d^\top W x_i), \qquad
        x'_i = \big\Vert_{h=1}^{H} \sum_j \alpha^h_{ij} W^h x_j + b

    (heads concatenated, or averaged with ``concat=False``). The softmax runs over node
    :math:`i`'s in-edges, all of which its owner holds once the halo's :math:`W x_j` arrived.

    NOTE: attention dropout (probability ``dropout``, on :math:`\alpha` after the softmax, as
    in the paper and PyG) draws its mask from the global edge id and the head
    (:func:`gnnkit.distributed.attention_dropout`), not from a generator, so every number of
    parts drops the same coefficients; ``seed``, ``step`` and ``layer`` of :meth:`forward`
    pick the mask.

    Args:
        in_channels (int): F_in.
        out_channels (int): C, channels per head.
        heads (int, optional): H. (default: ``1``)
        concat (bool, optional): concatenate the heads, else average them. (default: ``True``)
        negative_slope (float, optional): of the LeakyReLU. (default: ``0.2``)
        dropout (float, optional): attention dropout, in [0, 1). (default: ``0.0``)

    Shapes:
        - **input:** ``x`` (|V_local|, F_in)
        - **output:** (|V_local|, H C) with ``concat``, else (|V_local|, C)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_ints(in_channels=in_channels, out_channels=out_channels, heads=heads)
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"attention dropout must be in [0, 1), got {dropout}")
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.concat, self.negative_slope, self.dropout = concat, negative_slope, dropout
        self.lin = nn.Linear(in_channels, heads * out_channels, bias=False)
        self.att_src = nn.Parameter(torch.zeros(1, heads, out_channels))
        self.att_dst = nn.Parameter(torch.zeros(1, heads, out_channels))
        self.bias = nn.Parameter(torch.zeros(heads * out_channels if concat else out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.lin.weight)
        nn.init.xavier_uniform_(self.att_src)
        nn.init.xavier_uniform_(self.att_dst)
        nn.init.zeros_(self.bias)

    def forward(
        self, x: Tensor, graph: PartitionGraph, *, seed: int = 0, step: int = 0, layer: int = 0
    ) -> Tensor:
        """Outputs of the local nodes; ``seed``, ``step`` and ``layer`` key attention dropout."""
        H, C, n = self.heads, self.out_channels, x.size(0)
        h = graph.with_halo(self.lin(x)).view(-1, H, C)  # (|V_local| + |V_halo|, H, C)
        a_src = (h * self.att_src).sum(-1).t().contiguous()  # (H, |V_local| + |V_halo|)
        a_dst = (h[:n] * self.att_dst).sum(-1).t().contiguous()  # (H, |V_local|)
        scores = gather_src(graph.csr, a_src) + gather_dst(graph.csr, a_dst)  # (H, |E|)
        alpha = edge_softmax(graph.csr, F.leaky_relu(scores, self.negative_slope))  # (H, |E|)
        alpha = attention_dropout(
            alpha, graph.edge_ids, self.dropout, seed=seed, step=step, layer=layer,
            training=self.training,
        )  # fmt: skip
        out = spmm(graph.csr, alpha, h.transpose(0, 1).contiguous())  # (H, |V_local|, C)
        out = out.transpose(0, 1).reshape(n, H * C) if self.concat else out.mean(0)
        return out + self.bias

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, heads={self.heads}, dropout={self.dropout}"
        )


class _TwoLayer(nn.Module):
    """Dropout, layer, activation, dropout, layer; dropout keyed by global node (and edge) id."""

    conv1: nn.Module
    conv2: nn.Module

    def __init__(self, dropout: float) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = dropout

    def activation(self, x: Tensor) -> Tensor:
        return F.relu(x)

    def forward(self, x: Tensor, graph: PartitionGraph, *, seed: int = 0, step: int = 0) -> Tensor:
        """Logits of the local nodes; ``seed`` and ``step`` pick the dropout masks."""
        ids, p, train = graph.node_ids, self.dropout, self.training
        x = node_dropout(x, ids, p, seed=seed, step=step, layer=0, training=train)
        x = self.activation(self.conv1(x, graph, seed=seed, step=step, layer=0))
        x = node_dropout(x, ids, p, seed=seed, step=step, layer=1, training=train)
        return self.conv2(x, graph, seed=seed, step=step, layer=1)


class PartitionGCN(_TwoLayer):
    """Two :class:`PartitionGCNConv` layers with ReLU and dropout (Kipf & Welling's model).

    Args:
        in_channels (int): F_in.
        hidden_channels (int): the hidden width.
        out_channels (int): the number of classes.
        dropout (float, optional): before each layer. (default: ``0.5``)
    """

    def __init__(
        self, in_channels: int, hidden_channels: int, out_channels: int, dropout: float = 0.5
    ) -> None:
        super().__init__(dropout)
        check_ints(
            in_channels=in_channels, hidden_channels=hidden_channels, out_channels=out_channels
        )
        self.conv1 = PartitionGCNConv(in_channels, hidden_channels)
        self.conv2 = PartitionGCNConv(hidden_channels, out_channels)


class PartitionGAT(_TwoLayer):
    """Two :class:`PartitionGATConv` layers with ELU and dropout (Veličković et al.'s model:
    ``heads`` concatenated heads, then one averaged output head).

    Args:
        in_channels (int): F_in.
        hidden_channels (int): channels per hidden head.
        out_channels (int): the number of classes.
        heads (int, optional): hidden heads. (default: ``8``)
        dropout (float, optional): feature dropout before each layer. (default: ``0.6``)
        attention_dropout (float, optional): of each layer's attention coefficients; ``None``
            takes ``dropout``, as the paper does. (default: ``None``)
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        heads: int = 8,
        dropout: float = 0.6,
        attention_dropout: float | None = None,
    ) -> None:
        super().__init__(dropout)
        check_ints(
            in_channels=in_channels,
            hidden_channels=hidden_channels,
            out_channels=out_channels,
            heads=heads,
        )
        att = dropout if attention_dropout is None else attention_dropout
        self.conv1 = PartitionGATConv(in_channels, hidden_channels, heads, dropout=att)
        self.conv2 = PartitionGATConv(
            hidden_channels * heads, out_channels, 1, concat=False, dropout=att
        )

    def activation(self, x: Tensor) -> Tensor:
        return F.elu(x)
