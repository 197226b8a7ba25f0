"""Split a graph by destination node into parts, and cut one shard per part.

A part owns a set of nodes and every edge *into* them, so each part computes its own nodes'
next-layer features from its in-edges alone, once it has the features of the remote senders
(its **halo**). :func:`partition_nodes` assigns nodes to parts (METIS through ``pymetis``, or a
random / contiguous split that needs nothing beyond torch); :func:`build_shards` cuts, for every
part:

- its nodes' global ids, features, labels and split masks;
- the CSR of their in-edges with one self-loop per node (rows = the part's nodes, in global-id
  order; columns = the part's nodes first, then its halo nodes ordered by owner part, then id);
- ``norm``: :math:`\\hat d^{-1/2}` of every column, :math:`\\hat d` the **global** in-degree with
  the self-loop, so the GCN weight of edge :math:`j \\to i` is ``norm[i] * norm[j]`` exactly as in
  the whole graph;
- ``edge_ids``: the **global** id of every CSR entry, its position in :func:`global_edges`
  (GAT's attention dropout is keyed by it, so it is the same on every P);
- the halo plan: ``recv_counts[q]`` halo rows come from part ``q`` and ``send_idx`` /
  ``send_counts`` list the local rows this part sends to each other part, in that part's halo
  order (the arguments of :func:`torch.distributed.all_to_all_single`).

NOTE: existing self-loops are dropped and one self-loop per node is added (GAT's rule; PyG's GCN
keeps an existing self-loop's weight instead), and parallel edges stay parallel.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.utils.checks import (
    check_edge_index,
    check_int,
    check_range,
    describe,
    is_integer_tensor,
)

__all__ = [
    "PARTITION_METHODS",
    "build_shards",
    "global_edges",
    "halo_sizes",
    "metis_available",
    "partition_dataset",
    "partition_nodes",
]

logger = logging.getLogger(__name__)

#: The ways :func:`partition_nodes` splits a graph.
PARTITION_METHODS = ("metis", "random", "contiguous")


def metis_available() -> bool:
    """Whether ``pymetis`` (METIS) can be imported."""
    try:
        import pymetis  # noqa: F401
    except ImportError:
        return False
    return True


def _metis(edge_index: Tensor, num_nodes: int, num_parts: int, seed: int) -> Tensor:
    import pymetis

    src, dst = edge_index[0].long(), edge_index[1].long()
    keep = src != dst
    both = torch.cat([torch.stack([src[keep], dst[keep]]), torch.stack([dst[keep], src[keep]])], 1)
    key = torch.unique(both[0] * num_nodes + both[1])  # symmetric, deduplicated, sorted
    row, col = key // num_nodes, key % num_nodes
    xadj = torch.zeros(num_nodes + 1, dtype=torch.long)
    xadj[1:] = torch.bincount(row, minlength=num_nodes).cumsum(0)
    options = pymetis.Options(seed=seed)
    adjacency = pymetis.CSRAdjacency(xadj.numpy(), col.numpy())
    result = pymetis.part_graph(num_parts, adjacency, options=options)
    return torch.as_tensor(list(result.vertex_part), dtype=torch.long)


def partition_nodes(
    edge_index: Tensor, num_nodes: int, num_parts: int, *, method: str = "metis", seed: int = 0
) -> Tensor:
    """The part of every node.

    Args:
        edge_index (Tensor): (2, |E|) edges, row 0 senders, row 1 receivers.
        num_nodes (int): |V|.
        num_parts (int): P, the number of parts (>= 1).
        method (str, optional): ``"metis"`` (minimum edge cut on the symmetrised graph, through
            ``pymetis``), ``"random"`` (a seeded balanced shuffle) or ``"contiguous"`` (P blocks
            of consecutive ids). (default: ``"metis"``)
        seed (int, optional): the seed of ``"random"`` and of METIS. (default: ``0``)

    Returns:
        Tensor: (|V|,) int64 part of every node, in ``[0, P)``.

    Raises:
        InputError: an unknown method, P < 1 or P > |V|, an edge naming a node outside
            ``[0, |V|)``, or METIS without ``pymetis``.
    """
    if method not in PARTITION_METHODS:
        raise InputError(
            f"unknown partition method {method!r}; choose one of {', '.join(PARTITION_METHODS)}"
        )
    num_nodes = check_edge_index(edge_index, num_nodes)
    if not 1 <= num_parts <= max(num_nodes, 1):
        raise InputError(
            f"num_parts must be between 1 and the number of nodes ({num_nodes}), got {num_parts}"
        )
    if num_parts == 1:
        return torch.zeros(num_nodes, dtype=torch.long)
    if method == "contiguous":
        return torch.arange(num_nodes) * num_parts // num_nodes
    if method == "random":
        generator = torch.Generator().manual_seed(seed)
        return torch.randperm(num_nodes, generator=generator) % num_parts
    if not metis_available():
        raise InputError(
            "METIS partitions need pymetis: `pip install pymetis`, or choose "
            "--method random or --method contiguous"
        )
    return _metis(edge_index, num_nodes, num_parts, seed)


def global_edges(edge_index: Tensor, num_nodes: int) -> Tensor:
    """The edges a partitioned model runs on, in the order that numbers them.

    The input's edges without its self-loops, in their order, then one self-loop per node
    (node ``i``'s is edge ``|E'| + i``). Edge ``k`` of this list has global id ``k``: the id
    every shard stores for it (``edge_ids``) and the key of its attention-dropout mask, so a
    single-process reference that numbers the edges this way draws the same masks.

    Args:
        edge_index (Tensor): (2, |E|) edges, row 0 senders, row 1 receivers.
        num_nodes (int): |V|.

    Returns:
        Tensor: (2, |E'| + |V|) int64 edges, row 0 senders, row 1 receivers.

    Raises:
        InputError: ``edge_index`` is not (2, |E|) integers in ``[0, |V|)``.
    """
    num_nodes = check_edge_index(edge_index, num_nodes)
    src, dst = edge_index[0].long(), edge_index[1].long()
    keep = src != dst
    loops = torch.arange(num_nodes)
    return torch.stack([torch.cat([src[keep], loops]), torch.cat([dst[keep], loops])])


def _local_index(parts: Tensor, num_parts: int) -> Tensor:
    """Position of every node among its part's nodes (ordered by global id)."""
    order = torch.sort(parts, stable=True).indices  # nodes grouped by part, ids ascending
    sizes = torch.bincount(parts, minlength=num_parts)
    starts = torch.cumsum(sizes, 0) - sizes
    index = torch.empty_like(parts)
    index[order] = torch.arange(parts.numel()) - starts[parts[order]]
    return index


def _checked_parts(parts: Tensor, num_parts: int, num_nodes: int | None = None) -> Tensor:
    """``parts`` as int64, refused unless it is (|V|,) integers in ``[0, num_parts)``."""
    check_int("num_parts", num_parts)
    expected = "(|V|,)" if num_nodes is None else f"(|V|,) = ({num_nodes},)"
    if (
        not is_integer_tensor(parts)
        or parts.dim() != 1
        or (num_nodes is not None and parts.numel() != num_nodes)
    ):
        got = describe(parts)
        raise InputError(
            f"parts must be an integer tensor of shape {expected}, one part per node, got {got}"
        )
    fix = "pass the num_parts the partition was made for (partition_nodes)"
    check_range("parts", parts, num_parts, fix, what="part", unit="parts")
    return parts.long()


def build_shards(data: Any, parts: Tensor, num_parts: int) -> list[dict[str, Tensor]]:
    """Cut one shard per part (see the module docstring for what a shard holds).

    Args:
        data (torch_geometric.data.Data): ``x`` (|V|, F), ``y`` (|V|,), ``edge_index`` and
            ``train_mask`` / ``val_mask`` / ``test_mask`` (|V|,) booleans.
        parts (Tensor): (|V|,) the part of every node (:func:`partition_nodes`).
        num_parts (int): P.

    Returns:
        list of dict: P shards of tensors, ready for :func:`torch.save`.
    """
    num_nodes = int(data.num_nodes)
    parts = _checked_parts(parts, num_parts, num_nodes)
    src, dst = global_edges(data.edge_index, num_nodes)
    degree = torch.bincount(dst, minlength=num_nodes).double()
    norm = degree.pow(-0.5)
    local = _local_index(parts, num_parts)
    halos: list[Tensor] = []
    shards: list[dict[str, Tensor]] = []
    for p in range(num_parts):
        into = (parts[dst] == p).nonzero().view(-1)  # global ids of the part's in-edges
        s, d = src[into], dst[into]
        remote = parts[s] != p
        halo_key = torch.unique(parts[s[remote]] * num_nodes + s[remote])  # by owner, then id
        halo = halo_key % num_nodes
        halos.append(halo)
        nodes = (parts == p).nonzero().view(-1)
        num_local = nodes.numel()
        col = local[s].clone()
        col[remote] = num_local + torch.searchsorted(
            halo_key, parts[s[remote]] * num_nodes + s[remote]
        )
        row = local[d]
        order = torch.sort(row, stable=True).indices
        rowptr = torch.zeros(num_local + 1, dtype=torch.long)
        rowptr[1:] = torch.bincount(row, minlength=num_local).cumsum(0)
        shards.append(
            {
                "node_ids": nodes,
                "halo_ids": halo,
                "x": data.x[nodes].contiguous(),
                "y": data.y[nodes].contiguous(),
                "train_mask": data.train_mask[nodes].contiguous(),
                "val_mask": data.val_mask[nodes].contiguous(),
                "test_mask": data.test_mask[nodes].contiguous(),
                "rowptr": rowptr,
                "col": col[order].contiguous(),
                "edge_ids": into[order].contiguous(),
                "norm": torch.cat([norm[nodes], norm[halo]]),
                "recv_counts": torch.bincount(parts[halo], minlength=num_parts),
            }
        )
    for p in range(num_parts):  # what p sends to q: q's halo rows that p owns, in q's order
        blocks = [local[halo[parts[halo] == p]] for halo in halos]
        shards[p]["send_idx"] = torch.cat(blocks) if blocks else torch.zeros(0, dtype=torch.long)
        shards[p]["send_counts"] = torch.tensor([b.numel() for b in blocks], dtype=torch.long)
    return shards


def halo_sizes(edge_index: Tensor, parts: Tensor, num_parts: int) -> list[int]:
    """The number of halo nodes of every part (distinct remote senders into its nodes).

    Args:
        edge_index (Tensor): (2, |E|) edges, row 0 senders, row 1 receivers.
        parts (Tensor): (|V|,) the part of every node, in ``[0, P)``.
        num_parts (int): P.
    """
    parts = _checked_parts(parts, num_parts)
    num_nodes = parts.numel()
    needed = check_edge_index(edge_index)
    if needed > num_nodes:
        raise InputError(
            f"edge_index names node {needed - 1} but parts gives the part of only {num_nodes} "
            "nodes; pass one part per node (partition_nodes)"
        )
    src, dst = edge_index[0].long(), edge_index[1].long()
    remote = parts[src] != parts[dst]
    key = torch.unique(parts[dst[remote]] * num_nodes + src[remote])
    return torch.bincount(key // num_nodes, minlength=num_parts).tolist()


def partition_dataset(
    data: Any,
    folder: str | os.PathLike,
    num_parts: int,
    *,
    dataset: str,
    method: str = "metis",
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Partition ``data``, cut its shards and write them with a manifest to ``folder``.

    A folder that already holds shards is refused before any work, unless ``overwrite``
    (:func:`gnnkit.distributed.shards.claim_shard_folder`).

    Args:
        data (torch_geometric.data.Data): a node-classification graph (as :func:`build_shards`).
        folder (str or PathLike): where the shards go (created if missing).
        num_parts (int): P.
        dataset (str): the dataset's name, recorded in the manifest and checked at launch.
        method (str, optional): see :func:`partition_nodes`. (default: ``"metis"``)
        seed (int, optional): see :func:`partition_nodes`. (default: ``0``)
        overwrite (bool, optional): replace the shards ``folder`` holds. (default: ``False``)

    Returns:
        dict: the manifest written (with the halo size of every part).
    """
    from gnnkit.distributed.shards import claim_shard_folder, read_manifest, write_shards

    if not overwrite:
        claim_shard_folder(folder)  # refused before the partitioning's work
    num_nodes = int(data.num_nodes)
    parts = partition_nodes(data.edge_index, num_nodes, num_parts, method=method, seed=seed)
    shards = build_shards(data, parts, num_parts)
    num_classes = getattr(data, "num_classes", None) or int(data.y.max()) + 1
    info = {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "num_nodes": num_nodes,
        "num_edges": int(data.edge_index.size(1)),
        "num_features": int(data.x.size(1)),
        "num_classes": int(num_classes),
        "split_sizes": {
            split: int(getattr(data, f"{split}_mask").sum()) for split in ("train", "val", "test")
        },
    }
    write_shards(folder, shards, info, overwrite=overwrite)
    return read_manifest(folder)
