"""Graph neural network layers: GCN and GAT convolutions on gnnkit's sparse kernels.

:mod:`gnnkit.nn.functional` holds the dropout family the models use.
"""

from gnnkit.nn._cache import GraphCache
from gnnkit.nn.functional import dropout, elu_dropout, relu_dropout, sparse_dropout
from gnnkit.nn.gat import GATConv
from gnnkit.nn.gcn import GCNConv, gcn_norm
from gnnkit.nn.linear import column_major_, sparse_linear, sparse_structure

__all__ = [
    "GATConv",
    "GCNConv",
    "GraphCache",
    "column_major_",
    "dropout",
    "elu_dropout",
    "gcn_norm",
    "relu_dropout",
    "sparse_dropout",
    "sparse_linear",
    "sparse_structure",
]
