"""Neighbour sampling: mini-batches of seed nodes with a sampled multi-hop neighbourhood.

- :class:`NeighborSampler`: uniform sampling of at most ``k`` in-neighbours per node and hop,
  vectorised on a :class:`gnnkit.ops.CSRGraph` (no per-node Python loop, no compiled
  extension).
- :class:`SampledSubgraph`: what one call returns (seed nodes first, local ``edge_index``),
  ready for any gnnkit or PyG layer.
- :class:`NeighborLoader`: batches of seeds, shuffled per epoch, each with its subgraph.
- :class:`NegativeSampler`: node pairs that are not edges, uniformly and without repeats, drawn
  on the edges' device (PyG's ``negative_sampling`` distribution, without its host-side draw).

NOTE: PyG's own ``NeighborLoader`` needs ``pyg-lib`` or ``torch-sparse``. Neither installs from
a wheel here (``pyg-lib`` is not on PyPI, ``torch-sparse`` compiles from source for 10+
minutes), so gnnkit samples with plain torch operations instead.
"""

from gnnkit.sampling.negative import NegativeSampler
from gnnkit.sampling.neighbor import NeighborLoader, NeighborSampler, SampledSubgraph

__all__ = ["NegativeSampler", "NeighborLoader", "NeighborSampler", "SampledSubgraph"]
