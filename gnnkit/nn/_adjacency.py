"""Every graph form PyG's layers accept, read into one edge list (row 0 senders, row 1 receivers).

PyG's ``MessagePassing`` layers take the connectivity as an ``edge_index`` tensor, an
``EdgeIndex``, a torch.sparse adjacency (COO, CSR or CSC) or a torch-sparse ``SparseTensor``,
the latter two *transposed* (``adj_t[i, j]`` is the edge :math:`j \\to i`), plus an optional
``size = (|V_src|, |V_dst|)`` and a ``flow``. :func:`read_graph` turns all of them into a
:class:`GraphInput` whose ``edge_index`` always sends from row 0 to row 1, so the layers' kernels
see one form; :func:`attention_adjacency` turns per-edge values back into the caller's form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.typing import WITH_TORCH_SPARSE, SparseTensor

from gnnkit.errors import InputError
from gnnkit.utils.checks import values_readable

__all__ = ["GraphInput", "attention_adjacency", "check_indices", "read_graph"]

_TORCH_SPARSE = (torch.sparse_coo, torch.sparse_csr, torch.sparse_csc)


@dataclass
class GraphInput:
    """A graph as the layers' kernels use it.

    Attributes:
        edge_index (Tensor): (2, |E|) plain integer tensor, row 0 senders, row 1 receivers.
        values (Tensor or None): (|E|, ...) the values an adjacency carried, in edge order.
        num_src (int or None): |V_src| when the input says it (an adjacency, ``size``).
        num_dst (int or None): |V_dst| likewise.
        form (str): ``"edge_index"``, ``"torch.sparse"`` or ``"SparseTensor"``.
        layout (torch.layout or None): the layout of a torch.sparse input.
        flipped (bool): the input used ``flow="target_to_source"`` (rows swapped here).
    """

    edge_index: Tensor
    values: Tensor | None
    num_src: int | None
    num_dst: int | None
    form: str
    layout: torch.layout | None = None
    flipped: bool = False

    def as_input(self, edge_index: Tensor) -> Tensor:
        """``edge_index`` (senders, receivers) in the orientation the caller's ``flow`` uses."""
        return edge_index.flip(0) if self.flipped else edge_index


def is_sparse_tensor(obj: object) -> bool:
    """Whether ``obj`` is a torch-sparse ``SparseTensor`` (never true without torch-sparse)."""
    return WITH_TORCH_SPARSE and isinstance(obj, SparseTensor)


def _check_size(name: str, size: object) -> tuple[int | None, int | None] | None:
    if size is None:
        return None
    if (
        not isinstance(size, (tuple, list, torch.Size))
        or len(size) != 2
        or any(
            s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 0) for s in size
        )
    ):
        raise InputError(
            f"{name}: size must be (num_src_nodes, num_dst_nodes), two non-negative ints, "
            f"got {size!r}"
        )
    return size[0], size[1]


def _from_torch_sparse(adj_t: Tensor) -> tuple[Tensor, Tensor, int, int]:
    """Edges (senders, receivers) and values of a transposed torch.sparse adjacency."""
    num_dst, num_src = adj_t.size(0), adj_t.size(1)
    if adj_t.layout == torch.sparse_coo:
        adj_t = adj_t.coalesce()
        rows, cols = adj_t.indices()
    elif adj_t.layout == torch.sparse_csr:
        crow, cols = adj_t.crow_indices(), adj_t.col_indices()
        rows = torch.repeat_interleave(
            torch.arange(num_dst, device=crow.device), crow.diff(), output_size=cols.numel()
        )
    else:  # CSC
        ccol, rows = adj_t.ccol_indices(), adj_t.row_indices()
        cols = torch.repeat_interleave(
            torch.arange(num_src, device=ccol.device), ccol.diff(), output_size=rows.numel()
        )
    edge_index = torch.stack([cols.long(), rows.long()])
    return edge_index, adj_t.values(), num_src, num_dst


def read_graph(layer: str, edge_index: Any, size: Any, flow: str) -> GraphInput:
    """Read ``edge_index`` in any of PyG's forms (see the module docstring).

    Args:
        layer (str): the layer's name, for messages.
        edge_index: an integer (2, |E|) tensor or ``EdgeIndex`` (``edge_index[0]`` sends to
            ``edge_index[1]`` under ``flow="source_to_target"``), or a transposed adjacency.
        size (tuple, optional): (|V_src|, |V_dst|) in ``edge_index``'s row order.
        flow (str): ``"source_to_target"`` or ``"target_to_source"``.

    Raises:
        InputError: on a malformed input, or an adjacency with ``flow="target_to_source"``
            (PyG refuses it too: an adjacency fixes the direction).
    """
    size = _check_size(layer, size)
    if is_sparse_tensor(edge_index) or (
        isinstance(edge_index, Tensor) and edge_index.layout in _TORCH_SPARSE
    ):
        if flow != "source_to_target":
            raise InputError(
                f'{layer}: flow="target_to_source" is invalid with an adjacency matrix input '
                "(adj_t already fixes the direction); pass adj_t.t() with the default flow"
            )
        if is_sparse_tensor(edge_index):
            rows, cols, values = edge_index.coo()
            num_dst, num_src = edge_index.sparse_sizes()
            ei, form, layout = torch.stack([cols, rows]), "SparseTensor", None
        else:
            if edge_index.sparse_dim() != 2:
                raise InputError(
                    f"{layer}: a sparse adjacency must be a 2-D matrix (rows = targets), got "
                    f"shape {tuple(edge_index.shape)}"
                )
            ei, values, num_src, num_dst = _from_torch_sparse(edge_index)
            form, layout = "torch.sparse", edge_index.layout
        if size is not None and (size[0] not in (None, num_src) or size[1] not in (None, num_dst)):
            raise InputError(
                f"{layer}: size={size} disagrees with the adjacency's shape "
                f"({num_dst} targets x {num_src} sources, adj_t convention)"
            )
        return GraphInput(ei, values, num_src, num_dst, form, layout)
    if isinstance(edge_index, EdgeIndex):
        sparse_size = edge_index.sparse_size()
        edge_index = edge_index.as_tensor()
        if size is None:
            size = sparse_size
    if (
        not isinstance(edge_index, Tensor)
        or edge_index.is_floating_point()
        or edge_index.is_complex()
        or edge_index.dtype == torch.bool
        or edge_index.dim() != 2
        or edge_index.size(0) != 2
    ):
        _raise_bad_edge_index(layer, edge_index)
    num_src, num_dst = size if size is not None else (None, None)
    if flow == "target_to_source":
        return GraphInput(edge_index.flip(0), None, num_dst, num_src, "edge_index", flipped=True)
    return GraphInput(edge_index, None, num_src, num_dst, "edge_index")


