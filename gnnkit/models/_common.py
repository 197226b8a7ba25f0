"""What the models share: the two-layer paper network, the batch-normalised layer stack and
stacks of same-width layers with their argument check. (The scalar checks are
:mod:`gnnkit.utils.checks`.)"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn

from gnnkit.errors import InputError
from gnnkit.nn import GATConv, GCNConv, GraphCache
from gnnkit.nn.functional import dropout, relu_dropout, sparse_dropout
from gnnkit.utils.checks import check_choice, check_int

__all__ = ["NormalizedStack", "TwoLayerNetwork", "check_same_width_convs", "same_width_convs"]


class TwoLayerNetwork(nn.Module):
    """Dropout on the input (sparse stays sparse), ``conv1`` and its :meth:`activation`,
    dropout, ``conv2``.

    What :class:`~gnnkit.models.GCN` and :class:`~gnnkit.models.GAT` share once their layers
    are built: both set ``conv1``, ``conv2`` and ``dropout``.
    """

    conv1: nn.Module
    conv2: nn.Module
    dropout: float

    def activation(self, x: Tensor) -> Tensor:
        """The nonlinearity after the first layer."""
        raise NotImplementedError

    def reset_parameters(self) -> None:
        self.conv1.reset_parameters()
        self.conv2.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = sparse_dropout(x, self.dropout, self.training)  # sparse stays sparse
        x = self.activation(self.conv1(x, edge_index))  # (|V|, hidden width)
        x = dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index)  # (|V|, out)

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}"


class NormalizedStack(nn.Module):
    """``convs`` with batch norm (or identity) ``bns``, then ReLU and dropout, between them.

    What :class:`~gnnkit.models.BatchNormGCN` and :class:`~gnnkit.models.BatchNormGAT` share once their layers are built: both set
    ``convs`` (:math:`L` layers), ``bns`` (:math:`L - 1`), ``num_layers`` and ``dropout``.
    """

    convs: nn.ModuleList
    bns: nn.ModuleList
    num_layers: int
    dropout: float

    def _set_layers(self, convs: Iterable[nn.Module], width: int, batch_norm: bool) -> None:
        """Keep ``convs``, put batch norm over ``width`` channels (or identity) between them,
        and initialise."""
        self.convs = nn.ModuleList(convs)
        self.bns = nn.ModuleList(
            nn.BatchNorm1d(width) if batch_norm else nn.Identity()
            for _ in range(self.num_layers - 1)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.convs:
            conv.reset_parameters()
        for bn in self.bns:
            if isinstance(bn, nn.BatchNorm1d):
                bn.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for conv, bn in zip(self.convs[:-1], self.bns, strict=True):
            x = conv(x, edge_index)  # (|V|, hidden width)
            x = relu_dropout(bn(x), self.dropout, self.training)
        return self.convs[-1](x, edge_index)  # (|V|, out)

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}, dropout={self.dropout}"


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
