"""The symmetric GCN normalisation (Kipf & Welling) with a weighted self-loop.

:func:`gcn_norm` is the pure function behind :class:`gnnkit.nn.GCNConv`; it takes PyG's
``gcn_norm`` arguments in PyG's order, plus gnnkit's ``self_loop_weight``.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gnnkit import ops
from gnnkit.errors import InputError
from gnnkit.nn._loops import LoopedEdges, add_loops, looped_weights
from gnnkit.ops.csr import CSRGraph, ordinary_tensors
from gnnkit.utils.checks import check_edge_index, check_edge_weight, values_readable

__all__ = ["gcn_norm"]


def _inverse_sqrt_degree(degree: Tensor) -> Tensor:
    if degree.numel() and values_readable(degree) and bool((degree < 0).any()):
        bad = (degree < 0).nonzero().view(-1)[:5].tolist()
        raise InputError(
            f"the weighted in-degree (including the self-loop) is negative for nodes {bad}; "
            "symmetric normalisation D^-1/2 needs non-negative edge weights"
        )
    inv = degree.pow(-0.5)
    return inv.masked_fill_(torch.isinf(inv), 0.0)


def _check_self_loop_weight(value: Any, name: str = "self_loop_weight") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise InputError(
            f"{name} must be a positive finite number (1 is the paper, 2 is PyG's "
            f"improved=True), got {value!r}"
        )
    return float(value)


def gcn_norm(
    edge_index: Tensor,
    edge_weight: Tensor | None = None,
    num_nodes: int | None = None,
    improved: bool = False,
    add_self_loops: bool = True,
    flow: str = "source_to_target",
    dtype: torch.dtype | None = None,
    *,
    self_loop_weight: "float | Tensor | None" = None,
    deterministic: bool | None = None,
) -> "tuple[Tensor, Tensor]":
    r"""The symmetric GCN normalisation of a graph with weighted self-loops.

    Returns the edges and weights of

    .. math::
        \hat{A} = \tilde{D}^{-1/2} (A + \lambda I) \tilde{D}^{-1/2}, \qquad
        \tilde{D}_{ii} = \lambda + \sum_{j \to i} e_{j,i}

    i.e. per edge :math:`j \to i`: :math:`\hat{e}_{j,i} = e_{j,i} / \sqrt{\tilde{d}_j
    \tilde{d}_i}`, where :math:`e_{j,i}` is the weight of edge :math:`j \to i` (1 without
    ``edge_weight``) and :math:`\lambda` is ``self_loop_weight``. Degrees are in-degrees
    counted on the target (``edge_index[1]``), as in PyG's ``gcn_norm``; nodes of zero degree
    get zero weights, never ``inf`` or ``NaN``.

    NOTE: self-loops follow PyG's ``add_remaining_self_loops``: a node that already has a
    self-loop keeps it with its own weight (1 for an unweighted graph, whatever
    :math:`\lambda`); only nodes without one get a loop of weight :math:`\lambda`. If a node
    has several self-loops, the last one's weight is used and the others are dropped.
    :func:`gnnkit.adjacency` instead adds :math:`\lambda I` on top of existing loops.

    Args:
        edge_index (Tensor): (2, |E|) edges, row 0 sources, row 1 targets (swapped with
            ``flow="target_to_source"``).
        edge_weight (Tensor, optional): (|E|,) edge weights. (default: all ones)
        num_nodes (int, optional): the number of nodes. (default: largest index plus one)
        improved (bool, optional): PyG's flag: :math:`\lambda = 2`. (default: ``False``)
        add_self_loops (bool, optional): ``False`` normalises :math:`A` alone (no loops are
            added or removed and :math:`\lambda` is unused). (default: ``True``)
        flow (str, optional): ``"target_to_source"`` counts degrees on ``edge_index[0]``,
            the nodes that receive under that flow. (default: ``"source_to_target"``)
        dtype (torch.dtype, optional): dtype of the returned weights without ``edge_weight``.
            (default: ``torch.get_default_dtype()``)
        self_loop_weight (float or Tensor, optional): :math:`\lambda > 0`; a 0-dimensional
            tensor keeps the gradient. (default: 2 with ``improved=True``, else 1)
        deterministic (bool, optional): bit-reproducible degree sums. (default: ``None``)

    Returns:
        (Tensor, Tensor): ``edge_index`` (2, |E'|) — the input's non-loop edges in input order,
        then the self-loops of nodes 0 .. |V|-1 (PyG's order) — and the normalised weights
        (|E'|,).

    Shapes:
        (2, |E|) and (|E|,) in; (2, |E'|) and (|E'|,) out, |E'| = |E| - #loops + |V|.
    """
    num_nodes = check_edge_index(edge_index, num_nodes)
    check_edge_weight(edge_weight, edge_index.size(1))
    if flow not in ("source_to_target", "target_to_source"):
        raise InputError(f"flow must be 'source_to_target' or 'target_to_source', got {flow!r}")
    lam = _resolve_self_loop_weight(improved, self_loop_weight)
    if flow == "target_to_source":
        edge_index, weight = gcn_norm(
            edge_index.flip(0), edge_weight, num_nodes, False, add_self_loops,
            dtype=dtype, self_loop_weight=lam, deterministic=deterministic,
        )  # fmt: skip
        return edge_index.flip(0), weight
    dtype = _weights_dtype(edge_weight, dtype)
    if add_self_loops:
        looped = add_loops(edge_index, num_nodes)
        edge_index = looped.edge_index
        weight = looped_weights(looped, edge_weight, lam, dtype)
    elif edge_weight is not None:
        weight = edge_weight
    else:
        weight = torch.ones(edge_index.size(1), dtype=dtype, device=edge_index.device)
    src, dst = edge_index[0], edge_index[1]
    degree = ops.scatter_sum(weight, dst, num_nodes, deterministic=deterministic)
    inv = _inverse_sqrt_degree(degree)
    return edge_index, inv[src] * weight * inv[dst]


def _weights_dtype(edge_weight: Tensor | None, dtype: torch.dtype | None) -> torch.dtype:
    """The dtype of :func:`gcn_norm`'s weights: ``edge_weight``'s, else ``dtype``'s."""
    dtype = edge_weight.dtype if edge_weight is not None else dtype or torch.get_default_dtype()
    if not dtype.is_floating_point:
        raise InputError(f"dtype must be a floating-point dtype, got {dtype}")
    return dtype


def _resolve_self_loop_weight(improved: Any, self_loop_weight: Any) -> "float | Tensor":
    r""":math:`\lambda` from PyG's ``improved`` flag and gnnkit's ``self_loop_weight``."""
    if not isinstance(improved, bool):
        raise InputError(f"improved must be True or False, got {improved!r}")
    if self_loop_weight is None:
        return 2.0 if improved else 1.0
    if isinstance(self_loop_weight, Tensor):
        if self_loop_weight.dim() != 0 or not self_loop_weight.is_floating_point():
            raise InputError(
                "self_loop_weight must be a number or a 0-dimensional floating-point tensor, "
                f"got a {self_loop_weight.dtype} tensor of shape {tuple(self_loop_weight.shape)}"
            )
        if self_loop_weight.requires_grad:  # learned (a softplus, say): kept in the graph
            return self_loop_weight
        self_loop_weight = self_loop_weight.item()
    lam = _check_self_loop_weight(self_loop_weight)
    if improved and lam != 2.0:
        raise InputError(
            f"improved=True means self_loop_weight=2, but self_loop_weight={lam:g} was given; "
            "pass only one of them"
        )
    return lam


def _script_gcn_norm(
    edge_index: Tensor,
    edge_weight: Tensor | None,
    num_nodes: int,
    fill: Tensor,
    add_self_loops: bool,
    flow: str,
    dtype: torch.dtype,
) -> "tuple[Tensor, Tensor]":
    """:func:`gcn_norm` in TorchScript (used only inside ``torch.jit.script``-ed layers)."""
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), dtype=dtype, device=edge_index.device)
    if add_self_loops:
        is_loop = edge_index[0] == edge_index[1]
        keep = ~is_loop
        loop_weight = fill.to(edge_weight.dtype).expand(num_nodes).clone()
        loop_pos = is_loop.nonzero().view(-1)
        loop_weight[edge_index[0, loop_pos]] = edge_weight[loop_pos]
        nodes = torch.arange(num_nodes, dtype=edge_index.dtype, device=edge_index.device)
        edge_index = torch.cat([edge_index[:, keep], torch.stack([nodes, nodes])], dim=1)
        edge_weight = torch.cat([edge_weight[keep], loop_weight])
    index = edge_index[1] if flow == "source_to_target" else edge_index[0]
    degree = torch.zeros(num_nodes, dtype=edge_weight.dtype, device=edge_weight.device)
    inv = degree.scatter_add(0, index, edge_weight).pow(-0.5)
    inv = inv.masked_fill(torch.isinf(inv), 0.0)
    return edge_index, inv[edge_index[0]] * edge_weight * inv[edge_index[1]]


@dataclass
class _Structure:
    """What a GCN layer derives from a graph, independent of lambda and edge weights."""

    looped: LoopedEdges | None
    edge_index: Tensor  # (2, E') the edges messages run on, senders first, PyG order
    graph: CSRGraph | None
    num_nodes: int
    # The last normalised weights with what they were computed from: (edge_weight, its
    # version, dtype, weights). Serves later calls given the same edge_weight tensor,
    # unmodified (or none), whatever ``cached`` says; weights that need a gradient or depend
    # on a learned lambda are never kept.
    memo: "tuple[Tensor | None, int, torch.dtype, Tensor] | None" = None
    # torch.sparse CSR matrices of the normalised adjacency and of its transpose, built by
    # gnnkit.models.GCN's fused step for the last weights it was given: (weights, their
    # version, A, A^T). Their lifetime is the structure's, that is the layer cache entry's.
    matrices: "tuple[Tensor, int, Tensor, Tensor] | None" = None

    def normalised(
        self, edge_weight: "Tensor | None", dtype: torch.dtype, compute: Callable[[], Tensor]
    ) -> Tensor:
        """``compute()``'s weights, reused while ``edge_weight`` is the same, unmodified."""
        version = -1 if edge_weight is None else edge_weight._version
        memo = self.memo
        if memo is not None and memo[0] is edge_weight and memo[1:3] == (version, dtype):
            return memo[3]
        with ordinary_tensors():  # kept beyond this call, maybe built under inference_mode
            weights = compute()
        self.memo = (edge_weight, version, dtype, weights)
        return weights
