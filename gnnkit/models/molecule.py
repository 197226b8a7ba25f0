"""Graph-level property prediction for molecules (OGB ``ogbg-mol*``) from gnnkit's layers.

The architecture of OGB's ``examples/graphproppred/mol`` (``gnn.py``, ``conv.py``) with
:class:`~gnnkit.nn.GCNConv` or :class:`~gnnkit.nn.GATConv` as the message-passing layer:

.. math::
    h^{(0)}_i = \\operatorname{AtomEncoder}(x_i), \\qquad
    b^{(l)}_i = \\sum_{j \\to i} \\operatorname{BondEncoder}_l(e_{j,i})

.. math::
    h^{(l+1)} = \\operatorname{dropout}\\Big(\\operatorname{ReLU}\\big(\\operatorname{BN}_l(
    \\operatorname{conv}_l(h^{(l)} + b^{(l)}, \\mathcal{G}))\\big)\\Big)
    \\quad (\\text{no ReLU after the last layer})

.. math::
    \\hat{y}_G = W \\, \\frac{1}{|G|} \\sum_{i \\in G} h^{(L)}_i + c

with OGB's ``AtomEncoder`` (9 atom features) and ``BondEncoder`` (3 bond features, one
encoder per layer), global mean pooling and a linear head. With ``virtual_node=True`` a
virtual node per graph, connected to every atom, is added as in OGB's
``GNN_node_Virtualnode``: its state is added to every atom before each layer and updated by an
MLP of the sum of the graph's atom states.

NOTE: bond features. OGB's example runs its own edge-aware GCN (messages
:math:`\\operatorname{ReLU}(h_j + \\operatorname{BondEncoder}(e_{j,i}))`); gnnkit's and PyG's
``GCNConv``/``GATConv`` take no edge features. Here each layer's input adds, to every atom,
the sum of the bond embeddings of its incoming bonds, :math:`b^{(l)}_i` above (the linear part
of OGB's GIN message sum :math:`\\sum_j (h_j + e_{j,i})`). The PyG reference in
``benchmarks/references_ogb.py`` gets the same treatment, so both compare the same model.

Computation: :math:`b^{(l)} = C \\, T_l`, where :math:`C \\in \\mathbb{N}^{|V| \\times 13}`
counts, per atom, its incoming bonds with each value of each bond feature (one ``bincount``
per batch, shared by all layers) and :math:`T_l` stacks the three embedding tables of
``BondEncoder_l`` (13 rows in all). That equals summing ``BondEncoder_l`` over the edges,
without an |E| x d tensor per layer. All layers share one graph structure per batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gnnkit import ops
from gnnkit.errors import InputError
from gnnkit.models._common import check_same_width_convs, same_width_convs
from gnnkit.nn import GraphCache
from gnnkit.nn.functional import check_dropout, dropout, relu_dropout
from gnnkit.utils.checks import (
    check_flags,
    check_int,
    check_ints,
    is_integer_tensor,
    values_readable,
)

__all__ = ["MolGNN", "bond_counts", "mean_pool"]


def _bond_dims() -> list[int]:
    from ogb.utils.features import get_bond_feature_dims

    return list(get_bond_feature_dims())


def _values_outside(values: Tensor, low: int, high: int) -> str:
    """The distinct entries of ``values`` outside [low, high), at most five, for a message."""
    bad = values[(values < low) | (values >= high)].unique()
    shown = ", ".join(str(v) for v in bad[:5].tolist())
    return shown + (" ..." if bad.numel() > 5 else "")


def _check_bond_inputs(
    edge_attr: Tensor, target: Tensor, num_nodes: int, dims: list[int]
) -> Tensor:
    """Refuse what :func:`bond_counts` would count into another node's or feature's column, or
    fail on with a bare ``RuntimeError``; returns ``[[0, *dims[:-1]], dims]`` on the device."""
    check_int("num_nodes", num_nodes, 0)
    if not dims:
        raise InputError("dims must give the number of values of each feature, got []")
    for f, dim in enumerate(dims):
        check_int(f"dims[{f}]", dim)
    if edge_attr.dim() != 2 or edge_attr.size(1) != len(dims):
        raise InputError(
            f"edge_attr must have shape (|E|, {len(dims)}) (OGB's bond features), got "
            f"{tuple(edge_attr.shape)}"
        )
    if not is_integer_tensor(edge_attr) or not is_integer_tensor(target):
        raise InputError(
            "edge_attr and target must hold integers (feature values, node indices), got "
            f"dtypes {edge_attr.dtype} and {target.dtype}"
        )
    if target.shape != (edge_attr.size(0),):
        raise InputError(
            f"target must have shape (|E|,) = ({edge_attr.size(0)},), one node per row of "
            f"edge_attr, got {tuple(target.shape)}"
        )
    return torch.tensor([[0, *dims[:-1]], dims], device=edge_attr.device)  # (2, F)


def _refuse_outside(edge_attr: Tensor, target: Tensor, num_nodes: int, dims: list[int]) -> None:
    """Name the feature value or target :func:`bond_counts` found outside its range."""
    low, high = edge_attr.aminmax(dim=0)  # (F,)
    for f, dim in enumerate(dims):
        if low[f] < 0 or high[f] >= dim:
            raise InputError(
                f"edge_attr column {f} holds value(s) {_values_outside(edge_attr[:, f], 0, dim)} "
                f"outside [0, {dim}) (dims[{f}]={dim}); feature values must be 0 .. {dim - 1}"
            )
    raise InputError(
        f"target holds node index(es) {_values_outside(target, 0, num_nodes)} outside "
        f"[0, {num_nodes}) for num_nodes={num_nodes}; pass the batch's node count"
    )


def bond_counts(
    edge_attr: Tensor,
    target: Tensor,
    num_nodes: int,
    dims: list[int],
    dtype: torch.dtype | None = None,
) -> Tensor:
    r"""Per node, how many incoming edges carry each value of each categorical edge feature.

    ``out[i, offset_f + v]`` is the number of edges :math:`j \to i` whose feature :math:`f`
    equals :math:`v`, with ``offset_f = sum(dims[:f])``. For any embedding tables
    :math:`T_f`, ``out @ cat(T_f)`` is the sum over incoming edges of
    :math:`\sum_f T_f[e_{j,i,f}]` (an ``ogb`` ``BondEncoder`` summed onto the targets).

    Args:
        edge_attr (Tensor): (|E|, F) integer features, ``edge_attr[:, f] < dims[f]``.
        target (Tensor): (|E|,) the receiving node of each edge.
        num_nodes (int): |V|.
        dims (list of int): the number of values of each feature.
        dtype (torch.dtype, optional): of the result. (default: the default float dtype)

    Returns:
        Tensor: (|V|, sum(dims)) counts.

    Raises:
        InputError: a feature value outside [0, ``dims[f]``) or a target outside
            [0, ``num_nodes``) (counted past the end, so found from the size of
            ``bincount``'s result), or mismatched shapes.
    """
    bounds = _check_bond_inputs(edge_attr, target, num_nodes, dims)  # (2, F)
    width = sum(dims)
    offsets = bounds[0].cumsum(0)  # (F,)
    columns = edge_attr.long() + offsets  # (E, F)
    flat = target.long().unsqueeze(1) * width + columns  # (E, F)
    # A value outside its column's range, or a target outside the nodes, is counted one past
    # the end, so bincount's result grows: the check costs no host read of its own (none at
    # all while torch.compile traces or a CUDA graph captures).
    size = num_nodes * width
    checked = values_readable(edge_attr)
    if checked:
        outside = (edge_attr < 0) | (edge_attr >= bounds[1])
        outside |= ((target < 0) | (target >= num_nodes)).unsqueeze(1)
        flat = torch.where(outside, size, flat)
    counts = torch.bincount(flat.view(-1), minlength=size)
    if checked and counts.numel() > size:
        _refuse_outside(edge_attr, target, num_nodes, dims)
    return counts.view(num_nodes, width).to(dtype or torch.get_default_dtype())


def mean_pool(h: Tensor, ptr: Tensor) -> Tensor:
    """Mean of each graph's node rows; ``ptr`` (G + 1,) delimits the graphs (PyG's ``batch.ptr``).

    Empty graphs get zeros.
    """
    counts = (ptr[1:] - ptr[:-1]).clamp_(min=1).to(h.dtype).unsqueeze(1)  # (G, 1)
    return ops.segment_sum(h, ptr) / counts  # (G, C)


def _check_arguments(
    num_tasks: Any,
    emb_dim: Any,
    num_layers: Any,
    conv: Any,
    heads: Any,
    virtual_node: Any,
    residual: Any,
) -> None:
    check_ints(num_tasks=num_tasks, emb_dim=emb_dim)
    check_int("num_layers", num_layers, 2)  # OGB's rule
    check_same_width_convs(conv, heads, "emb_dim", emb_dim)
    check_flags(virtual_node=virtual_node, residual=residual)


def _virtual_node_mlp(emb_dim: int) -> nn.Sequential:
    """OGB's virtual-node update: Linear - BN - ReLU - Linear - BN - ReLU."""
    return nn.Sequential(
        nn.Linear(emb_dim, 2 * emb_dim),
        nn.BatchNorm1d(2 * emb_dim),
        nn.ReLU(),
        nn.Linear(2 * emb_dim, emb_dim),
        nn.BatchNorm1d(emb_dim),
        nn.ReLU(),
    )


