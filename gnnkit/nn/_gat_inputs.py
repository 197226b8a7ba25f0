"""The inputs of :class:`gnnkit.nn.GATConv`: which nodes send and receive, with which weights,
and the edge-feature term of the attention score.

Under PyG's conventions a call may give one feature matrix or a pair ``(x_src, x_dst)``; a
layer built with ``(F_src, F_dst)`` channels maps each side with its own weights; and under
``flow="target_to_source"`` the roles of the two sides swap. :func:`read_sides` resolves all of
that into one :class:`Sides`, so the attention code sees senders and receivers only.
"""

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.utils import add_self_loops, remove_self_loops

from gnnkit.errors import InputError
from gnnkit.nn._adjacency import GraphInput, check_indices
from gnnkit.nn._common import check_channels, check_features, is_lazy, materialize
from gnnkit.ops.csr import CSRGraph
from gnnkit.utils.checks import check_finite

__all__ = [
    "ACCEPTED",
    "Sides",
    "Structure",
    "att_block",
    "build_structure",
    "check_arguments",
    "check_fill_value",
    "edge_scores",
    "read_sides",
    "sizes",
]

ACCEPTED = (
    "in_channels",
    "out_channels",
    "heads",
    "concat",
    "negative_slope",
    "dropout",
    "add_self_loops",
    "edge_dim",
    "fill_value",
    "bias",
    "residual",
    "cached",
    "deterministic",
    "validate",
    "graph_cache",
)
_FILL_REDUCTIONS = ("mean", "add", "sum", "max", "min", "mul")


@dataclass
class Structure:
    """What a GAT layer derives from a graph (cached with ``cached=True``)."""

    edge_index: Tensor  # (2, E') senders first, self-loops replaced, PyG's order
    # CSR form (lean path only): one copy per edge for the fused kernel, else one copy per
    # head, interleaved
    graph: CSRGraph | None
    num_loops: int  # self-loops added, for nodes 0 .. num_loops - 1
    fused: bool = False  # graph serves gnnkit.ops.fused_gat


def build_structure(
    layer, graph: GraphInput, num_src: int, num_dst: int, lean: bool, fused: bool = False
) -> Structure:
    """The edges attention runs on (self-loops replaced, PyG's order) and their CSR form."""
    if layer.validate:
        check_indices("GATConv", graph, num_src, num_dst)
    ei, num_loops = graph.edge_index, 0
    if layer.add_self_loops:  # PyG: loops for the nodes on both sides, 0 .. min - 1
        num_loops = min(num_src, num_dst)
        nodes = torch.arange(num_loops, dtype=ei.dtype, device=ei.device)
        ei = torch.cat([ei[:, ei[0] != ei[1]], torch.stack([nodes, nodes])], dim=1)
    csr = None
    if fused:
        csr = CSRGraph.from_edge_index(ei, num_dst, num_src)
        if torch.is_grad_enabled():  # the backward needs the transpose: build it before
            csr.transpose()  # the activations exist, not on top of them
    elif lean:  # node (i, h) is i * H + h: (|V|, H, C) features are (|V| H, C) as they are
        csr = CSRGraph.from_edge_index(ei, num_dst, num_src).interleave_heads(layer.heads)
        if torch.is_grad_enabled():  # the backward needs the transpose: build it before
            csr.transpose()  # the activations exist, not on top of them
    return Structure(ei, csr, num_loops, fused)


@dataclass
class Sides:
    """A call's senders and receivers: features, their linear maps and attention vectors."""

    x_src: Tensor
    x_dst: Tensor | None
    lin_src: Linear
    lin_dst: Linear
    att_src: Tensor
    att_dst: Tensor
    shared: bool  # one tensor and one map for both sides (not bipartite)
    residual_input: Tensor | None


def check_arguments(
    in_channels: Any,
    out_channels: Any,
    heads: Any,
    dropout: Any,
    negative_slope: Any,
    edge_dim: Any,
    fill_value: Any,
) -> int | tuple[int, int]:
    """Check GATConv's numeric arguments; return ``in_channels`` (a pair as a tuple)."""
    if isinstance(in_channels, (tuple, list)):
        if len(in_channels) != 2:
            raise InputError(f"in_channels must be an int or a pair, got {in_channels!r}")
        lazy = ("in_src_channels", "in_dst_channels")
        check_channels(lazy, in_src_channels=in_channels[0], in_dst_channels=in_channels[1])
        in_channels = (in_channels[0], in_channels[1])
    else:
        check_channels(("in_channels",), in_channels=in_channels)
    check_channels(out_channels=out_channels, heads=heads)
    if edge_dim is not None:
        check_channels(edge_dim=edge_dim)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise InputError(f"dropout must be a number in [0, 1), got {dropout!r}")
    if (
        isinstance(negative_slope, bool)
        or not isinstance(negative_slope, (int, float))
        or not math.isfinite(negative_slope)
    ):
        raise InputError(f"negative_slope must be a finite number, got {negative_slope!r}")
    check_fill_value(fill_value)
    return in_channels


def check_fill_value(value: Any) -> None:
    if isinstance(value, str):
        if value not in _FILL_REDUCTIONS:
            raise InputError(
                f"fill_value must be a number, a tensor or one of {', '.join(_FILL_REDUCTIONS)}, "
                f"got {value!r}"
            )
    elif isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
        raise InputError(f"fill_value must be a number, a tensor or a reduction, got {value!r}")
    elif not bool(torch.isfinite(torch.as_tensor(value)).all()):  # edge_attr is refused too
        raise InputError(f"fill_value must be finite, got {value!r}")


