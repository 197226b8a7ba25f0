"""Models built from gnnkit's layers (the layers themselves live in :mod:`gnnkit.nn`).

- :class:`GCN`, :class:`GAT`: the node classifiers of the GCN and GAT papers' Cora set-ups.
- :class:`BatchNormGCN`, :class:`BatchNormGAT`: deeper stacks with batch norm (OGB's
  ogbn-arxiv GCN and the same shape with attention).
- :class:`MolGNN`: OGB's molecule GNN for graph property prediction.
- :class:`LinkGNN` (:class:`EmbeddingGNN` + :class:`HadamardMLP`): OGB's ogbl-ddi link
  predictor.

How each is trained (learning rate, epochs, features) is a recipe: :mod:`gnnkit.recipes`.
"""

from gnnkit.models.gat import GAT, BatchNormGAT
from gnnkit.models.gcn import GCN, BatchNormGCN
from gnnkit.models.link import EmbeddingGNN, HadamardMLP, LinkGNN
from gnnkit.models.molecule import MolGNN, bond_counts, mean_pool

__all__ = [
    "GAT",
    "GCN",
    "BatchNormGAT",
    "BatchNormGCN",
    "EmbeddingGNN",
    "HadamardMLP",
    "LinkGNN",
    "MolGNN",
    "bond_counts",
    "mean_pool",
]
