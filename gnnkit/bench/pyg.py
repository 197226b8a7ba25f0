"""PyG's reference models, built as PyG's and OGB's own examples build them.

``gnnkit bench ... --compare pyg`` trains these through the same harness and with the same
recipe (:mod:`gnnkit.recipes`: learning rate, weight decay, epochs) as gnnkit's models;
:func:`reference` gives the recipe of the reference for any recipe gnnkit has, and with
``kind="pyg-tuned"`` the strongest configuration of the same PyG layers
(:mod:`gnnkit.bench.pyg_tuned`, ``--compare pyg-tuned``).

- Node classification on Cora: :class:`PygGCN` follows PyG's ``examples/gcn.py``
  (``torch_geometric.nn.GCNConv`` x 2, 16 hidden, ReLU, ``F.dropout(p=0.5)`` on the dense
  input and hidden features) and :class:`PygGAT` PyG's ``examples/gat.py`` (``GATConv`` with 8
  heads x 8 hidden and ``dropout=0.6``, ELU, one output head). Both are trained on
  ``T.NormalizeFeatures()`` of the dense features (:func:`pyg_normalize_features`), as the
  examples load Planetoid. NOTE: the current ``examples/gcn.py`` builds ``GCNConv`` without
  ``cached=True`` (older versions cached); :class:`PygGCN` follows the current example and
  takes ``cached`` as an option for ablations.
- ogbn-arxiv: :class:`PygArxivGCN` follows OGB's ``examples/nodeproppred/arxiv/gnn.py``
  (``GCNConv(cached=True)`` x 3, 256 hidden, ``BatchNorm1d``, ReLU, dropout 0.5, raw
  features); :class:`PygArxivGAT` has its shape with ``GATConv`` (8 heads x 32). NOTE: OGB's
  example symmetrises a torch-sparse ``SparseTensor`` (``adj_t.to_symmetric()``);
  torch-sparse ships only as a source distribution, so these take the symmetrised
  ``edge_index`` of :func:`gnnkit.graph.symmetrize`, which gives ``GCNConv`` the same
  normalised adjacency.
- Molecules (OGB ``examples/graphproppred/mol``): :class:`PygMolGNN` is 5 layers of
  ``GCNConv`` (or ``GATConv``) of 300 channels over OGB's ``AtomEncoder``, each followed by
  ``BatchNorm1d``, ReLU (not after the last) and dropout 0.5, then ``global_mean_pool`` and a
  linear head; optional virtual node as OGB's ``GNN_node_Virtualnode``. OGB's example runs
  its own edge-aware convolution; PyG's layers take no edge features, so bond features enter
  as in :class:`gnnkit.models.MolGNN`: every atom adds the sum of ``BondEncoder`` embeddings
  of its incoming bonds before each layer (written the plain way here: one ``BondEncoder``
  call per layer and a scatter-sum).
- ogbl-ddi (OGB ``examples/linkproppred/ddi/gnn.py``): :class:`PygDDI` is a learned
  ``Embedding(|V|, 256)``, two ``GCNConv(256, 256, cached=True)`` on the transposed sparse
  adjacency (``T.ToSparseTensor()``; without torch-sparse a ``torch.sparse_csr`` tensor) with
  ReLU and dropout 0.5, and OGB's ``LinkPredictor``; loss ``-log(p + 1e-15)`` on positives and
  sampled negatives, scored in two passes. The GAT variant (not in OGB's example) uses
  ``GATConv(256, 64, heads=4)`` on ``edge_index``.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
import torch_geometric.transforms as T
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import GATConv, GCNConv, global_add_pool, global_mean_pool
from torch_geometric.utils import scatter

from gnnkit.bench.harness import REFERENCES
from gnnkit.errors import InputError
from gnnkit.recipes import Recipe

__all__ = [
    "PygArxivGAT",
    "PygArxivGCN",
    "PygDDI",
    "PygGAT",
    "PygGCN",
    "PygLinkPredictor",
    "PygMolGNN",
    "pyg_normalize_features",
    "reference",
]


# ---------------------------------------------------------------------------------------------
# Node classification
# ---------------------------------------------------------------------------------------------


def pyg_normalize_features(x: Tensor) -> Tensor:
    """PyG's ``T.NormalizeFeatures()`` applied to dense features, as the examples load Planetoid."""
    dense = x.to_dense() if x.layout != torch.strided else x
    return T.NormalizeFeatures()(Data(x=dense.float().clone())).x


