"""PyG reference models for the OGB benchmarks, in OGB's own example set-ups.

``gnnkit bench graph --compare pyg`` and ``gnnkit bench link --compare pyg`` train these
through the same harness as gnnkit's models (:mod:`gnnkit.train.graphprop`,
:mod:`gnnkit.train.linkpred`).

Molecules (OGB ``examples/graphproppred/mol``: ``main_pyg.py``, ``gnn.py``, ``conv.py``):
:class:`PygMolGNN` is 5 layers of ``torch_geometric.nn.GCNConv`` (or ``GATConv``) of 300
channels over OGB's ``AtomEncoder``, each layer followed by ``BatchNorm1d``, ReLU (not after
the last layer) and dropout 0.5, then ``global_mean_pool`` and a linear head; optional virtual
node as in OGB's ``GNN_node_Virtualnode``. Adam 1e-3, batch 32, 100 epochs. OGB's example uses
its own edge-aware GCN convolution (``conv.py``); the issue asks for PyG's layers, which take
no edge features, so bond features enter exactly as in gnnkit's :class:`~gnnkit.models.graph.MolGNN`:
before each layer, every node adds the sum of ``BondEncoder`` embeddings of its incoming
bonds (here written the plain way: one ``BondEncoder`` call per layer and a scatter-sum).

ogbl-ddi (OGB ``examples/linkproppred/ddi/gnn.py``): :class:`PygDDI` is a learned
``Embedding(|V|, 256)`` (Xavier-uniform), two ``torch_geometric.nn.GCNConv(256, 256,
cached=True)`` on the transposed sparse adjacency (``T.ToSparseTensor()``; without
``torch_sparse`` it is a ``torch.sparse_csr`` tensor) with ReLU and dropout 0.5 between them,
and OGB's ``LinkPredictor`` (Linear - ReLU - dropout - Linear - sigmoid on the Hadamard
product); loss ``-log(p + 1e-15)`` on positives and sampled negatives, scored in two passes.
The GAT variant (not in OGB's example) uses ``GATConv(256, 64, heads=4)`` on ``edge_index``.

Registered through the ``gnnkit.references`` entry-point group (``pyproject.toml``)::

    [project.entry-points."gnnkit.references"]
    pyg-ogbg-gcn = "benchmarks.references_ogb:PYG_OGBG_GCN"
    pyg-ogbg-gat = "benchmarks.references_ogb:PYG_OGBG_GAT"
    pyg-ogbg-gcn-virtual = "benchmarks.references_ogb:PYG_OGBG_GCN_VIRTUAL"
    pyg-ogbg-gat-virtual = "benchmarks.references_ogb:PYG_OGBG_GAT_VIRTUAL"
    pyg-ddi-gcn = "benchmarks.references_ogb:PYG_DDI_GCN"
    pyg-ddi-gat = "benchmarks.references_ogb:PYG_DDI_GAT"
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
import torch_geometric.transforms as T
from ogb.graphproppred.mol_encoder import AtomEncoder, BondEncoder
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import GATConv, GCNConv, global_add_pool, global_mean_pool
from torch_geometric.utils import scatter

from gnnkit.models import ModelSpec

__all__ = [
    "PYG_DDI_GAT",
    "PYG_DDI_GCN",
    "PYG_OGBG_GAT",
    "PYG_OGBG_GAT_VIRTUAL",
    "PYG_OGBG_GCN",
    "PYG_OGBG_GCN_VIRTUAL",
    "PygDDI",
    "PygLinkPredictor",
    "PygMolGNN",
]


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

    def forward(self, batch) -> Tensor:
        x, edge_index, edge_attr, index = batch.x, batch.edge_index, batch.edge_attr, batch.batch
        num_graphs = batch.num_graphs
        h = self.atom_encoder(x)
        if self.virtual_node:
            vn = self.virtualnode_embedding(
                torch.zeros(num_graphs, dtype=edge_index.dtype, device=edge_index.device)
            )
        for layer in range(self.num_layers):
            if self.virtual_node:
                h = h + vn[index]
            bonds = scatter(
                self.bond_encoders[layer](edge_attr), edge_index[1], 0, h.size(0), reduce="sum"
            )
            out = self.batch_norms[layer](self.convs[layer](h + bonds, edge_index))
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


def _mol_spec(conv: str, virtual_node: bool) -> ModelSpec:
    def build(emb_dim: int, num_tasks: int) -> nn.Module:
        return PygMolGNN(num_tasks, emb_dim, conv=conv, virtual_node=virtual_node)

    layer = "GCNConv" if conv == "gcn" else "GATConv (4 heads x 75)"
    return ModelSpec(
        name=f"pyg-ogbg-{conv}{'-virtual' if virtual_node else ''}",
        build=build,
        features="none",
        lr=1e-3,
        weight_decay=0.0,
        epochs=100,
        description=(
            f"OGB mol example with torch_geometric.nn.{layer}: 5 x 300, BN, dropout 0.5"
            + (", virtual node" if virtual_node else "")
        ),
    )


PYG_OGBG_GCN = _mol_spec("gcn", False)
PYG_OGBG_GAT = _mol_spec("gat", False)
PYG_OGBG_GCN_VIRTUAL = _mol_spec("gcn", True)
PYG_OGBG_GAT_VIRTUAL = _mol_spec("gat", True)


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


def _ddi_gcn(num_nodes: int, hidden_channels: int) -> nn.Module:
    return PygDDI(num_nodes, hidden_channels, conv="gcn")


def _ddi_gat(num_nodes: int, hidden_channels: int) -> nn.Module:
    return PygDDI(num_nodes, hidden_channels, conv="gat")


PYG_DDI_GCN = ModelSpec(
    name="pyg-ddi-gcn",
    build=_ddi_gcn,
    features="none",
    lr=0.005,
    weight_decay=0.0,
    epochs=200,
    description="OGB ddi example: Embedding 256, 2 x torch_geometric.nn.GCNConv(cached), LinkPredictor",
)

PYG_DDI_GAT = ModelSpec(
    name="pyg-ddi-gat",
    build=_ddi_gat,
    features="none",
    lr=0.005,
    weight_decay=0.0,
    epochs=200,
    description="OGB ddi set-up with torch_geometric.nn.GATConv (4 heads x 64), LinkPredictor",
)
