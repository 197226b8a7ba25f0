"""Input checks and helpers shared by the convolution layers."""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch
from torch import Tensor
from torch.nn.parameter import UninitializedParameter
from torch_geometric.nn.dense.linear import is_uninitialized_parameter

from gnnkit.errors import InputError
from gnnkit.nn._cache import GraphCache, _fingerprint
from gnnkit.nn.linear import sparse_linear
from gnnkit.ops.linear import linear as dense_linear
from gnnkit.utils.checks import check_node_features, values_readable

_SPARSE = (torch.sparse_coo, torch.sparse_csr)


def check_channels(lazy: tuple[str, ...] = (), **channels: int) -> None:
    """Each channel count must be a positive int; those named in ``lazy`` may also be -1
    (PyG's lazy initialisation: inferred from the first input)."""
    for name, value in channels.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            if name in lazy and value == -1 and not isinstance(value, bool):
                continue
            extra = " or -1 (inferred from the first input)" if name in lazy else ""
            raise InputError(f"{name} must be a positive int{extra}, got {value!r}")


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


_MESSAGE_PASSING_KWARGS = ("aggr", "aggr_kwargs", "flow", "node_dim", "decomposed_layers")


def check_kwargs(layer: str, kwargs: dict, accepted: tuple[str, ...]) -> None:
    """Refuse keywords neither the layer nor ``MessagePassing`` takes, listing what they take."""
    unknown = sorted(set(kwargs) - set(_MESSAGE_PASSING_KWARGS))
    if unknown:
        raise TypeError(
            f"{layer} got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; it "
            f"accepts {', '.join(accepted + _MESSAGE_PASSING_KWARGS)}"
        )


def is_lazy(lin) -> bool:
    """Whether a PyG ``Linear`` built with ``in_channels=-1`` still waits for its first input."""
    return is_uninitialized_parameter(lin.weight)


def materialize(lin, x: Tensor) -> None:
    """Give a lazy PyG ``Linear`` its input size from ``x`` (PyG's lazy initialisation)."""
    if is_lazy(lin):
        lin.initialize_parameters(lin, (x,))


def refuse_pair(layer: str, x: Any) -> None:
    """Refuse node features given as a pair, or as a Python list, to a layer of one node set."""
    if isinstance(x, list) and not all(isinstance(part, Tensor) for part in x):
        raise InputError(
            f"{layer}: x must be a (|V|, F) float tensor, got a list; convert it first "
            "(torch.tensor(x, dtype=torch.float))"
        )
    if isinstance(x, (tuple, list)):
        raise InputError(
            f"'{layer}' received a tuple of node features, but it does not support "
            "bipartite message passing; use one (|V|, F) tensor, or a layer such as "
            "SAGEConv, GraphConv or gnnkit's GATConv"
        )


