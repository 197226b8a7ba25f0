"""Input validation shared by every public entry point.

Each check raises :class:`gnnkit.errors.InputError` (a ``ValueError``) whose message names the
argument, says what was received and how to fix it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gnnkit.errors import InputError

__all__ = ["check_edge_index", "check_edge_weight", "check_finite", "check_node_features"]


def _preview(values: Tensor, limit: int = 5) -> str:
    shown = values.flatten()[:limit].tolist()
    more = "" if values.numel() <= limit else f" ... ({values.numel()} in all)"
    return f"{shown}{more}"


def check_edge_index(
    edge_index: Tensor, num_nodes: int | None = None, *, name: str = "edge_index"
) -> int:
    """Check that ``edge_index`` is an integer tensor of shape (2, |E|) with valid node indices.

    Args:
        edge_index (Tensor): the COO connectivity, row 0 the source and row 1 the target nodes.
        num_nodes (int, optional): the number of nodes; ``None`` derives it from the largest
            index plus one. (default: ``None``)
        name (str, optional): the argument name used in messages. (default: ``"edge_index"``)

    Returns:
        int: the number of nodes (``num_nodes`` or the derived value).
    """
    if not isinstance(edge_index, Tensor):
        raise InputError(
            f"{name} must be a torch.Tensor of shape (2, num_edges), got {type(edge_index).__name__}; "
            "build it with torch.tensor([[sources...], [targets...]], dtype=torch.long)"
        )
    if edge_index.is_floating_point() or edge_index.is_complex() or edge_index.dtype == torch.bool:
        raise InputError(
            f"{name} must hold integer node indices, got dtype {edge_index.dtype}; "
            f"convert it with {name}.long()"
        )
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        hint = (
            " (it looks transposed: use edge_index.t())"
            if edge_index.dim() == 2 and edge_index.size(1) == 2
            else ""
        )
        raise InputError(
            f"{name} must have shape (2, num_edges), got {tuple(edge_index.shape)}{hint}"
        )
    if num_nodes is not None and (
        not isinstance(num_nodes, int) or isinstance(num_nodes, bool) or num_nodes < 0
    ):
        raise InputError(f"num_nodes must be a non-negative int, got {num_nodes!r}")
    if edge_index.numel() == 0:
        return 0 if num_nodes is None else num_nodes
    negative = edge_index[edge_index < 0]
    if negative.numel():
        raise InputError(
            f"{name} holds negative node indices {_preview(negative)}; node indices start at 0"
        )
    largest = int(edge_index.max())
    if num_nodes is None:
        return largest + 1
    if largest >= num_nodes:
        too_big = edge_index[edge_index >= num_nodes]
        raise InputError(
            f"{name} holds node indices {_preview(too_big)} out of range for num_nodes={num_nodes} "
            f"(valid: 0 .. {num_nodes - 1}); pass a larger num_nodes or fix the edges"
        )
    return num_nodes


def check_edge_weight(
    edge_weight: Tensor | None, num_edges: int, *, name: str = "edge_weight"
) -> None:
    """Check that ``edge_weight`` is ``None`` or a finite floating tensor of shape (|E|,)."""
    if edge_weight is None:
        return
    if not isinstance(edge_weight, Tensor) or not edge_weight.is_floating_point():
        got = edge_weight.dtype if isinstance(edge_weight, Tensor) else type(edge_weight).__name__
        raise InputError(
            f"{name} must be a floating-point tensor, got {got}; convert it with .float()"
        )
    if edge_weight.dim() != 1 or edge_weight.numel() != num_edges:
        raise InputError(
            f"{name} must have shape ({num_edges},), one weight per edge, got {tuple(edge_weight.shape)}"
        )
    check_finite(edge_weight, name=name)


def check_finite(tensor: Tensor, *, name: str) -> None:
    """Raise if a floating-point tensor holds NaN or infinity."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = (~torch.isfinite(tensor)).sum().item()
        raise InputError(
            f"{name} holds {bad} NaN or infinite value(s); clean the input before passing it"
        )


def check_node_features(x: Tensor, num_nodes: int | None = None, *, name: str = "x") -> None:
    """Check node features: a floating tensor (dense or sparse) of shape (|V|, F), rows = nodes."""
    if not isinstance(x, Tensor):
        raise InputError(
            f"{name} must be a torch.Tensor of shape (num_nodes, num_features), got {type(x).__name__}"
        )
    if not x.is_floating_point():
        raise InputError(
            f"{name} must be floating point, got dtype {x.dtype}; convert it with {name}.float()"
        )
    if x.dim() != 2:
        raise InputError(f"{name} must have shape (num_nodes, num_features), got {tuple(x.shape)}")
    if num_nodes is not None and x.size(0) != num_nodes:
        raise InputError(
            f"{name} has {x.size(0)} rows but the graph has {num_nodes} nodes; "
            "pass one feature row per node (or the right num_nodes)"
        )
    if x.layout == torch.strided:
        check_finite(x, name=name)
    elif x.layout in (torch.sparse_coo, torch.sparse_csr):
        values = x.coalesce().values() if x.layout == torch.sparse_coo else x.values()
        check_finite(values, name=name)
