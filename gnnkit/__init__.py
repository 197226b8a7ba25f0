"""gnnkit: a graph-learning toolkit on PyTorch Geometric.

The public API is re-exported here; everything else is importable but not promised.

``import gnnkit`` imports neither torch nor PyG: each public name is imported the first time it
is used (a module ``__getattr__``, PEP 562), and so is each subpackage reached as an attribute
(``gnnkit.nn``). The command line starts without paying for what its command does not use, and
a Ctrl-C in its first seconds reaches its handler. ``from gnnkit import GCNConv`` and
``from gnnkit import *`` work as with eager imports.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from typing import TYPE_CHECKING, Any

from gnnkit.errors import (
    CheckpointError,
    DatasetError,
    DataUnavailableError,
    GnnkitError,
    InputError,
    UnknownDatasetError,
)

if TYPE_CHECKING:  # the names below, for type checkers and editors; at run time see __getattr__
    from gnnkit.data import load as load_dataset
    from gnnkit.graph import (
        adjacency,
        from_edge_list,
        hop_distances,
        layers_to_reach,
        receptive_field,
    )
    from gnnkit.nn import GATConv, GCNConv, sparse_dropout
    from gnnkit.nn.gcn import gcn_norm  # by its module: gnnkit.nn.gcn_norm is also a module
    from gnnkit.transforms import SparseFeatures

try:
    #: The installed distribution's version (``pyproject.toml`` is the one place it is written).
    __version__: str = _version("gnnkit")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0+unknown"

#: public name -> ``(module, attribute)`` it is imported from on first use.
_LAZY = {
    "load_dataset": ("gnnkit.data", "load"),
    "adjacency": ("gnnkit.graph", "adjacency"),
    "from_edge_list": ("gnnkit.graph", "from_edge_list"),
    "hop_distances": ("gnnkit.graph", "hop_distances"),
    "layers_to_reach": ("gnnkit.graph", "layers_to_reach"),
    "receptive_field": ("gnnkit.graph", "receptive_field"),
    "GATConv": ("gnnkit.nn", "GATConv"),
    "GCNConv": ("gnnkit.nn", "GCNConv"),
    "gcn_norm": ("gnnkit.nn.gcn", "gcn_norm"),
    "sparse_dropout": ("gnnkit.nn", "sparse_dropout"),
    "SparseFeatures": ("gnnkit.transforms", "SparseFeatures"),
}

#: The subpackages ``gnnkit.<name>`` imports on first use: those an eager ``import gnnkit``
#: used to import, so code that reached them as attributes keeps working. Each is one the
#: top-level package may import (ARCHITECTURE.md); ``gnnkit.errors`` is imported above.
_SUBMODULES = frozenset({"data", "graph", "nn", "ops", "transforms", "utils"})

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


def __getattr__(name: str) -> Any:
    """Import a public name or a subpackage on first use, and keep it (PEP 562)."""
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(import_module(module), attribute)
    elif name in _SUBMODULES:
        value = import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)
