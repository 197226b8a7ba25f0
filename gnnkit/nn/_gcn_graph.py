"""What a :class:`gnnkit.nn.GCNConv` derives from its graph, and how long it keeps it.

:func:`prepare` turns the graph a layer is given into the structure its kernels run on
(self-loops added the way PyG adds them for that input form, the CSR form for the fused path)
and the symmetric normalisation's edge weights,

.. math::
    \\hat{e}_{j,i} = \\frac{e_{j,i}}{\\sqrt{\\tilde{d}_j \\tilde{d}_i}}, \\qquad
    \\tilde{d}_i = \\lambda + \\sum_{j \\to i} e_{j,i}

(Kipf & Welling, ICLR 2017, arXiv 1609.02907, eq. 2 with a weighted self-loop). The structure
is kept in the layer's :class:`~gnnkit.nn.GraphCache` while the graph is unchanged; the
weights are kept with it under ``cached=True``, and otherwise while the same ``edge_weight``
tensor comes back unmodified. Weights that depend on a learned :math:`\\lambda` or on edge
weights with a gradient are computed on every call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from gnnkit import ops
from gnnkit.errors import InputError
from gnnkit.nn._adjacency import GraphInput, check_indices
from gnnkit.nn._loops import add_loops, looped_weights
from gnnkit.nn.gcn_norm import _inverse_sqrt_degree, _Structure
from gnnkit.ops.csr import CSRGraph, ordinary_tensors
from gnnkit.utils.checks import check_edge_weight, values_readable

if TYPE_CHECKING:
    from gnnkit.nn.gcn import GCNConv

# How each input form gets its self-loops in PyG's GCNConv (see gnnkit.nn._loops).
LOOP_MODES = {"edge_index": "remaining", "torch.sparse": "add", "SparseTensor": "replace"}


def build_structure(
    layer: GCNConv, graph: GraphInput, edge_weight: Tensor | None, num_nodes: int, fused: bool
) -> _Structure:
    """The graph with the layer's self-loops, and its CSR form (rows are targets) if
    ``fused``; the node indices and edge weights checked first under ``validate``."""
    ei = graph.edge_index
    if layer.validate:
        check_indices("GCNConv", graph, num_nodes, num_nodes)
        check_edge_weight(edge_weight, ei.size(1))
    looped = None
    if layer.add_self_loops:
        looped = add_loops(ei, num_nodes, LOOP_MODES[graph.form])
        ei = looped.edge_index
    csr = CSRGraph.from_edge_index(ei, num_nodes) if fused else None
    return _Structure(looped, ei, csr, num_nodes)


def normalised_weights(
    layer: GCNConv, structure: _Structure, edge_weight: Tensor | None, dtype: torch.dtype
) -> Tensor:
    """Normalised edge weights in CSR order (fused) or ``structure.edge_index`` order, in
    ``dtype`` (x's: PyG's messages promote float32 weights to float64 features too)."""
    if edge_weight is not None and edge_weight.dtype != dtype:
        edge_weight = edge_weight.to(dtype)
    csr, ei = structure.graph, structure.edge_index
    if structure.looped is not None:
        weight = looped_weights(structure.looped, edge_weight, layer.self_loop_weight, dtype)
    elif edge_weight is not None:
        weight = edge_weight
    else:
        weight = torch.ones(ei.size(1), dtype=dtype, device=ei.device)
    if csr is not None:
        weight = weight[csr.perm]  # CSR order: rows are targets
    if not layer.normalize:
        return weight
    if csr is None:
        dst = ei[1]
        degree = ops.scatter_sum(
            weight, dst, structure.num_nodes, deterministic=layer.deterministic
        )
        inv = _inverse_sqrt_degree(degree)
        return inv[ei[0]] * weight * inv[dst]
    inv = _inverse_sqrt_degree(ops.segment_sum(weight, csr.rowptr))
    return ops.gather_dst(csr, inv) * weight * ops.gather_src(csr, inv)


def prepare(
    layer: GCNConv,
    graph: GraphInput,
    edge_weight: Tensor | None,
    num_nodes: int,
    dtype: torch.dtype,
    fused: bool,
) -> tuple[_Structure, Tensor]:
    """The structure and normalised weights for one call, from the layer's cache if they
    are there (see the module's docstring for what is kept and for how long)."""
    if edge_weight is not None and not edge_weight.is_floating_point():
        raise InputError(
            f"edge weights (edge_weight, or a sparse adjacency's values) must be floating "
            f"point, got {edge_weight.dtype}; convert them with .to({dtype})"
        )
    if torch.compiler.is_compiling():  # a cache lookup reads tensor addresses: no
        structure = build_structure(layer, graph, edge_weight, num_nodes, fused)
        return structure, normalised_weights(layer, structure, edge_weight, dtype)
    # The structure (self-loops, CSR form) is always kept for the next call, validated;
    # cached=True keeps the normalised weights as well, keyed by edge_weight too. Layers
    # sharing a GraphCache share entries only where they derive the same graph.
    cached = layer.cached
    tensors = (graph.edge_index, edge_weight) if cached else (graph.edge_index,)
    loops = (layer.add_self_loops, layer.normalize, layer.initial_self_loop_weight)
    extra = (num_nodes, dtype, fused, graph.form, cached, loops)
    entry = layer._cache.lookup(tensors, extra)
    # (A registered parameter read from _parameters: nn.Module.__getattr__ is slow.)
    fixed = layer._parameters.get("raw_self_loop_weight") is None and not (
        edge_weight is not None and edge_weight.requires_grad
    )
    if entry is None:
        # Ordinary tensors without autograd history even under inference_mode: the entry
        # outlives this call (an evaluation first, then training steps that save them).
        with ordinary_tensors():
            structure = build_structure(layer, graph, edge_weight, num_nodes, fused)
            weights = (
                normalised_weights(layer, structure, edge_weight, dtype)
                if cached and fixed
                else None
            )
        entry = (structure, weights, graph.form)
        layer._cache.store(tensors, extra, entry)
    elif not cached and layer.validate and values_readable(graph.edge_index):  # new weights?
        check_edge_weight(edge_weight, graph.edge_index.size(1))
    structure, weights, _ = entry
    if not fixed:  # a learned lambda or weights with a gradient: computed on every call
        return structure, normalised_weights(layer, structure, edge_weight, dtype)
    if weights is None:  # cached=False: reused while edge_weight is the same, unmodified
        weights = structure.normalised(
            edge_weight, dtype, lambda: normalised_weights(layer, structure, edge_weight, dtype)
        )
    return structure, weights
