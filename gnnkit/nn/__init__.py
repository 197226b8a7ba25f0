"""Graph neural network layers: GCN and GAT convolutions on gnnkit's sparse kernels."""

from gnnkit.nn.dropout import sparse_dropout
from gnnkit.nn.gat import GATConv
from gnnkit.nn.gcn import GCNConv, gcn_norm
from gnnkit.nn.linear import sparse_linear, sparse_structure

__all__ = [
    "GATConv",
    "GCNConv",
    "gcn_norm",
    "sparse_dropout",
    "sparse_linear",
    "sparse_structure",
]