class PygGCN(torch.nn.Module):
    """``examples/gcn.py``'s ``GCN`` (without GDC)."""

    def __init__(
        self, in_channels: int, out_channels: int, hidden_channels: int = 16, cached: bool = False
    ) -> None:
        super().__init__()
        self.conv1 = GCNConv(in_channels, hidden_channels, cached=cached)
        self.conv2 = GCNConv(hidden_channels, out_channels, cached=cached)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = F.dropout(x, p=0.5, training=self.training)
        x = self.conv1(x, edge_index).relu()
        x = F.dropout(x, p=0.5, training=self.training)
        return self.conv2(x, edge_index)

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """``examples/gcn.py``: "Only perform weight-decay on first convolution"."""
        return [
            {"params": list(self.conv1.parameters()), "weight_decay": weight_decay},
            {"params": list(self.conv2.parameters()), "weight_decay": 0.0},
        ]


class PygGAT(torch.nn.Module):
    """``examples/gat.py``'s ``GAT`` (Cora: one output head)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 8,
        heads: int = 8,
        add_self_loops: bool = True,
    ) -> None:
        super().__init__()
        loops = {"dropout": 0.6, "add_self_loops": add_self_loops}
        self.conv1 = GATConv(in_channels, hidden_channels, heads, **loops)
        self.conv2 = GATConv(hidden_channels * heads, out_channels, heads=1, concat=False, **loops)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = F.dropout(x, p=0.6, training=self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, p=0.6, training=self.training)
        return self.conv2(x, edge_index)


class PygArxivGCN(torch.nn.Module):
    """OGB's ``examples/nodeproppred/arxiv/gnn.py`` ``GCN`` (returns logits, see NOTE above)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 256,
        num_layers: int = 3,
        dropout: float = 0.5,
        cached: bool = True,
    ) -> None:
        super().__init__()
        self.convs = torch.nn.ModuleList([GCNConv(in_channels, hidden_channels, cached=cached)])
        self.bns = torch.nn.ModuleList([torch.nn.BatchNorm1d(hidden_channels)])
        for _ in range(num_layers - 2):
            self.convs.append(GCNConv(hidden_channels, hidden_channels, cached=cached))
            self.bns.append(torch.nn.BatchNorm1d(hidden_channels))
        self.convs.append(GCNConv(hidden_channels, out_channels, cached=cached))
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for conv, bn in zip(self.convs[:-1], self.bns, strict=True):
            x = conv(x, edge_index)
            x = bn(x)
            x = F.relu(x)
            x = F.dropout(x, p=self.dropout, training=self.training)
        return self.convs[-1](x, edge_index)


class PygArxivGAT(torch.nn.Module):
    """:class:`PygArxivGCN`'s shape with ``GATConv`` (8 heads x 32 hidden, 1 output head)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 32,
        heads: int = 8,
        num_layers: int = 3,
        dropout: float = 0.5,
        add_self_loops: bool = True,
    ) -> None:
        super().__init__()
        width = hidden_channels * heads
        loops = {"add_self_loops": add_self_loops}
        self.convs = torch.nn.ModuleList()
        self.bns = torch.nn.ModuleList()
        for i in range(num_layers - 1):
            first = in_channels if i == 0 else width
            self.convs.append(GATConv(first, hidden_channels, heads, **loops))
            self.bns.append(torch.nn.BatchNorm1d(width))
        last_in = in_channels if num_layers == 1 else width
        self.convs.append(GATConv(last_in, out_channels, heads=1, concat=False, **loops))
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for conv, bn in zip(self.convs[:-1], self.bns, strict=True):
            x = F.relu(bn(conv(x, edge_index)))
            x = F.dropout(x, p=self.dropout, training=self.training)
        return self.convs[-1](x, edge_index)


# ---------------------------------------------------------------------------------------------
# Molecules
# ---------------------------------------------------------------------------------------------


class PygMolGNN(nn.Module):
    """OGB's mol ``GNN`` (``gnn.py`` + ``conv.py``) with PyG's ``GCNConv`` / ``GATConv``."""

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
    ) -> None:
        from ogb.graphproppred.mol_encoder import AtomEncoder, BondEncoder

        super().__init__()
        self.num_layers = num_layers
        self.dropout = dropout
        self.virtual_node = virtual_node
        self.atom_encoder = AtomEncoder(emb_dim)
        self.bond_encoders = nn.ModuleList(BondEncoder(emb_dim) for _ in range(num_layers))
        if conv == "gcn":
            convs = [GCNConv(emb_dim, emb_dim) for _ in range(num_layers)]
        else:
            convs = [GATConv(emb_dim, emb_dim // heads, heads=heads) for _ in range(num_layers)]
        self.convs = nn.ModuleList(convs)
        self.batch_norms = nn.ModuleList(nn.BatchNorm1d(emb_dim) for _ in range(num_layers))
        if virtual_node:
            self.virtualnode_embedding = nn.Embedding(1, emb_dim)
            nn.init.constant_(self.virtualnode_embedding.weight, 0.0)
            self.virtualnode_mlps = nn.ModuleList(
                nn.Sequential(
                    nn.Linear(emb_dim, 2 * emb_dim),
                    nn.BatchNorm1d(2 * emb_dim),
                    nn.ReLU(),
                    nn.Linear(2 * emb_dim, emb_dim),
                    nn.BatchNorm1d(emb_dim),
                    nn.ReLU(),
                )
                for _ in range(num_layers - 1)
            )
        self.graph_pred_linear = nn.Linear(emb_dim, num_tasks)

    def prepare(self, edge_index: Tensor, num_nodes: int) -> tuple[Tensor, ...]:
        """What every layer takes after the features for this batch: ``(edge_index,)``, as in
        OGB's example (each layer prepares the graph itself)."""
        return (edge_index,)

    def forward(self, batch) -> Tensor:
        x, edge_index, edge_attr, index = batch.x, batch.edge_index, batch.edge_attr, batch.batch
        num_graphs = batch.num_graphs
        h = self.atom_encoder(x)
        if self.virtual_node:
            vn = self.virtualnode_embedding(
                torch.zeros(num_graphs, dtype=edge_index.dtype, device=edge_index.device)
            )
        graph = self.prepare(edge_index, h.size(0))
        for layer in range(self.num_layers):
            if self.virtual_node:
                h = h + vn[index]
            bonds = scatter(
                self.bond_encoders[layer](edge_attr), edge_index[1], 0, h.size(0), reduce="sum"
            )
            out = self.batch_norms[layer](self.convs[layer](h + bonds, *graph))
            if layer < self.num_layers - 1:
                out = F.relu(out)
            out = F.dropout(out, self.dropout, training=self.training)
            if self.virtual_node and layer < self.num_layers - 1:
                pooled = global_add_pool(h, index, num_graphs) + vn
                vn = F.dropout(
                    self.virtualnode_mlps[layer](pooled), self.dropout, training=self.training
                )
            h = out
        return self.graph_pred_linear(global_mean_pool(h, index, num_graphs))