def att_block(att: Tensor) -> Tensor:
    """(H C, H) block-diagonal matrix of one attention vector per head: ``xw @ it`` is
    ``<att[h], W_h x>`` for every node and head."""
    _, heads, channels = att.shape
    eye = torch.eye(heads, dtype=att.dtype, device=att.device)
    return (att[0].unsqueeze(-1) * eye.view(heads, 1, heads)).reshape(heads * channels, heads)


def read_sides(layer, x: Any, graph: GraphInput) -> Sides:
    """Senders and receivers of this call: ``x`` or the pair ``(x_src, x_dst)``, with the
    linear map of each side."""
    pair = isinstance(x, (tuple, list))
    if pair:
        if len(x) != 2 or (x[0] is None and x[1] is None):
            raise InputError("GATConv: x must be a tensor or a pair (x_src, x_dst or None)")
        first, second = x
        residual_input = second
    else:
        first = second = residual_input = x
    lin_first, lin_second = (layer.lin, layer.lin) if layer.lin is not None else (
        layer.lin_src,
        layer.lin_dst,
    )  # fmt: skip
    if graph.flipped and (pair or layer.lin is None):
        raise InputError(
            'GATConv: flow="target_to_source" is supported for one feature matrix and int '
            "in_channels only (PyG mixes the roles of a bipartite pair under it); flip "
            "edge_index and use the default flow"
        )
    (x_src, lin_src), (x_dst, lin_dst) = (first, lin_first), (second, lin_second)
    att_src, att_dst = layer.att_src, layer.att_dst
    if x_src is None:
        raise InputError("GATConv: the source node features (x_src) must be a tensor")
    x_src = check_features(
        layer, x_src, lin_src, validate=layer.validate, name="x_src" if pair else "x"
    )
    shared = not pair and layer.lin is not None
    if x_dst is not None and not shared:
        x_dst = check_features(layer, x_dst, lin_dst, validate=layer.validate, name="x_dst")
    if layer.res is not None and residual_input is not None:
        materialize(layer.res, residual_input)
    return Sides(x_src, x_dst, lin_src, lin_dst, att_src, att_dst, shared, residual_input)


def sizes(sides: Sides, graph: GraphInput) -> tuple[int, int]:
    num_src = sides.x_src.size(0)
    num_dst = sides.x_dst.size(0) if sides.x_dst is not None else graph.num_dst
    if num_dst is None:
        raise InputError(
            "GATConv: x_dst is None, so the number of target nodes is unknown; pass "
            "size=(num_src_nodes, num_dst_nodes)"
        )
    for given, actual, what in ((graph.num_src, num_src, "source"), (graph.num_dst, num_dst, "target")):  # fmt: skip
        if given is not None and given != actual:
            raise InputError(
                f"GATConv: the graph has {given} {what} nodes (size= or the adjacency's "
                f"shape) but the features have {actual}; make them agree"
            )
    return num_src, num_dst


def _check_edge_attr(layer, edge_attr: Any, num_edges: int) -> None:
    """``edge_attr`` must be a finite floating-point (|E|, edge_dim) tensor (or (|E|,) for
    ``edge_dim=1``) of the edge weight's dtype, as ``lin_edge`` will multiply it."""
    width = layer.edge_dim
    expected = f"(|E|, edge_dim) = ({num_edges}, {width})"
    if not isinstance(edge_attr, Tensor) or not edge_attr.is_floating_point():
        got = edge_attr.dtype if isinstance(edge_attr, Tensor) else type(edge_attr).__name__
        raise InputError(
            f"GATConv: edge_attr must be a floating-point tensor {expected}, got {got}"
        )
    flat = edge_attr.dim() == 1 and width in (1, -1)
    if edge_attr.size(0) != num_edges or not (
        flat or (edge_attr.dim() == 2 and width in (-1, edge_attr.size(1)))
    ):
        raise InputError(f"GATConv: edge_attr must be {expected}, got {tuple(edge_attr.shape)}")
    weight = layer.lin_edge.weight
    if not is_lazy(layer.lin_edge) and edge_attr.dtype != weight.dtype:
        raise InputError(
            f"GATConv: edge_attr is {edge_attr.dtype} but the layer's weights are "
            f"{weight.dtype}; convert one of them (edge_attr.to({weight.dtype}) or layer.to(...))"
        )
    if layer.validate:
        check_finite(edge_attr, name="GATConv: edge_attr")


def edge_scores(
    layer, graph: GraphInput, edge_attr: Tensor | None, num_loops: int
) -> Tensor | None:
    """:math:`a^{h\\top}_{edge} W^h_{edge} e_{j,i}`, (|E'|, H) in edge order, or ``None``."""
    if layer.lin_edge is None or edge_attr is None:
        return None  # PyG ignores edge_attr without edge_dim
    if graph.form != "edge_index" and layer.add_self_loops:
        raise NotImplementedError(
            "GATConv: edge features with add_self_loops=True need edge_index as a tensor "
            "(PyG raises this too); pass edge_index and edge_attr"
        )
    _check_edge_attr(layer, edge_attr, graph.edge_index.size(1))
    attr = edge_attr.view(-1, 1) if edge_attr.dim() == 1 else edge_attr
    if layer.add_self_loops:  # the loops' features from fill_value, PyG's add_self_loops
        ei, attr = remove_self_loops(graph.edge_index, attr)
        _, attr = add_self_loops(ei, attr, layer.fill_value, num_loops)
    materialize(layer.lin_edge, attr)
    return attr @ (layer.lin_edge.weight.t() @ att_block(layer.att_edge))  # (E', H)
