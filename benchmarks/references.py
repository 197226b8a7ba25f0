"""PyG reference models for ``gnnkit bench node --compare pyg``, exactly as PyG's examples.

- :class:`PygGCN` follows PyG's ``examples/gcn.py``: ``torch_geometric.nn.GCNConv`` x 2, 16
  hidden, ReLU, ``F.dropout(p=0.5)`` on the dense input and hidden features, Adam lr 0.01 with
  weight decay 5e-4 on ``conv1`` only, 200 epochs.
- :class:`PygGAT` follows PyG's ``examples/gat.py``: ``torch_geometric.nn.GATConv`` with 8
  heads x 8 hidden and ``dropout=0.6``, ELU, one output head with ``concat=False``,
  ``F.dropout(p=0.6)`` on the dense input and hidden features, Adam lr 0.005 with weight
  decay 5e-4 on every parameter.

Both are trained on ``T.NormalizeFeatures()`` of the dense features, as the examples load
Planetoid. NOTE: the current ``examples/gcn.py`` builds ``GCNConv`` without ``cached=True``
(older versions cached); :class:`PygGCN` follows the current example and takes ``cached`` as
an option for ablations.

The library finds these through the ``gnnkit.references`` entry-point group (see
:mod:`gnnkit.bench.references`), declared in ``pyproject.toml``::

    [project.entry-points."gnnkit.references"]
    pyg-gcn = "benchmarks.references:PYG_GCN"
    pyg-gat = "benchmarks.references:PYG_GAT"
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torch_geometric.transforms as T
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.nn import GATConv, GCNConv

from gnnkit.models import ModelSpec

__all__ = ["PYG_GAT", "PYG_GCN", "PygGAT", "PygGCN", "pyg_normalize_features"]


def pyg_normalize_features(x: Tensor) -> Tensor:
    """PyG's ``T.NormalizeFeatures()`` applied to dense features, as the examples load Planetoid."""
    dense = x.to_dense() if x.layout != torch.strided else x
    return T.NormalizeFeatures()(Data(x=dense.float().clone())).x


class PygGCN(torch.nn.Module):
    """``examples/gcn.py``'s ``GCN`` (without GDC)."""

    def __init__(
        self, in_channels: int, out_channels: int, hidden_channels: int = 16, cached: bool = False
    ) -> None:
        super().__init__()
        self.conv1 = GCNConv(in_channels, hidden_channels, cached=cached)
        self.conv2 = GCNConv(hidden_channels, out_channels, cached=cached)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = F.dropout(x, p=0.5, training=self.training)
        x = self.conv1(x, edge_index).relu()
        x = F.dropout(x, p=0.5, training=self.training)
        return self.conv2(x, edge_index)

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """``examples/gcn.py``: "Only perform weight-decay on first convolution"."""
        return [
            {"params": list(self.conv1.parameters()), "weight_decay": weight_decay},
            {"params": list(self.conv2.parameters()), "weight_decay": 0.0},
        ]


class PygGAT(torch.nn.Module):
    """``examples/gat.py``'s ``GAT`` (Cora: one output head)."""

    def __init__(
        self, in_channels: int, out_channels: int, hidden_channels: int = 8, heads: int = 8
    ) -> None:
        super().__init__()
        self.conv1 = GATConv(in_channels, hidden_channels, heads, dropout=0.6)
        self.conv2 = GATConv(
            hidden_channels * heads, out_channels, heads=1, concat=False, dropout=0.6
        )

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = F.dropout(x, p=0.6, training=self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, p=0.6, training=self.training)
        return self.conv2(x, edge_index)


PYG_GCN = ModelSpec(
    name="pyg-gcn",
    build=PygGCN,
    features=pyg_normalize_features,
    lr=0.01,
    weight_decay=5e-4,
    epochs=200,
    description="PyG examples/gcn.py: torch_geometric.nn.GCNConv, dense features, F.dropout",
)

PYG_GAT = ModelSpec(
    name="pyg-gat",
    build=PygGAT,
    features=pyg_normalize_features,
    lr=0.005,
    weight_decay=5e-4,
    epochs=200,
    description="PyG examples/gat.py: torch_geometric.nn.GATConv, dense features, F.dropout",
)
