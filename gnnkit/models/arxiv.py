"""ogbn-arxiv: OGB's full-batch GCN example on gnnkit layers, and a GAT of the same shape.

OGB's ``examples/nodeproppred/arxiv/gnn.py`` (leaderboard entry "GCN": 71.74 +- 0.29 % test
accuracy over 10 seeds) uses:

- a 3-layer GCN with 256 hidden channels;
- batch norm and ReLU after each hidden layer, and dropout 0.5;
- Adam with lr 0.01 and no weight decay, for 500 epochs, full batch;
- the raw 128-dimensional features;
- the citation graph made symmetric (``adj_t.to_symmetric()``).

The test accuracy reported is the one at the epoch with the best validation accuracy.
:data:`gnnkit.models.registry` turns this into the recipe that
``gnnkit bench node --dataset ogbn-arxiv`` trains.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import to_undirected

from gnnkit.errors import InputError
from gnnkit.models.node import _check_dropout, _check_positive
from gnnkit.nn import GATConv, GCNConv
from gnnkit.utils.checks import check_edge_index

__all__ = ["ArxivGAT", "ArxivGCN", "raw_features", "relu_dropout", "symmetrize"]


def symmetrize(edge_index: Tensor, num_nodes: int | None = None) -> Tensor:
    """The undirected version of a directed graph: both directions of every edge, once each.

    This is what OGB's example gets from ``adj_t.to_symmetric()``: the pattern of
    :math:`A + A^\\top` with duplicate edges merged. It is computed with PyG's
    ``to_undirected``, so it needs no torch-sparse. Self-loops are kept as they are.

    Args:
        edge_index (Tensor): (2, |E|) directed edges.
        num_nodes (int, optional): |V|. (default: largest index plus one)

    Returns:
        Tensor: (2, |E'|) edges sorted by source then target, each edge with its reverse.
    """
    num_nodes = check_edge_index(edge_index, num_nodes)
    return to_undirected(edge_index, num_nodes=num_nodes)


def raw_features(x: Tensor) -> Tensor:
    """OGB's arxiv features as they are, as dense float32: no row normalisation.

    The 128 features are averaged word2vec embeddings, which OGB's example feeds in
    unchanged. This is the ``features`` step of the ogbn-arxiv recipes
    (:func:`gnnkit.train.node_inputs` would otherwise row-normalise them).
    """
    dense = x.to_dense() if x.layout != torch.strided else x
    return dense.float().contiguous()


class _ReLUDropout(torch.autograd.Function):
    """``dropout(relu(x))`` that keeps only its output for the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, p: float) -> Tensor:
        scale = 1.0 / (1.0 - p)
        keep = torch.rand_like(x).ge_(p)  # (N, C) in {0, 1}; freed on return
        out = torch.clamp_min(x, 0.0).mul_(keep).mul_(scale)
        ctx.save_for_backward(out)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (out,) = ctx.saved_tensors
        # out > 0 exactly where x > 0 and the unit was kept: the chain's derivative.
        return torch.where(out > 0, grad, 0.0).mul_(ctx.scale), None


def relu_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    r"""``dropout(relu(x), p)`` whose backward pass needs only the output.

    .. math::
        y = \frac{m}{1 - p} \odot \max(x, 0), \qquad m_{ij} \sim \mathrm{Bernoulli}(1 - p),
        \qquad \frac{\partial y_{ij}}{\partial x_{ij}} = \frac{\mathbb{1}[y_{ij} > 0]}{1 - p}

    The two steps in a row keep two |V| x C tensors for the backward pass: ReLU's output
    and dropout's mask. Here the output alone is kept, and the next layer saves that tensor
    anyway. On ogbn-arxiv (169,343 x 256 hidden features) this saves 350 MB per hidden
    layer. Values and gradients are bit-identical to ``relu`` followed by
    :func:`gnnkit.models.node.dropout` with the same random state (tested), at the same
    speed. In evaluation mode, or with ``p = 0``, it is ``relu``.

    Args:
        x (Tensor): the input, any shape.
        p (float): the dropout probability, in ``[0, 1)``.
        training (bool): apply dropout (training mode).
    """
    if not training or p == 0.0:
        return torch.relu(x)
    if x.device.type != "cpu":
        return F.dropout(torch.relu(x), p, training)
    return _ReLUDropout.apply(x, p)


def _check_flags(**flags: Any) -> None:
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise InputError(f"{name} must be True or False, got {flag!r}")


