"""Building ``edge_index`` tensors: from human-readable edge lists, and symmetric versions."""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.utils.checks import check_edge_index, check_flag

__all__ = ["from_edge_list", "parse_edge_string", "symmetrize"]

_TOKEN = re.compile(r"^([^\s-]+)-([^\s-]+)$")


def parse_edge_string(edges: str) -> list[str]:
    """Split ``"A-B,B-C"`` (or ``"A-B B-C"``) into edge tokens ``["A-B", "B-C"]``.

    Commas separate tokens when present, whitespace otherwise. Empty tokens (``"A-B,,B-C"``, a
    trailing comma, an empty string) are kept so :func:`from_edge_list` can report them.
    """
    if not isinstance(edges, str):
        raise InputError(
            f"edges must be a string such as 'A-B,B-C', got {type(edges).__name__}; pass a list "
            "of tokens to from_edge_list() directly"
        )
    text = edges.strip()
    if "," in text:
        return [token.strip() for token in text.split(",")]
    return text.split() or [""]


def from_edge_list(edges: Iterable[str], directed: bool = False) -> tuple[Tensor, list[str]]:
    """Turn labelled edges such as ``["A-B", "B-C"]`` into an ``edge_index`` and node labels.

    Nodes are numbered in order of first appearance. An undirected graph gets both directions of
    every edge, which is how PyG stores undirected graphs; duplicates are removed.

    Args:
        edges (iterable of str): tokens ``"U-V"``; a label is any text without ``-`` or spaces.
        directed (bool, optional): keep only ``U -> V`` instead of both directions.
            (default: ``False``)

    Returns:
        (Tensor, list[str]): ``edge_index`` of shape (2, |E|) (dtype long, sorted by source then
        target) and ``labels``, where ``labels[i]`` names node ``i``.

    Example:
        >>> edge_index, labels = from_edge_list(["A-B", "B-C"])
        >>> labels
        ['A', 'B', 'C']
        >>> edge_index.tolist()
        [[0, 1, 1, 2], [1, 0, 2, 1]]
    """
    check_flag("directed", directed)
    if isinstance(edges, str):
        raise InputError(
            f"edges must be a list of tokens such as ['A-B', 'B-C'], got the string {edges!r}; "
            "use parse_edge_string() to split a string"
        )
    labels: list[str] = []
    index: dict[str, int] = {}
    pairs: set[tuple[int, int]] = set()
    tokens = list(edges)
    if not tokens:
        raise InputError("edges is empty; give at least one edge such as 'A-B'")
    for position, token in enumerate(tokens, start=1):
        match = _TOKEN.match(token.strip()) if isinstance(token, str) else None
        if match is None:
            raise InputError(
                f"malformed edge token {token!r} (edge {position}); write each edge as 'U-V', "
                "two labels joined by a single '-', for example 'A-B'"
            )
        u, v = match.groups()
        for label in (u, v):
            if label not in index:
                index[label] = len(labels)
                labels.append(label)
        pairs.add((index[u], index[v]))
        if not directed:
            pairs.add((index[v], index[u]))
    edge_index = torch.tensor(sorted(pairs), dtype=torch.long).t().contiguous()
    return edge_index, labels


def symmetrize(edge_index: Tensor, num_nodes: int | None = None) -> Tensor:
    """The undirected version of a directed graph: both directions of every edge, once each.

    This is what OGB's example gets from ``adj_t.to_symmetric()``: the pattern of
    :math:`A + A^\\top` with duplicate edges merged. It is computed with PyG's
    ``to_undirected``, so it needs no torch-sparse. Self-loops are kept as they are.

    Args:
        edge_index (Tensor): (2, |E|) directed edges.
        num_nodes (int, optional): |V|. (default: largest index plus one)

    Returns:
        Tensor: (2, |E'|) edges sorted by source then target, each edge with its reverse.
    """
    from torch_geometric.utils import to_undirected

    num_nodes = check_edge_index(edge_index, num_nodes)
    return to_undirected(edge_index, num_nodes=num_nodes)
