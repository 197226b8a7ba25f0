"""gnnkit: a graph-learning toolkit on PyTorch Geometric.

The public API is re-exported here; everything else is importable but not promised.
"""

__version__ = "0.2.0"

from gnnkit.data import load as load_dataset
from gnnkit.errors import (
    CheckpointError,
    DatasetError,
    DataUnavailableError,
    GnnkitError,
    InputError,
    UnknownDatasetError,
)
from gnnkit.graph import (
    adjacency,
    from_edge_list,
    hop_distances,
    layers_to_reach,
    receptive_field,
)
from gnnkit.nn import GATConv, GCNConv, gcn_norm, sparse_dropout

__all__ = [
    "CheckpointError",
    "DataUnavailableError",
    "DatasetError",
    "GATConv",
    "GCNConv",
    "GnnkitError",
    "InputError",
    "UnknownDatasetError",
    "__version__",
    "adjacency",
    "from_edge_list",
    "gcn_norm",
    "hop_distances",
    "layers_to_reach",
    "load_dataset",
    "receptive_field",
    "sparse_dropout",
]
