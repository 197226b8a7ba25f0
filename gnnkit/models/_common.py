"""What the link and molecule models share: stacks of same-width GCN or GAT layers and their
argument check. (The two-layer and batch-norm designs are in :mod:`gnnkit.models.gcn`; the
scalar checks are :mod:`gnnkit.utils.checks`.)"""

from __future__ import annotations

from typing import Any

from torch import nn

from gnnkit.errors import InputError
from gnnkit.nn import GATConv, GCNConv, GraphCache
from gnnkit.utils.checks import check_choice, check_int

__all__ = ["check_same_width_convs", "same_width_convs"]


def same_width_convs(
    conv: str,
    channels: int,
    num_layers: int,
    *,
    heads: int = 1,
    graph_cache: GraphCache | None = None,
) -> nn.ModuleList:
    """``num_layers`` cached GCN or GAT layers of ``channels`` channels each.

    ``conv="gat"`` layers have ``heads`` heads of ``channels // heads`` channels, concatenated.
    Only the first layer validates its inputs; the others see what it has checked. Layers
    given one ``graph_cache`` share the structure built for a graph (default: each its own).
    """
    if conv == "gcn":
        layers = [
            GCNConv(channels, channels, cached=True, validate=i == 0, graph_cache=graph_cache)
            for i in range(num_layers)
        ]
    else:
        layers = [
            GATConv(
                channels,
                channels // heads,
                heads=heads,
                cached=True,
                validate=i == 0,
                graph_cache=graph_cache,
            )
            for i in range(num_layers)
        ]
    return nn.ModuleList(layers)


def check_same_width_convs(conv: Any, heads: Any, width_name: str, width: int) -> None:
    """Check the layer arguments of :func:`same_width_convs`: ``conv`` is ``"gcn"`` or
    ``"gat"``, and a GAT's ``heads`` is a positive int that divides the ``width`` channels
    (called ``width_name`` in the message)."""
    check_choice("conv", conv, ("gcn", "gat"))
    if conv == "gat":
        check_int("heads", heads)
        if width % heads:
            raise InputError(
                f"heads={heads} must divide {width_name}={width} (each head gets "
                f"{width_name} // heads channels)"
            )
