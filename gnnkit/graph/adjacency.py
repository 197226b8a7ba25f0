"""Adjacency matrices: raw, with weighted self-loops, and normalised.

NOTE: rows are receivers. ``A[i, j]`` is the weight of the edge ``j -> i`` (``edge_index[0]`` is
the source, ``edge_index[1]`` the target), so one round of message passing is ``H' = A H`` and
the normalised matrix is exactly the operator a GCN layer applies. Degrees are row sums, i.e.
in-degrees. For undirected graphs (both directions stored) ``A`` is symmetric and this is the
textbook adjacency matrix. PyG's ``to_dense_adj`` uses the transpose (rows are sources).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.utils.checks import check_edge_index, check_edge_weight

__all__ = ["adjacency"]

#: The largest dense matrix :func:`adjacency` builds, in entries (2**31: 8 GiB of float32).
DENSE_LIMIT = 2**31


def _check_loop_weight(value: object, normalize: str | None, dtype: torch.dtype) -> float:
    """``self_loop_weight`` as a float: finite, within ``dtype``'s range, and >= 0 when
    normalising (a negative weight makes degrees zero or negative, whose inverse square root
    does not exist)."""
    if isinstance(value, Tensor) and value.dim() == 0:
        value = value.item()
    valid = not isinstance(value, (bool, str, Tensor)) and hasattr(value, "__float__")
    number = float(value) if valid else math.nan  # type: ignore[arg-type]
    if normalize is not None and not (math.isfinite(number) and number >= 0):
        raise InputError(
            f"self_loop_weight must be a finite number >= 0 with normalize={normalize!r}, "
            f"got {value!r}"
        )
    if not math.isfinite(number):
        raise InputError(f"self_loop_weight must be a finite number, got {value!r}")
    if dtype.is_floating_point and abs(number) > torch.finfo(dtype).max:
        raise InputError(
            f"self_loop_weight {number!r} overflows the adjacency's {dtype} "
            f"(at most {torch.finfo(dtype).max:.3g})"
        )
    return number


def _check_dense_size(num_nodes: int, layout: str) -> None:
    if layout == "dense" and num_nodes * num_nodes > DENSE_LIMIT:
        raise InputError(
            f"a dense adjacency of {num_nodes:,} nodes has {num_nodes * num_nodes:,} entries, "
            f"above the limit of {DENSE_LIMIT:,} ({DENSE_LIMIT * 4 // 2**30} GiB of float32); "
            "pass layout='sparse', or fix num_nodes"
        )


def _normalized(
    rows: Tensor, cols: Tensor, weight: Tensor, num_nodes: int, normalize: str
) -> Tensor:
    """The entries' weights scaled by D^-1/2 on both sides (``"sym"``) or D^-1 on the left
    (``"rw"``); a node of degree 0 keeps zeros. ``"sym"`` refuses a negative weighted degree,
    whose inverse square root does not exist."""
    degree = torch.zeros(num_nodes, dtype=weight.dtype, device=weight.device)
    degree.index_add_(0, rows, weight)
    negative = (degree < 0).nonzero() if normalize == "sym" else degree.new_empty(0)
    if negative.numel():
        node = int(negative[0])
        raise InputError(
            f"normalize='sym' needs every weighted degree >= 0, but node {node} has "
            f"{float(degree[node]):g} ({negative.numel()} node(s) negative): its negative edge "
            "weights outweigh the rest; use normalize='rw' or None, or non-negative weights"
        )
    inv = degree.pow(-0.5 if normalize == "sym" else -1.0)
    inv[~torch.isfinite(inv)] = 0.0
    return inv[rows] * weight * inv[cols] if normalize == "sym" else inv[rows] * weight


def adjacency(
    edge_index: Tensor,
    num_nodes: int | None = None,
    *,
    edge_weight: Tensor | None = None,
    self_loop_weight: float = 0.0,
    normalize: Literal["sym", "rw"] | None = None,
    layout: Literal["dense", "sparse"] = "dense",
) -> Tensor:
    r"""The (normalised) adjacency matrix of a graph with weighted self-loops.

    .. math::
        \tilde{A} = A + \lambda I, \qquad
        \tilde{D}_{ii} = \sum_j \tilde{A}_{ij}, \qquad
        \hat{A}_{\text{sym}} = \tilde{D}^{-1/2} \tilde{A} \tilde{D}^{-1/2}, \qquad
        \hat{A}_{\text{rw}} = \tilde{D}^{-1} \tilde{A}

    where :math:`A_{ij}` is the weight of the edge :math:`j \to i` (summed over duplicate
    edges) and :math:`\lambda` is ``self_loop_weight``. ``normalize="sym"`` with
    :math:`\lambda = 1` is Kipf & Welling's renormalised adjacency (arXiv 1609.02907).
    Nodes with zero degree get zero rows and columns, never ``inf`` or ``NaN``. Negative edge
    weights are allowed, but ``"sym"`` refuses a node whose weighted degree is negative
    (:math:`\tilde{D}^{-1/2}` does not exist there).

    NOTE: self-loops already present in ``edge_index`` are kept and :math:`\lambda I` is added
    on top (literally :math:`A + \lambda I`). GCN layers instead follow PyG's
    ``add_remaining_self_loops``; see :func:`gnnkit.nn.gcn_norm`.

    Args:
        edge_index (Tensor): edges, shape (2, |E|), row 0 sources, row 1 targets.
        num_nodes (int, optional): number of nodes; ``None`` means the largest index plus one.
            (default: ``None``)
        edge_weight (Tensor, optional): one weight per edge, shape (|E|,). (default: all ones)
        self_loop_weight (float, optional): :math:`\lambda`, finite, and >= 0 with
            ``normalize``. (default: ``0.0``)
        normalize (str, optional): ``None``, ``"sym"`` or ``"rw"``. (default: ``None``)
        layout (str, optional): ``"dense"`` or ``"sparse"`` (a coalesced COO tensor).
            (default: ``"dense"``)

    Shapes:
        - **input:** ``edge_index`` (2, |E|), ``edge_weight`` (|E|,)
        - **output:** (|V|, |V|)
    """
    num_nodes = check_edge_index(edge_index, num_nodes)
    check_edge_weight(edge_weight, edge_index.size(1))
    if normalize not in (None, "sym", "rw"):
        raise InputError(f"normalize must be None, 'sym' or 'rw', got {normalize!r}")
    if layout not in ("dense", "sparse"):
        raise InputError(f"layout must be 'dense' or 'sparse', got {layout!r}")
    dtype = edge_weight.dtype if edge_weight is not None else torch.get_default_dtype()
    self_loop_weight = _check_loop_weight(self_loop_weight, normalize, dtype)
    _check_dense_size(num_nodes, layout)

    device = edge_index.device
    weight = (
        edge_weight
        if edge_weight is not None
        else torch.ones(edge_index.size(1), dtype=dtype, device=device)
    )
    # Rows are receivers: entry (target, source).
    rows, cols = edge_index[1], edge_index[0]
    if self_loop_weight != 0.0:
        loop = torch.arange(num_nodes, device=device)
        rows, cols = torch.cat([rows, loop]), torch.cat([cols, loop])
        weight = torch.cat(
            [weight, torch.full((num_nodes,), float(self_loop_weight), dtype=dtype, device=device)]
        )

    if normalize is not None:
        weight = _normalized(rows, cols, weight, num_nodes, normalize)

    matrix = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), weight, (num_nodes, num_nodes), check_invariants=False
    ).coalesce()
    return matrix.to_dense() if layout == "dense" else matrix
