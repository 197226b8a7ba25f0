"""Input checks and helpers shared by the convolution layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.nn._cache import GraphCache
from gnnkit.nn.linear import sparse_linear
from gnnkit.utils.checks import check_edge_index, check_node_features

_SPARSE = (torch.sparse_coo, torch.sparse_csr)


def check_channels(**channels: int) -> None:
    """Each channel count must be a positive int."""
    for name, value in channels.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(f"{name} must be a positive int, got {value!r}")


def check_sum_aggregation(layer: str, kwargs: dict) -> None:
    """The layers aggregate by sum: ``aggr`` in the ``MessagePassing`` ``kwargs`` must be
    ``"add"`` (set when absent)."""
    aggr = kwargs.setdefault("aggr", "add")
    if aggr != "add":
        raise InputError(f"{layer} aggregates by sum; aggr must be 'add', got {aggr!r}")


def check_options(deterministic: bool | None, **flags: bool) -> None:
    """Each flag must be ``True`` or ``False``; ``deterministic`` may also be ``None``."""
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise InputError(f"{name} must be True or False, got {flag!r}")
    if deterministic is not None and not isinstance(deterministic, bool):
        raise InputError(f"deterministic must be True, False or None, got {deterministic!r}")


def layer_caches(graph_cache: GraphCache | None) -> tuple[GraphCache, GraphCache]:
    """A layer's graph cache (``graph_cache``, shared, or its own) and its own feature cache
    (the structure of sparse ``x``, see :func:`gnnkit.nn.sparse_linear`)."""
    if not isinstance(graph_cache, GraphCache | None):
        raise InputError(f"graph_cache must be a GraphCache, got {type(graph_cache).__name__}")
    return graph_cache if graph_cache is not None else GraphCache(), GraphCache()


def check_inputs(layer, x: Tensor, edge_index: Tensor, *, validate: bool) -> int:
    """Check ``x`` and the form of ``edge_index`` for ``layer``; return the number of nodes.

    Constant-time checks always run (types, dtypes, shapes, ``x`` against ``in_channels``);
    with ``validate`` NaN/inf in ``x`` is checked too. Node indices are checked where the
    layer builds its graph structure.
    """
    name = type(layer).__name__
    if isinstance(x, (tuple, list)):
        raise InputError(
            f"{name} received a pair of node feature tensors; bipartite message passing is "
            "not supported, pass one (|V|, F) tensor for all nodes"
        )
    if (
        not isinstance(edge_index, Tensor)
        or edge_index.is_floating_point()
        or edge_index.is_complex()
        or edge_index.dtype == torch.bool
        or edge_index.dim() != 2
        or edge_index.size(0) != 2
    ):
        check_edge_index(edge_index)  # raises with a message that says how to fix it
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 2:
        check_node_features(x)  # raises with a message that says how to fix it
    if x.layout != torch.strided and x.layout not in _SPARSE:
        raise InputError(f"x must be dense, sparse COO or sparse CSR, got layout {x.layout}")
    if validate:
        # One summing pass over the stored values instead of an elementwise isfinite: any NaN
        # or inf makes the sum non-finite. A non-finite sum (possibly an overflow of finite
        # values) triggers the full check, which names the problem.
        stored = x._values() if x.layout == torch.sparse_coo else x
        stored = stored.values() if stored.layout == torch.sparse_csr else stored
        if not bool(torch.isfinite(stored.sum())):
            check_node_features(x)
    if x.size(1) != layer.in_channels:
        raise InputError(
            f"x has {x.size(1)} features per node but {name} was built with "
            f"in_channels={layer.in_channels}"
        )
    weight = layer.lin.weight
    if x.dtype != weight.dtype:
        raise InputError(
            f"x is {x.dtype} but {name}'s parameters are {weight.dtype}; convert x "
            f"(x.to({weight.dtype})) or the layer (layer.to({x.dtype}))"
        )
    if x.device != weight.device or edge_index.device != weight.device:
        raise InputError(
            f"x is on {x.device}, edge_index on {edge_index.device} and {name}'s parameters on "
            f"{weight.device}; move them to one device"
        )
    return x.size(0)


def linear(x: Tensor, weight: Tensor, cache: GraphCache | None = None) -> Tensor:
    """``x @ weight.T`` for dense, sparse COO or sparse CSR ``x`` (sparse stays sparse).

    Sparse ``x`` goes through :func:`gnnkit.nn.sparse_linear`, its structure (and the
    transpose the backward pass needs) kept in ``cache``.
    """
    if x.layout == torch.strided:
        return F.linear(x, weight)
    return sparse_linear(x, weight, cache=cache)
