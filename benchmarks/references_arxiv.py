"""PyG reference models for ogbn-arxiv, built as OGB's example builds them.

- :class:`PygArxivGCN` follows OGB's ``examples/nodeproppred/arxiv/gnn.py``:
  ``torch_geometric.nn.GCNConv(cached=True)`` x 3 with 256 hidden channels;
  ``BatchNorm1d``, ReLU and ``F.dropout(p=0.5)`` after each hidden layer; Adam lr 0.01 with no
  weight decay; 500 epochs; the raw features.
- :class:`PygArxivGAT` has the same shape with ``torch_geometric.nn.GATConv`` (8 heads x 32
  hidden channels). It is the PyG counterpart of :class:`gnnkit.models.arxiv.ArxivGAT` for
  the scale study.

NOTE: OGB's example loads the graph as a torch-sparse ``SparseTensor`` (``T.ToSparseTensor()``)
and symmetrises it with ``adj_t.to_symmetric()``. torch-sparse is not installed here (it only
ships as a source distribution), so these models take the symmetrised ``edge_index`` from
:func:`gnnkit.models.arxiv.symmetrize`. Through ``GCNConv`` that computes the same
normalised adjacency: self-loops of weight 1 and symmetric degree normalisation.

Found through the ``gnnkit.references`` entry-point group (see :mod:`gnnkit.bench.references`)::

    [project.entry-points."gnnkit.references"]
    pyg-arxiv-gcn = "benchmarks.references_arxiv:PYG_ARXIV_GCN"
    pyg-arxiv-gat = "benchmarks.references_arxiv:PYG_ARXIV_GAT"
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import GATConv, GCNConv

from gnnkit.models import ModelSpec
from gnnkit.models.arxiv import raw_features, symmetrize

__all__ = ["PYG_ARXIV_GAT", "PYG_ARXIV_GCN", "PygArxivGAT", "PygArxivGCN"]


class PygArxivGCN(torch.nn.Module):
    """OGB's ``examples/nodeproppred/arxiv/gnn.py`` ``GCN`` (returns logits, see NOTE above)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 256,
        num_layers: int = 3,
        dropout: float = 0.5,
        cached: bool = True,
    ) -> None:
        super().__init__()
        self.convs = torch.nn.ModuleList([GCNConv(in_channels, hidden_channels, cached=cached)])
        self.bns = torch.nn.ModuleList([torch.nn.BatchNorm1d(hidden_channels)])
        for _ in range(num_layers - 2):
            self.convs.append(GCNConv(hidden_channels, hidden_channels, cached=cached))
            self.bns.append(torch.nn.BatchNorm1d(hidden_channels))
        self.convs.append(GCNConv(hidden_channels, out_channels, cached=cached))
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for conv, bn in zip(self.convs[:-1], self.bns, strict=True):
            x = conv(x, edge_index)
            x = bn(x)
            x = F.relu(x)
            x = F.dropout(x, p=self.dropout, training=self.training)
        return self.convs[-1](x, edge_index)


class PygArxivGAT(torch.nn.Module):
    """:class:`PygArxivGCN`'s shape with ``GATConv`` (8 heads x 32 hidden, 1 output head)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 32,
        heads: int = 8,
        num_layers: int = 3,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        width = hidden_channels * heads
        self.convs = torch.nn.ModuleList()
        self.bns = torch.nn.ModuleList()
        for i in range(num_layers - 1):
            self.convs.append(GATConv(in_channels if i == 0 else width, hidden_channels, heads))
            self.bns.append(torch.nn.BatchNorm1d(width))
        last_in = in_channels if num_layers == 1 else width
        self.convs.append(GATConv(last_in, out_channels, heads=1, concat=False))
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for conv, bn in zip(self.convs[:-1], self.bns, strict=True):
            x = F.relu(bn(conv(x, edge_index)))
            x = F.dropout(x, p=self.dropout, training=self.training)
        return self.convs[-1](x, edge_index)


PYG_ARXIV_GCN = ModelSpec(
    name="pyg-arxiv-gcn",
    build=PygArxivGCN,
    features=raw_features,
    lr=0.01,
    weight_decay=0.0,
    epochs=500,
    description="OGB examples/nodeproppred/arxiv/gnn.py: PyG GCNConv x3, 256 hidden, BN, dropout 0.5",
    graph=symmetrize,
    fanouts=(15, 10, 5),
)

PYG_ARXIV_GAT = ModelSpec(
    name="pyg-arxiv-gat",
    build=PygArxivGAT,
    features=raw_features,
    lr=0.01,
    weight_decay=0.0,
    epochs=500,
    description="PyG GATConv x3 (8 heads x 32), BN, dropout 0.5, in OGB's arxiv GCN recipe",
    graph=symmetrize,
    fanouts=(15, 10, 5),
)
