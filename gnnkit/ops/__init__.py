"""Sparse kernels for message passing, and the one place that chooses them.

- :class:`CSRGraph`: a graph sorted by receiver, built once and reused by every kernel.
- :func:`spmm`, :func:`sddmm`: sparse-dense matmul and per-edge dot products with a lean
  autograd (no ``|E| x C`` messages in either direction).
- :func:`segment_sum`, :func:`segment_max`, :func:`scatter_sum`, :func:`scatter_max`:
  reductions of edge values onto nodes.
- :func:`gather_src`, :func:`gather_dst`: node values onto edges, with deterministic gradients.
- :func:`edge_softmax`, :func:`scatter_softmax`: softmax over each node's incoming edges.
- :func:`fused_gat`: a graph attention layer's scores, edge softmax, attention dropout and
  aggregation in one pass over the CSR graph and one backward (numba on CPU, Triton on CUDA,
  torch elsewhere); :func:`fused_gat_backend` says which runs.
- :func:`backend_info`, :func:`set_backend`, :func:`set_deterministic`, :func:`deterministic`:
  what runs, and how to change it.
"""

from gnnkit.ops._sddmm import sddmm
from gnnkit.ops.attention import fused_gat, fused_gat_backend
from gnnkit.ops.backend import (
    backend_info,
    deterministic,
    get_backend,
    is_deterministic,
    set_backend,
    set_deterministic,
    torch_scatter_available,
    use_backend,
)
from gnnkit.ops.csr import CSRGraph
from gnnkit.ops.gather import gather_dst, gather_src
from gnnkit.ops.matmul import spmm
from gnnkit.ops.scatter import scatter_max, scatter_sum, segment_max, segment_sum
from gnnkit.ops.softmax import edge_softmax, scatter_softmax

__all__ = [
    "CSRGraph",
    "backend_info",
    "deterministic",
    "edge_softmax",
    "fused_gat",
    "fused_gat_backend",
    "gather_dst",
    "gather_src",
    "get_backend",
    "is_deterministic",
    "scatter_max",
    "scatter_softmax",
    "scatter_sum",
    "sddmm",
    "segment_max",
    "segment_sum",
    "set_backend",
    "set_deterministic",
    "spmm",
    "torch_scatter_available",
    "use_backend",
]