def square_graph_weights(
    layer: str, graph: GraphInput, edge_weight: Tensor | None, num_nodes: int
) -> Tensor | None:
    """The edge weights of a graph over ``num_nodes`` nodes: an adjacency's values, else
    ``edge_weight``; refused when both are given or the graph is not square over the nodes."""
    if graph.values is not None:
        if edge_weight is not None:
            raise InputError(
                f"{layer}: the adjacency's values are the edge weights; do not pass "
                "edge_weight as well"
            )
        edge_weight = graph.values
    for count in (graph.num_src, graph.num_dst):
        if count is not None and count != num_nodes:
            raise InputError(
                f"{layer}: the graph has {graph.num_dst} x {graph.num_src} nodes but x has "
                f"{num_nodes}; pass a square adjacency over x's nodes"
            )
    return edge_weight


def _raise_bad_edge_index(layer: str, edge_index: object) -> None:
    if not isinstance(edge_index, Tensor):
        raise InputError(
            f"{layer}: edge_index must be a (2, |E|) integer tensor, an EdgeIndex or a sparse "
            f"adjacency (torch.sparse or SparseTensor), got {type(edge_index).__name__}"
        )
    if edge_index.is_floating_point() or edge_index.is_complex() or edge_index.dtype == torch.bool:
        raise InputError(
            f"{layer}: edge_index must hold integer node indices, got dtype {edge_index.dtype}; "
            "convert it with edge_index.long(), or pass a weighted graph as a sparse adjacency"
        )
    hint = (
        " (it looks transposed: use edge_index.t())"
        if edge_index.dim() == 2 and edge_index.size(1) == 2
        else ""
    )
    raise InputError(
        f"{layer}: edge_index must have shape (2, |E|), got {tuple(edge_index.shape)}{hint}"
    )


def check_indices(layer: str, graph: GraphInput, num_src: int, num_dst: int) -> None:
    """Every sender below ``num_src`` and every receiver below ``num_dst``, none negative."""
    ei = graph.edge_index
    if ei.numel() == 0 or not values_readable(ei):  # data-dependent: would break graphs
        return
    low = int(ei.min())
    if low < 0:
        raise InputError(f"{layer}: edge_index holds a negative node index ({low})")
    rows = ("receivers", "senders") if graph.flipped else ("senders", "receivers")
    for row, count, what in ((0, num_src, rows[0]), (1, num_dst, rows[1])):
        high = int(ei[row].max())
        if high >= count:
            row_name = row if not graph.flipped else 1 - row
            raise InputError(
                f"{layer}: edge_index[{row_name}] ({what}) refers to node {high}, but the "
                f"features have only {count} rows; pass features for every node, or a "
                "size= that covers them"
            )


def attention_adjacency(
    graph: GraphInput, edge_index: Tensor, values: Tensor, num_src: int, num_dst: int
) -> Tensor | tuple[Tensor, Tensor]:
    """Per-edge ``values`` in the caller's form, as PyG's ``return_attention_weights`` gives.

    ``edge_index`` input: ``(edge_index, values)`` in the caller's orientation. torch.sparse
    input: a sparse (|V_dst|, |V_src|, H) adjacency of the same layout holding the values.
    ``SparseTensor`` input: a ``SparseTensor`` holding them.

    NOTE: a CSC input gets a CSR adjacency back (the same matrix; torch cannot convert a
    CSR matrix with a dense values dimension to CSC).

    Returns:
        ``(edge_index, values)``, ``(adjacency, values in its storage order)`` or a
        ``SparseTensor``, as PyG's ``GATConv`` returns for each input form.
    """
    if graph.form == "edge_index":
        return graph.as_input(edge_index), values
    src, dst = edge_index[0], edge_index[1]
    if graph.form == "SparseTensor":
        return SparseTensor(row=dst, col=src, value=values, sparse_sizes=(num_dst, num_src))
    shape = (num_dst, num_src, *values.shape[1:])
    adj = torch.sparse_coo_tensor(torch.stack([dst, src]), values, shape).coalesce()
    if graph.layout != torch.sparse_coo:  # rows sorted: the values keep their order
        rows, cols = adj.indices()
        crow = torch._convert_indices_from_coo_to_csr(rows, num_dst, out_int32=False)
        adj = torch.sparse_csr_tensor(crow, cols, adj.values(), shape)
    return adj, adj.values()