class _NormalizedStack(nn.Module):
    """``convs`` with batch norm (or identity) ``bns``, then ReLU and dropout, between them.

    What :class:`ArxivGCN` and :class:`ArxivGAT` share once their layers are built: both set
    ``convs`` (:math:`L` layers), ``bns`` (:math:`L - 1`), ``num_layers`` and ``dropout``.
    """

    convs: nn.ModuleList
    bns: nn.ModuleList
    num_layers: int
    dropout: float

    def reset_parameters(self) -> None:
        for conv in self.convs:
            conv.reset_parameters()
        for bn in self.bns:
            if isinstance(bn, nn.BatchNorm1d):
                bn.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for conv, bn in zip(self.convs[:-1], self.bns, strict=True):
            x = conv(x, edge_index)  # (|V|, hidden width)
            x = relu_dropout(bn(x), self.dropout, self.training)
        return self.convs[-1](x, edge_index)  # (|V|, out)

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}, dropout={self.dropout}"


class ArxivGCN(_NormalizedStack):
    r"""OGB's GCN for ogbn-arxiv: stacked :class:`gnnkit.nn.GCNConv` layers with batch norm.

    From OGB's ``examples/nodeproppred/arxiv/gnn.py``. The convolution is Kipf & Welling's,
    `"Semi-Supervised Classification with Graph Convolutional Networks"
    <https://arxiv.org/abs/1609.02907>`_ (ICLR 2017, arXiv 1609.02907). Batch norm is Ioffe &
    Szegedy's (arXiv 1502.03167). For layers :math:`l = 1..L-1`:

    .. math::
        H^{(l)} = \mathrm{dropout}\Bigl(\mathrm{ReLU}\bigl(\mathrm{BN}_l(\hat{A} H^{(l-1)}
        W^{(l)} + b^{(l)})\bigr)\Bigr), \qquad Z = \hat{A} H^{(L-1)} W^{(L)} + b^{(L)}

    with :math:`H^{(0)} = X` the node features,
    :math:`\hat{A} = \tilde{D}^{-1/2}(A + I)\tilde{D}^{-1/2}` the normalised adjacency with
    self-loops, and :math:`\mathrm{BN}_l` batch norm over the nodes. :math:`Z` are logits.
    Per node, a layer computes :math:`h'_i = W^\top \sum_{j \in N(i) \cup \{i\}}
    \hat{a}_{ij} h_j + b`. OGB's set-up, which these defaults reproduce: :math:`L = 3`, 256
    hidden channels, dropout 0.5 on the hidden features (none on the input).

    NOTE: departures from OGB's example:

    - ``forward`` returns logits, not ``log_softmax``. Cross-entropy on logits is OGB's NLL
      loss on log-probabilities, and the argmax is the same.
    - The graph is an ``edge_index``. Make it symmetric first with :func:`symmetrize`, as the
      example does with torch-sparse's ``to_symmetric``.
    - ReLU and dropout run as one step, :func:`relu_dropout`. It keeps only its output for
      the backward pass (350 MB less per hidden layer on arxiv) and draws uniforms rather
      than Bernoulli samples on CPU. The distribution is the same.
    - ``batch_norm=False`` gives the same network without batch norm.

    Args:
        in_channels (int): :math:`F_{in}`, features per node (128 on ogbn-arxiv).
        out_channels (int): the number of classes (40 on ogbn-arxiv).
        hidden_channels (int, optional): hidden channels. (default: ``256``)
        num_layers (int, optional): :math:`L`, the number of convolutions, at least 1.
            (default: ``3``)
        dropout (float, optional): dropout on the hidden features. (default: ``0.5``)
        batch_norm (bool, optional): batch norm after each hidden convolution.
            (default: ``True``)
        cached (bool, optional): cache the normalised adjacency between calls (full-batch
            training on one graph). The cache is checked, so sampled subgraphs are safe too;
            it is just not reused there. (default: ``True``)

    Shapes:
        - **input:** ``x`` (|V|, F_in), ``edge_index`` (2, |E|)
        - **output:** (|V|, out_channels) logits
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        hidden_channels: int = 256,
        num_layers: int = 3,
        dropout: float = 0.5,
        batch_norm: bool = True,
        cached: bool = True,
    ) -> None:
        super().__init__()
        _check_positive(
            in_channels=in_channels,
            out_channels=out_channels,
            hidden_channels=hidden_channels,
            num_layers=num_layers,
        )
        _check_flags(batch_norm=batch_norm, cached=cached)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.hidden_channels, self.num_layers = hidden_channels, num_layers
        self.dropout = _check_dropout(dropout)
        sizes = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        # Layers after the first read the previous layer's output: no NaN scan needed.
        self.convs = nn.ModuleList(
            GCNConv(a, b, cached=cached, validate=i == 0)
            for i, (a, b) in enumerate(itertools.pairwise(sizes))
        )
        self.bns = nn.ModuleList(
            nn.BatchNorm1d(hidden_channels) if batch_norm else nn.Identity()
            for _ in range(num_layers - 1)
        )
        self.reset_parameters()


class ArxivGAT(_NormalizedStack):
    r"""A GAT of the same shape as :class:`ArxivGCN`: batch norm, ReLU, dropout between layers.

    The attention layer is from `"Graph Attention Networks"
    <https://arxiv.org/abs/1710.10903>`_ (Velickovic et al., ICLR 2018, arXiv 1710.10903).
    Hidden layers concatenate :math:`K` heads of ``hidden_channels`` each. The output layer
    averages ``out_heads`` heads:

    .. math::
        H^{(l)} = \mathrm{dropout}\Bigl(\mathrm{ReLU}\bigl(\mathrm{BN}_l(
        \Vert_{k=1}^{K} \mathrm{GAT}^{(l)}_k(H^{(l-1)}))\bigr)\Bigr), \qquad
        Z = \frac{1}{K'} \sum_{k=1}^{K'} \mathrm{GAT}^{(L)}_k(H^{(L-1)})

    where each head computes :math:`h'_i = \sum_{j \in N(i) \cup \{i\}} \alpha_{ij} W h_j`
    with :math:`\alpha_{ij} = \mathrm{softmax}_j(\mathrm{LeakyReLU}(a_s^\top W h_j +
    a_d^\top W h_i))`.

    NOTE: OGB's example ships only GCN and GraphSAGE for arxiv (the leaderboard's GAT entries
    use DGL code with other tricks). This is the GCN recipe with attention layers. Its
    defaults, 8 heads of 32 channels, keep the hidden width at 256. gnnkit's scale study
    (``benchmarks/scale.py``) uses it for the GAT curve.

    Args:
        in_channels (int): :math:`F_{in}`, features per node.
        out_channels (int): the number of classes.
        hidden_channels (int, optional): channels per head in the hidden layers.
            (default: ``32``)
        heads (int, optional): :math:`K`, heads of each hidden layer. (default: ``8``)
        out_heads (int, optional): :math:`K'`, averaged heads of the output layer.
            (default: ``1``)
        num_layers (int, optional): :math:`L`, the number of attention layers. (default: ``3``)
        dropout (float, optional): dropout on the hidden features. (default: ``0.5``)
        attention_dropout (float, optional): dropout on the attention coefficients.
            (default: ``0.0``)
        batch_norm (bool, optional): batch norm after each hidden layer. (default: ``True``)
        cached (bool, optional): cache the graph with self-loops between calls.
            (default: ``True``)

    Shapes:
        - **input:** ``x`` (|V|, F_in), ``edge_index`` (2, |E|)
        - **output:** (|V|, out_channels) logits
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        hidden_channels: int = 32,
        heads: int = 8,
        out_heads: int = 1,
        num_layers: int = 3,
        dropout: float = 0.5,
        attention_dropout: float = 0.0,
        batch_norm: bool = True,
        cached: bool = True,
    ) -> None:
        super().__init__()
        _check_positive(
            in_channels=in_channels,
            out_channels=out_channels,
            hidden_channels=hidden_channels,
            heads=heads,
            out_heads=out_heads,
            num_layers=num_layers,
        )
        _check_flags(batch_norm=batch_norm, cached=cached)
        self.in_channels, self.out_channels, self.num_layers = in_channels, out_channels, num_layers
        self.dropout = _check_dropout(dropout)
        attention_dropout = _check_dropout(attention_dropout)
        width = hidden_channels * heads
        convs: list[nn.Module] = []
        for i in range(num_layers - 1):
            convs.append(
                GATConv(
                    in_channels if i == 0 else width,
                    hidden_channels,
                    heads=heads,
                    dropout=attention_dropout,
                    cached=cached,
                    validate=i == 0,
                )
            )
        convs.append(
            GATConv(
                in_channels if num_layers == 1 else width,
                out_channels,
                heads=out_heads,
                concat=False,
                dropout=attention_dropout,
                cached=cached,
                validate=num_layers == 1,
            )
        )
        self.convs = nn.ModuleList(convs)
        self.bns = nn.ModuleList(
            nn.BatchNorm1d(width) if batch_norm else nn.Identity() for _ in range(num_layers - 1)
        )
        self.reset_parameters()
