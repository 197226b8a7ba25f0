"""Self-loops as PyG adds them, for each input form, with their weights.

PyG's layers add self-loops three ways, depending on how the graph arrives:

- ``"remaining"`` (``edge_index`` into ``GCNConv``, PyG's ``add_remaining_self_loops``): a node
  that already has a self-loop keeps it with its own weight; only the others get a new loop.
- ``"add"`` (a torch.sparse adjacency into ``GCNConv``, PyG's ``add_self_loops``): every node
  gets a new loop; an existing one stays beside it, so their weights add up.
- ``"replace"`` (a ``SparseTensor`` into ``GCNConv`` (``fill_diag``), and ``GATConv`` always):
  existing self-loops are dropped and every node gets one new loop.

New loops go after the kept edges, one per node ``0 .. |V|-1``, in node order (PyG's order).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gnnkit.errors import InputError

__all__ = ["LoopedEdges", "add_loops", "looped_weights"]


@dataclass
class LoopedEdges:
    """``edge_index`` with self-loops added by one of the modes above.

    ``edge_index`` holds the kept input edges in input order, then one loop per node
    ``0 .. num_nodes - 1``. ``keep`` marks the kept input edges (``None``: all kept);
    ``loop_edge[i]``
    is the input position of node ``i``'s own self-loop whose weight it keeps (mode
    ``"remaining"``; the last one if several), or -1.
    """

    edge_index: Tensor  # (2, E_kept + N)
    keep: Tensor | None  # (E,) bool, or None when every edge is kept
    loop_edge: Tensor  # (N,)
    num_nodes: int


def add_loops(edge_index: Tensor, num_nodes: int, mode: str = "remaining") -> LoopedEdges:
    """Add one self-loop per node ``0 .. num_nodes - 1`` (see the module docstring for modes).

    Written without ``nonzero``: one boolean selection is the only data-dependent shape, so
    ``torch.compile`` breaks the graph once here, as in PyG's ``add_remaining_self_loops``.
    """
    src, dst = edge_index[0], edge_index[1]
    device = edge_index.device
    loop_edge = torch.full((num_nodes,), -1, dtype=torch.long, device=device)
    keep = None
    if mode != "add":
        is_loop = src == dst
        keep = ~is_loop
        if mode == "remaining":  # the last self-loop of each node: the largest position
            positions = torch.arange(edge_index.size(1), device=device)
            positions = torch.where(is_loop, positions, -1)
            loop_edge.scatter_reduce_(0, src.long(), positions, "amax")
    nodes = torch.arange(num_nodes, dtype=edge_index.dtype, device=device)
    kept = edge_index if keep is None else edge_index[:, keep]
    looped = torch.cat([kept, torch.stack([nodes, nodes])], dim=1)
    return LoopedEdges(looped, keep, loop_edge, num_nodes)


def looped_weights(
    looped: LoopedEdges,
    edge_weight: Tensor | None,
    self_loop_weight: float | Tensor,
    dtype: torch.dtype,
) -> Tensor:
    """Unnormalised weights of ``looped.edge_index``: kept input weights, then the loops'.

    A node whose existing self-loop was kept (mode ``"remaining"``) keeps that loop's weight
    (1 without ``edge_weight``); every other new loop weighs ``self_loop_weight``.
    """
    device = looped.edge_index.device
    if isinstance(self_loop_weight, Tensor):
        fill = self_loop_weight.to(dtype).expand(looped.num_nodes)
    else:
        if float(self_loop_weight) > torch.finfo(dtype).max:
            raise InputError(
                f"self_loop_weight={float(self_loop_weight):g} does not fit the weights' {dtype} "
                f"(at most {torch.finfo(dtype).max:.4g}); use a smaller one"
            )
        fill = torch.full((looped.num_nodes,), float(self_loop_weight), dtype=dtype, device=device)
    if edge_weight is None:
        num_kept = looped.edge_index.size(1) - looped.num_nodes
        edge_part = torch.ones(num_kept, dtype=dtype, device=device)
        existing = torch.ones(looped.num_nodes, dtype=dtype, device=device)
    elif edge_weight.numel() == 0:  # no edges, so no existing loops
        return torch.cat([edge_weight, fill])
    else:
        edge_part = edge_weight if looped.keep is None else edge_weight[looped.keep]
        existing = edge_weight[looped.loop_edge.clamp(min=0)]
    return torch.cat([edge_part, torch.where(looped.loop_edge >= 0, existing, fill)])
