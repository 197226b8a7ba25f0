"""What the models share: argument checks and the batch-normalised layer stack."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from gnnkit.errors import InputError
from gnnkit.nn.functional import relu_dropout

__all__ = ["NormalizedStack", "check_flags", "check_positive"]


def check_positive(**values: Any) -> None:
    """Each value must be a positive ``int``."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive int, got {value!r}")


def check_flags(**flags: Any) -> None:
    """Each flag must be ``True`` or ``False``."""
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise InputError(f"{name} must be True or False, got {flag!r}")


class NormalizedStack(nn.Module):
    """``convs`` with batch norm (or identity) ``bns``, then ReLU and dropout, between them.

    What :class:`~gnnkit.models.BatchNormGCN` and :class:`~gnnkit.models.BatchNormGAT` share once their layers are built: both set
    ``convs`` (:math:`L` layers), ``bns`` (:math:`L - 1`), ``num_layers`` and ``dropout``.
    """

    convs: nn.ModuleList
    bns: nn.ModuleList
    num_layers: int
    dropout: float

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