# ---------------------------------------------------------------------------------------------
# ogbl-ddi
# ---------------------------------------------------------------------------------------------


class PygLinkPredictor(nn.Module):
    """OGB's ``LinkPredictor``: MLP on ``x_i * x_j``, sigmoid output."""

    def __init__(
        self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int, dropout
    ) -> None:
        super().__init__()
        sizes = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.lins = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.dropout = dropout

    def reset_parameters(self) -> None:
        for lin in self.lins:
            lin.reset_parameters()

    def forward(self, x_i: Tensor, x_j: Tensor) -> Tensor:
        x = x_i * x_j
        for lin in self.lins[:-1]:
            x = F.dropout(F.relu(lin(x)), p=self.dropout, training=self.training)
        return torch.sigmoid(self.lins[-1](x))


class PygDDI(nn.Module):
    """OGB's ddi ``GCN`` + ``Embedding`` + ``LinkPredictor``, behind gnnkit's link interface."""

    def __init__(
        self,
        num_nodes: int,
        hidden_channels: int = 256,
        *,
        conv: str = "gcn",
        num_layers: int = 2,
        dropout: float = 0.5,
        heads: int = 4,
    ) -> None:
        super().__init__()
        self.conv = conv
        self.dropout = dropout
        self.emb = nn.Embedding(num_nodes, hidden_channels)
        C = hidden_channels
        if conv == "gcn":
            convs = [GCNConv(C, C, cached=True) for _ in range(num_layers)]
        else:
            convs = [GATConv(C, C // heads, heads=heads) for _ in range(num_layers)]
        self.convs = nn.ModuleList(convs)
        self.predictor = PygLinkPredictor(C, C, 1, num_layers, dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.emb.weight)
        for conv in self.convs:
            conv.reset_parameters()
        self.predictor.reset_parameters()

    def prepare_graph(self, edge_index: Tensor, num_nodes: int):
        if self.conv == "gat":
            return edge_index  # PyG's GATConv materialises per-edge messages either way
        return T.ToSparseTensor()(Data(edge_index=edge_index, num_nodes=num_nodes)).adj_t

    def encode(self, adj_t) -> Tensor:
        x = self.emb.weight
        for conv in self.convs[:-1]:
            x = F.dropout(F.relu(conv(x, adj_t)), p=self.dropout, training=self.training)
        return self.convs[-1](x, adj_t)

    def score(self, h: Tensor, pairs: Tensor) -> Tensor:
        return self.predictor(h[pairs[0]], h[pairs[1]]).view(-1)

    def forward(self, adj_t, pairs: Tensor) -> Tensor:
        return self.score(self.encode(adj_t), pairs)

    def link_loss(self, h: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        pos_loss = -torch.log(self.score(h, pos) + 1e-15).mean()
        neg_loss = -torch.log(1 - self.score(h, neg) + 1e-15).mean()
        return pos_loss + neg_loss

    def clip_groups(self) -> list[list[nn.Parameter]]:
        return [[self.emb.weight], list(self.convs.parameters()), list(self.predictor.parameters())]


# ---------------------------------------------------------------------------------------------
# References of gnnkit's recipes
# ---------------------------------------------------------------------------------------------


def _molecule(conv: str, virtual_node: bool) -> Callable[[int, int], nn.Module]:
    def build(emb_dim: int, num_tasks: int) -> nn.Module:
        return PygMolGNN(num_tasks, emb_dim, conv=conv, virtual_node=virtual_node)

    return build


def _ddi(conv: str) -> Callable[[int, int], nn.Module]:
    def build(num_nodes: int, hidden_channels: int) -> nn.Module:
        return PygDDI(num_nodes, hidden_channels, conv=conv)

    return build


#: ``(task, recipe name) -> (build, features, description)`` of PyG's counterpart.
_REFERENCES: dict[tuple[str, str], tuple[Callable[..., nn.Module], Any, str]] = {
    ("node", "gcn"): (
        PygGCN,
        pyg_normalize_features,
        "PyG examples/gcn.py: torch_geometric.nn.GCNConv, dense features, F.dropout",
    ),
    ("node", "gat"): (
        PygGAT,
        pyg_normalize_features,
        "PyG examples/gat.py: torch_geometric.nn.GATConv, dense features, F.dropout",
    ),
    ("node", "arxiv-gcn"): (
        PygArxivGCN,
        "raw",
        "OGB examples/nodeproppred/arxiv/gnn.py: PyG GCNConv x3, 256 hidden, BN, dropout 0.5",
    ),
    ("node", "arxiv-gat"): (
        PygArxivGAT,
        "raw",
        "PyG GATConv x3 (8 heads x 32), BN, dropout 0.5, in OGB's arxiv GCN recipe",
    ),
    **{
        ("graph", f"{conv}{'-virtual' if virtual else ''}"): (
            _molecule(conv, virtual),
            "none",
            f"OGB mol example with torch_geometric.nn.{conv.upper()}Conv: 5 x 300, BN, "
            f"dropout 0.5{', virtual node' if virtual else ''}",
        )
        for conv in ("gcn", "gat")
        for virtual in (False, True)
    },
    ("link", "gcn"): (
        _ddi("gcn"),
        "none",
        "OGB ddi example: Embedding 256, 2 x torch_geometric.nn.GCNConv(cached), LinkPredictor",
    ),
    ("link", "gat"): (
        _ddi("gat"),
        "none",
        "OGB ddi set-up with torch_geometric.nn.GATConv (4 heads x 64), LinkPredictor",
    ),
}


def reference(recipe: Recipe, kind: str = "pyg") -> Recipe:
    """The recipe of PyG's counterpart of ``recipe``: PyG's model (and its feature
    preparation), with ``recipe``'s learning rate, weight decay, epochs, graph and fan-outs.

    Args:
        recipe (Recipe): gnnkit's recipe (:mod:`gnnkit.recipes`).
        kind (str, optional): ``"pyg"``, the model of PyG's (or OGB's) example, or
            ``"pyg-tuned"``, the strongest configuration of PyG's layers
            (:mod:`gnnkit.bench.pyg_tuned`). The recipe is named ``<kind>-<name>``.
            (default: ``"pyg"``)

    Raises:
        InputError: an unknown ``kind``, or PyG has no such counterpart of that recipe here.
    """
    if kind == "pyg":
        table = _REFERENCES
    elif kind == "pyg-tuned":
        from gnnkit.bench.pyg_tuned import TUNED_REFERENCES

        table = TUNED_REFERENCES
    else:
        raise InputError(f"unknown reference {kind!r}; known: {', '.join(REFERENCES)}")
    key = (recipe.task, recipe.name)
    if key not in table:
        known = ", ".join(f"{task} {name}" for task, name in table)
        raise InputError(
            f"no {'PyG' if kind == 'pyg' else kind} reference for the {recipe.task} recipe "
            f"{recipe.name!r}; known: {known}"
        )
    build, features, description = table[key]
    return dataclasses.replace(
        recipe,
        name=f"{kind}-{recipe.name}",
        build=build,
        features=features,
        description=description,
    )