class MolGNN(nn.Module):
    r"""OGB's molecule GNN (``examples/graphproppred/mol``) with gnnkit's GCN or GAT layers.

    See the module docstring for the equations and for how bond features enter.

    NOTE: departures from OGB's example. Bond embeddings are summed onto atoms before each
    layer (the layers take no edge features); dropout masks come from
    :func:`gnnkit.nn.functional.dropout` with ``draw="bytes"`` (same distribution, another
    random stream). Only
    ``JK="last"`` (the example's default) and ``pooling="mean"`` are implemented.

    Args:
        num_tasks (int): outputs per graph (OGB's ``dataset.num_tasks``).
        emb_dim (int, optional): width of every layer. (default: ``300``)
        num_layers (int, optional): message-passing layers, at least 2. (default: ``5``)
        conv (str, optional): ``"gcn"`` (:class:`~gnnkit.nn.GCNConv`) or ``"gat"``
            (:class:`~gnnkit.nn.GATConv` with ``heads`` heads of ``emb_dim // heads``
            channels, concatenated). (default: ``"gcn"``)
        heads (int, optional): attention heads for ``conv="gat"``. (default: ``4``)
        dropout (float, optional): dropout after every layer. (default: ``0.5``)
        virtual_node (bool, optional): add OGB's virtual node. (default: ``False``)
        residual (bool, optional): add each layer's input to its output. (default: ``False``)

    Shapes:
        - **input:** a PyG ``Batch`` of molecules: ``x`` (|V|, 9), ``edge_index`` (2, |E|),
          ``edge_attr`` (|E|, 3), ``batch`` (|V|,), ``ptr`` (G + 1,)
        - **output:** (G, num_tasks)
    """

    def __init__(
        self,
        num_tasks: int,
        emb_dim: int = 300,
        *,
        num_layers: int = 5,
        conv: str = "gcn",
        heads: int = 4,
        dropout: float = 0.5,
        virtual_node: bool = False,
        residual: bool = False,
    ) -> None:
        super().__init__()
        from ogb.graphproppred.mol_encoder import AtomEncoder, BondEncoder

        _check_arguments(num_tasks, emb_dim, num_layers, conv, heads, virtual_node, residual)
        self.num_tasks = num_tasks
        self.emb_dim = emb_dim
        self.num_layers = num_layers
        self.conv = conv
        self.heads = heads if conv == "gat" else 1
        self.dropout = check_dropout(dropout)
        self.virtual_node = virtual_node
        self.residual = residual
        self.bond_dims = _bond_dims()

        self.atom_encoder = AtomEncoder(emb_dim)
        self.bond_encoders = nn.ModuleList(BondEncoder(emb_dim) for _ in range(num_layers))
        # One graph cache for all layers: within a batch, layers 2..L reuse the structure
        # (self-loops, CSR form, normalised weights) that layer 1 built; a new batch rebuilds once.
        self.convs = same_width_convs(
            conv, emb_dim, num_layers, heads=heads, graph_cache=GraphCache()
        )
        self.batch_norms = nn.ModuleList(nn.BatchNorm1d(emb_dim) for _ in range(num_layers))
        if virtual_node:
            self.virtualnode_embedding = nn.Embedding(1, emb_dim)
            self.virtualnode_mlps = nn.ModuleList(
                _virtual_node_mlp(emb_dim) for _ in range(num_layers - 1)
            )
        else:
            self.virtualnode_embedding = None
            self.virtualnode_mlps = None
        self.graph_pred_linear = nn.Linear(emb_dim, num_tasks)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """OGB's initialisation: Xavier-uniform atom and bond embeddings, each layer's own,
        and a virtual-node state that starts at zero."""
        encoders = [self.atom_encoder.atom_embedding_list]
        encoders += [encoder.bond_embedding_list for encoder in self.bond_encoders]
        for embeddings in encoders:
            for embedding in embeddings:
                nn.init.xavier_uniform_(embedding.weight)
        for conv, norm in zip(self.convs, self.batch_norms, strict=True):
            conv.reset_parameters()
            norm.reset_parameters()
        if self.virtualnode_embedding is not None:
            nn.init.constant_(self.virtualnode_embedding.weight, 0.0)
            for mlp in self.virtualnode_mlps:
                for layer in mlp:
                    if hasattr(layer, "reset_parameters"):
                        layer.reset_parameters()
        self.graph_pred_linear.reset_parameters()

    def _bond_tables(self) -> list[Tensor]:
        """Per layer, the (13, emb_dim) stack of the bond encoder's embedding tables."""
        return [
            torch.cat([emb.weight for emb in encoder.bond_embedding_list])
            for encoder in self.bond_encoders
        ]

    def forward(self, batch: Any) -> Tensor:
        """Predictions (G, num_tasks) for a PyG ``Batch`` of molecules."""
        x, edge_index, edge_attr = batch.x, batch.edge_index, batch.edge_attr
        ptr = getattr(batch, "ptr", None)
        if ptr is None:
            raise InputError(
                "MolGNN needs a PyG Batch with 'ptr' (from torch_geometric.loader.DataLoader or "
                "Batch.from_data_list); a single Data object has none"
            )
        num_nodes = x.size(0)
        num_graphs = ptr.numel() - 1
        if edge_attr is None:
            raise InputError("MolGNN needs bond features (batch.edge_attr, shape (|E|, 3))")
        tables = self._bond_tables()
        counts = bond_counts(
            edge_attr, edge_index[1], num_nodes, self.bond_dims, dtype=tables[0].dtype
        )  # (N, 13)
        h = self.atom_encoder(x)  # (N, D)
        vn = None
        if self.virtual_node:
            vn = self.virtualnode_embedding.weight.expand(num_graphs, -1)  # (G, D)
            sizes = ptr[1:] - ptr[:-1]
        last = self.num_layers - 1
        for layer in range(self.num_layers):
            if vn is not None:
                h = h + vn.repeat_interleave(sizes, dim=0, output_size=num_nodes)
            out = self.convs[layer](torch.addmm(h, counts, tables[layer]), edge_index)
            out = self.batch_norms[layer](out)
            if layer < last:
                out = relu_dropout(out, self.dropout, self.training, draw="bytes")
            else:
                out = dropout(out, self.dropout, self.training, draw="bytes")
            if self.residual:
                out = out + h
            if vn is not None and layer < last:
                pooled = ops.segment_sum(h, ptr) + vn  # (G, D)
                vn = dropout(
                    self.virtualnode_mlps[layer](pooled), self.dropout, self.training, draw="bytes"
                )
            h = out
        return self.graph_pred_linear(mean_pool(h, ptr))  # (G, num_tasks)

    def extra_repr(self) -> str:
        heads = f", heads={self.heads}" if self.conv == "gat" else ""
        return (
            f"num_tasks={self.num_tasks}, emb_dim={self.emb_dim}, num_layers={self.num_layers}, "
            f"conv={self.conv}{heads}, dropout={self.dropout:g}, "
            f"virtual_node={self.virtual_node}, residual={self.residual}, pooling=mean"
        )
