"""gnnkit: a graph-learning toolkit on PyTorch Geometric.

The public API is re-exported here; everything else is importable but not promised.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

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
from gnnkit.transforms import SparseFeatures

try:
    #: The installed distribution's version (``pyproject.toml`` is the one place it is written).
    __version__: str = _version("gnnkit")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "CheckpointError",
    "DataUnavailableError",
    "DatasetError",
    "GATConv",
    "GCNConv",
    "GnnkitError",
    "InputError",
    "SparseFeatures",
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