def check_features(
    layer, x: Any, lin, *, validate: bool, name: str = "x", static: bool = False
) -> Tensor:
    """Check node features ``x`` for the PyG ``Linear`` ``lin`` that transforms them.

    Constant-time checks always run (type, dtype, shape, layout, channels, device); with
    ``validate`` NaN/inf in ``x`` is checked too (not under ``torch.compile``, where a
    data-dependent check would break the graph, nor while a CUDA graph is captured:
    :func:`gnnkit.utils.checks.values_readable`). ``static`` allows a dense (B, |V|, F) batch
    of feature matrices on one graph (PyG's static graphs). Runs on every forward call: each
    attribute is read once (a module's parameter is a slow ``__getattr__`` lookup).
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        check_node_features(x, name=name)  # raises with a message that says how to fix it
    dim, layout = x.dim(), x.layout
    if dim != 2:
        if dim != 3:
            check_node_features(x, name=name)
        if not (static and layout == torch.strided):
            layer_name = type(layer).__name__
            raise InputError(
                f"{layer_name}: {name} must be a (|V|, F) matrix, got shape {tuple(x.shape)}"
                + ("; static graphs (B, |V|, F) must be dense" if static else "")
            )
    if layout != torch.strided and layout not in _SPARSE:
        raise InputError(f"{name} must be dense, sparse COO or sparse CSR, got layout {layout}")
    if validate and values_readable(x):
        _check_finite(layer, x, name)
    weight = lin.weight
    if isinstance(weight, UninitializedParameter):  # PyG's lazy Linear: sized by this input
        lin.initialize_parameters(lin, (x,))
        weight = lin.weight
    if x.size(-1) != lin.in_channels:
        raise InputError(
            f"{name} has {x.size(-1)} features per node but {type(layer).__name__} was built "
            f"with in_channels={lin.in_channels}; pass in_channels={x.size(-1)} (or -1 to infer "
            "it)"
        )
    if x.dtype != weight.dtype:
        raise InputError(
            f"{name} is {x.dtype} but {type(layer).__name__}'s parameters are {weight.dtype}; "
            f"convert {name} ({name}.to({weight.dtype})) or the layer (layer.to({x.dtype}))"
        )
    if x.device != weight.device:
        raise InputError(
            f"{name} is on {x.device} and {type(layer).__name__}'s parameters on "
            f"{weight.device}; move them to one device"
        )
    return x


# The two feature tensors each layer last found finite, most recent first, as (weak
# reference, fingerprint of the values): a training step's fresh input (after dropout) does
# not push out the features every evaluation passes.
_FINITE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _check_finite(layer, x: Tensor, name: str) -> None:
    """Raise unless ``x`` is finite; skipped when ``layer`` has found this very tensor
    finite and its values have not changed since (one of its last two inputs)."""
    stored = x._values() if x.layout == torch.sparse_coo else x
    stored = stored.values() if stored.layout == torch.sparse_csr else stored
    key = _fingerprint(stored)  # never matches for an inference tensor (no version counter)
    seen = _FINITE.get(layer, ())
    for ref, known in seen:
        if ref() is x and known == key:
            _FINITE[layer] = ((ref, key), *(e for e in seen if e[0] is not ref))
            return
    # One summing pass over the stored values instead of an elementwise isfinite: any NaN
    # or inf makes the sum non-finite. A non-finite sum (possibly an overflow of finite
    # values) triggers the full check, which names the problem.
    if not math.isfinite(stored.sum().item()):
        check_node_features(x, name=name)
    _FINITE[layer] = ((weakref.ref(x), key), *seen[:1])


def check_graph_device(layer, graph_tensor: Tensor, reference: Tensor) -> None:
    """The graph must sit on the parameters' device, that of ``reference`` (a parameter, or
    features :func:`check_features` has checked)."""
    if graph_tensor.device != reference.device:
        raise InputError(
            f"edge_index is on {graph_tensor.device} and {type(layer).__name__}'s parameters "
            f"on {reference.device}; move them to one device"
        )


def uses_plain_path(layer) -> bool:
    """Whether ``layer`` must run PyG's ``message``/``aggregate`` path instead of its fused one.

    The fused kernels never build per-edge messages, so they cannot serve PyG's explain mode,
    hooks registered on ``message`` or ``aggregate``, ``decomposed_layers > 1`` (which splits
    the messages), nor ``torch.compile`` (PyG's path is the one written to trace without
    breaks). Nor :func:`torch.autocast`: the kernels take one dtype, and on PyG's path
    autocast casts each operator's inputs as it does in PyG's layer, which returns the
    dtypes PyG returns (float32 features, transformed in bfloat16 under CPU autocast, leave
    a float32 output). ``layer.fuse = False`` asks for the plain path explicitly.
    """
    return (
        not layer.fuse
        or torch.is_autocast_enabled("cpu")
        or torch.is_autocast_enabled("cuda")
        or layer.explain
        or layer.decomposed_layers > 1
        or bool(layer._message_forward_pre_hooks)
        or bool(layer._message_forward_hooks)
        or bool(layer._aggregate_forward_pre_hooks)
        or bool(layer._aggregate_forward_hooks)
        or torch.compiler.is_compiling()
    )


def runs_propagate(layer: Any, base: Any) -> bool:
    """Whether ``layer``'s fused path must call PyG's ``propagate`` rather than its own
    kernel directly: for hooks on ``propagate`` or ``message_and_aggregate``, or a subclass
    of ``base`` (which may override what ``propagate`` calls)."""
    return (
        type(layer) is not base
        or bool(layer._propagate_forward_pre_hooks)
        or bool(layer._propagate_forward_hooks)
        or bool(layer._message_and_aggregate_forward_pre_hooks)
        or bool(layer._message_and_aggregate_forward_hooks)
    )


def linear(x: Tensor, weight: Tensor, cache: GraphCache | None = None) -> Tensor:
    """``x @ weight.T`` for dense, sparse COO or sparse CSR ``x`` (sparse stays sparse).

    Sparse ``x`` goes through :func:`gnnkit.nn.sparse_linear`, its structure (and the
    transpose the backward pass needs) kept in ``cache``.
    """
    if x.layout == torch.strided:
        return dense_linear(x, weight)  # F.linear, compiled for few outputs on CPU
    return sparse_linear(x, weight, cache=cache)
