"""Models built from gnnkit's layers (the layers themselves live in :mod:`gnnkit.nn`).

- :class:`GCN`, :class:`GAT`: the node classifiers of the GCN and GAT papers' Cora set-ups.
- :data:`NODE_MODELS`, :func:`get_node_model`, :class:`ModelSpec`: the named recipes that
  ``gnnkit bench node --model`` trains.
"""

from gnnkit.models.node import GAT, GCN
from gnnkit.models.registry import NODE_MODELS, ModelSpec, get_node_model

__all__ = ["GAT", "GCN", "NODE_MODELS", "ModelSpec", "get_node_model"]
