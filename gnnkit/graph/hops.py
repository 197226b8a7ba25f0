"""Hop distances: how many message-passing layers information needs to travel between nodes.

After ``k`` rounds of message passing, node ``v`` has received information from exactly the
nodes within ``k`` hops upstream of it, so the hop distance from ``u`` to ``v`` is the number of
layers before ``u`` can influence ``v``: the receptive field of a message-passing network
(Gilmer et al., "Neural Message Passing for Quantum Chemistry", ICML 2017, arXiv 1704.01212;
Xu et al., "Representation Learning on Graphs with Jumping Knowledge Networks", ICML 2018,
arXiv 1806.03536).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import shortest_path
from torch import Tensor
from torch_geometric.utils import k_hop_subgraph

from gnnkit.errors import InputError
from gnnkit.utils.checks import as_index, check_edge_index

__all__ = ["hop_distances", "layers_to_reach", "receptive_field"]

#: Above this many nodes, ``hop_distances`` without ``sources`` refuses the all-pairs matrix.
ALL_PAIRS_LIMIT = 20_000


def _check_nodes(nodes: Sequence[int] | Tensor, num_nodes: int, name: str) -> np.ndarray:
    try:
        array = np.asarray(nodes.tolist() if isinstance(nodes, Tensor) else nodes)
    except (TypeError, ValueError):
        raise InputError(f"{name} must hold integer node indices, got {nodes!r}") from None
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise InputError(
            f"{name} must be one node index or a 1-D sequence of them, got shape {array.shape}"
        )
    if array.size == 0:
        raise InputError(
            f"{name} is empty; give at least one node index (or sources=None for all pairs)"
        )
    if array.dtype.kind not in "iu":
        raise InputError(f"{name} must hold integer node indices, got {array.tolist()!r}")
    bad = array[(array < 0) | (array >= num_nodes)]
    if bad.size:
        raise InputError(
            f"{name} holds node indices {bad[:5].tolist()} out of range 0 .. {num_nodes - 1}"
        )
    return array.astype(np.int64)


def _csr(edge_index: Tensor, num_nodes: int) -> sp.csr_matrix:
    """CSR matrix with an entry at (source, target): csgraph walks source -> target."""
    src, dst = edge_index.cpu().numpy()
    data = np.ones(src.shape[0], dtype=np.int8)
    matrix = sp.csr_matrix((data, (src, dst)), shape=(num_nodes, num_nodes))
    matrix.sum_duplicates()
    return matrix


def hop_distances(
    edge_index: Tensor,
    num_nodes: int | None = None,
    sources: Sequence[int] | Tensor | None = None,
) -> Tensor:
    r"""Breadth-first hop counts along edge direction (``source -> target``, the message flow).

    ``out[i, j]`` is the length of the shortest directed path from ``sources[i]`` (or node
    ``i``) to node ``j``: the number of message-passing layers before ``sources[i]`` can
    influence ``j``. Unreachable pairs are ``-1``; the diagonal is ``0``. An undirected graph
    stores both directions of every edge and so gets symmetric distances.

    Computed with :func:`scipy.sparse.csgraph.shortest_path` on unit weights (BFS).

    Args:
        edge_index (Tensor): edges, shape (2, |E|).
        num_nodes (int, optional): number of nodes. (default: largest index plus one)
        sources (sequence of int or Tensor, optional): the rows to compute. ``None`` computes
            all pairs, allowed up to 20,000 nodes; pass sources for larger graphs.
            (default: ``None``)

    Shapes:
        - **input:** ``edge_index`` (2, |E|)
        - **output:** (|V|, |V|), or (len(sources), |V|), dtype long
    """
    num_nodes = check_edge_index(edge_index, num_nodes)
    if sources is None:
        if num_nodes > ALL_PAIRS_LIMIT:
            raise InputError(
                f"all-pairs hop distances on {num_nodes} nodes would need a {num_nodes}x{num_nodes} "
                f"matrix; pass sources=[...] (at most {ALL_PAIRS_LIMIT} nodes for all pairs)"
            )
        indices = None
    else:
        indices = _check_nodes(sources, num_nodes, "sources")
    if num_nodes == 0:
        return torch.zeros((0, 0), dtype=torch.long)
    dist = shortest_path(
        _csr(edge_index, num_nodes), method="D", directed=True, unweighted=True, indices=indices
    )
    dist = np.atleast_2d(dist)
    out = np.full(dist.shape, -1, dtype=np.int64)
    reachable = np.isfinite(dist)
    out[reachable] = dist[reachable].astype(np.int64)
    return torch.from_numpy(out)


def layers_to_reach(edge_index: Tensor, src: int, dst: int, num_nodes: int | None = None) -> int:
    """How many message-passing layers it takes before ``src`` can influence ``dst``.

    This is the hop distance from ``src`` to ``dst`` along edge direction. Returns ``-1`` when
    ``dst`` can never be reached from ``src``, and ``0`` when ``src == dst``.
    """
    num_nodes = check_edge_index(edge_index, num_nodes)
    src_index = int(_check_nodes([as_index("src", src)], num_nodes, "src")[0])
    dst_index = int(_check_nodes([as_index("dst", dst)], num_nodes, "dst")[0])
    return int(hop_distances(edge_index, num_nodes, sources=[src_index])[0, dst_index])


def receptive_field(
    edge_index: Tensor, node: int, num_layers: int, num_nodes: int | None = None
) -> Tensor:
    """The nodes whose features reach ``node`` after ``num_layers`` message-passing layers.

    These are the nodes within ``num_layers`` hops upstream of ``node`` (``node`` included),
    found with PyG's :func:`~torch_geometric.utils.k_hop_subgraph` (flow ``source_to_target``).

    Returns:
        Tensor: sorted node indices, dtype long.
    """
    num_nodes = check_edge_index(edge_index, num_nodes)
    if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 0:
        raise InputError(f"num_layers must be a non-negative int, got {num_layers!r}")
    node_index = int(_check_nodes([as_index("node", node)], num_nodes, "node")[0])
    if num_layers == 0:
        return torch.tensor([node_index], dtype=torch.long)
    # The field stops growing once a layer adds no node, at the latest after |V| - 1 or |E|
    # layers: more cannot change it, and PyG's search runs every layer it is asked for.
    layers = max(1, min(num_layers, num_nodes - 1, edge_index.size(1)))
    subset, _, _, _ = k_hop_subgraph(
        node_index, layers, edge_index.long(), num_nodes=num_nodes, flow="source_to_target"
    )
    return subset.sort().values
