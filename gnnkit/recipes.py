"""Every model recipe in one place: a model, its inputs and the optimiser its paper trains it with.

``gnnkit bench node|graph|link --model NAME`` looks recipes up here, and so do the PyG
references of :mod:`gnnkit.bench.pyg`, which replace only the model (and its feature
preparation): learning rate, weight decay and epochs are the recipe's, so both sides of a
comparison always train alike.

- :data:`NODE_RECIPES`: node classification. ``gcn`` and ``gat`` are the Cora set-ups of Kipf &
  Welling (arXiv 1609.02907) and Velickovic et al. (arXiv 1710.10903); ``arxiv-gcn`` is OGB's
  ogbn-arxiv GCN (``examples/nodeproppred/arxiv/gnn.py``) and ``arxiv-gat`` the same recipe
  with attention layers.
- :data:`GRAPH_RECIPES`: OGB's molecule example (``examples/graphproppred/mol``) with GCN or
  GAT layers, with or without a virtual node.
- :data:`LINK_RECIPES`: OGB's ogbl-ddi example (``examples/linkproppred/ddi/gnn.py``).
- :data:`CITATION_MODELS`, :data:`CITATION_VARIANTS`: the models of the citation-sentiment
  study (:mod:`gnnkit.citation`) by name, and its ablations as overrides of their
  hyper-parameters.

Some datasets have their own recipe for a model name (:data:`DATASET_RECIPES`): on
ogbn-arxiv ``gcn`` means ``arxiv-gcn``, which :func:`get_recipe` resolves and the benchmark
report names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

from gnnkit.errors import InputError

__all__ = [
    "CITATION_MODELS",
    "CITATION_MODEL_NAMES",
    "CITATION_SIBLING_MODELS",
    "CITATION_VARIANTS",
    "DATASET_RECIPES",
    "GRAPH_RECIPES",
    "LINK_RECIPES",
    "NODE_RECIPES",
    "Recipe",
    "get_recipe",
]

Task = Literal["node", "graph", "link"]


@dataclass(frozen=True)
class Recipe:
    """A model and the recipe for training it.

    Attributes:
        name (str): the registry name (``"gcn"``, ``"arxiv-gcn"``, ``"pyg-gcn"``...).
        task (str): ``"node"``, ``"graph"`` or ``"link"``.
        build (callable): returns a fresh model. Node recipes: ``build(in_channels,
            num_classes)``, a model whose ``forward(x, edge_index)`` returns logits. Graph
            recipes: ``build(emb_dim, num_tasks)``. Link recipes: ``build(num_nodes,
            hidden_channels)``.
        lr (float): Adam's learning rate.
        weight_decay (float): the L2 penalty (where it applies is the model's
            ``parameter_groups``).
        epochs (int): the paper's number of epochs.
        description (str): one line for listings and tables.
        features (str or callable): node recipes: how :func:`gnnkit.train.node_inputs`
            prepares the node features (``"sparse"``, ``"dense"``, ``"auto"``, ``"raw"`` or a
            callable on ``data.x``); ``"none"`` where models embed their own inputs.
        graph (callable, optional): ``graph(edge_index, num_nodes)`` prepares the edges the
            model trains on (the arxiv recipes make the citation graph symmetric); ``None``
            keeps them as the dataset stores them.
        fanouts (tuple of int): neighbours sampled per node at each hop in mini-batch mode,
            one per layer of the model (``-1``: all of them).
        protocol (str, optional): node recipes: the paper's own training protocol, a key of
            :data:`gnnkit.train.protocols.PROTOCOLS` (its stopping rule, maximum epochs and
            reported epoch), which ``gnnkit bench node --protocol paper`` trains with;
            ``None``: the recipe has none.
    """

    name: str
    task: Task
    build: Callable[..., nn.Module]
    lr: float
    weight_decay: float
    epochs: int
    description: str = ""
    features: str | Callable[[Tensor], Tensor] = "none"
    graph: Callable[[Tensor, int], Tensor] | None = None
    fanouts: tuple[int, ...] = (10, 10)
    protocol: str | None = None


# Builders import their model only when called: listing recipes (``gnnkit --help``) stays cheap.


def _node_builder(model: str) -> Callable[[int, int], nn.Module]:
    """``build(in_channels, num_classes)``: :mod:`gnnkit.models`' ``model`` with its defaults."""

    def build(in_channels: int, num_classes: int) -> nn.Module:
        from gnnkit import models

        return getattr(models, model)(in_channels, num_classes)

    build.__name__ = model
    return build


def symmetric_graph(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Both directions of every edge (:func:`gnnkit.graph.symmetrize`), as OGB's arxiv example."""
    from gnnkit.graph import symmetrize

    return symmetrize(edge_index, num_nodes)


def _node(name: str, model: str, description: str, **recipe: Any) -> Recipe:
    return Recipe(
        name=name, task="node", build=_node_builder(model), description=description, **recipe
    )


#: What the Cora recipes share: the papers' 200 epochs and weight decay 5e-4.
_CORA: dict[str, Any] = {"features": "auto", "weight_decay": 5e-4, "epochs": 200}
#: OGB's arxiv recipe, for both layer types: raw features on the symmetric graph, Adam 0.01.
_ARXIV: dict[str, Any] = {
    "features": "raw",
    "lr": 0.01,
    "weight_decay": 0.0,
    "epochs": 500,
    "graph": symmetric_graph,
    "fanouts": (15, 10, 5),
}

#: Node-classification recipes by name.
NODE_RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        _node(
            "gcn",
            "GCN",
            "GCN (Kipf & Welling 2017): 16 hidden, ReLU, dropout 0.5, Adam 0.01, wd 5e-4 on layer 1",
            lr=0.01,
            protocol="kipf-welling",
            **_CORA,
        ),
        _node(
            "gat",
            "GAT",
            "GAT (Velickovic et al. 2018): 8 heads x 8 hidden, ELU, dropout 0.6, Adam 0.005, wd 5e-4",
            lr=0.005,
            protocol="velickovic",
            **_CORA,
        ),
        _node(
            "arxiv-gcn",
            "BatchNormGCN",
            "OGB's arxiv GCN: 3 layers, 256 hidden, batch norm, dropout 0.5, Adam 0.01, symmetric graph",
            **_ARXIV,
        ),
        _node(
            "arxiv-gat",
            "BatchNormGAT",
            "OGB's arxiv GCN recipe with GAT layers: 3 layers, 8 heads x 32, batch norm, dropout 0.5",
            **_ARXIV,
        ),
    )
}

#: Per dataset, the recipe a model name stands for (``gnnkit bench node --dataset D --model M``).
DATASET_RECIPES: dict[str, dict[str, str]] = {
    "ogbn-arxiv": {"gcn": "arxiv-gcn", "gat": "arxiv-gat"},
}


def _molecule_builder(conv: str, virtual_node: bool) -> Callable[[int, int], nn.Module]:
    def build(emb_dim: int, num_tasks: int) -> nn.Module:
        from gnnkit.models import MolGNN

        return MolGNN(num_tasks, emb_dim, conv=conv, virtual_node=virtual_node)

    build.__name__ = f"mol_{conv}{'_virtual' if virtual_node else ''}"
    return build


def _molecule(conv: str, virtual_node: bool) -> Recipe:
    layer = "GCNConv 300" if conv == "gcn" else "GATConv 4 x 75"
    extra = " + virtual node" if virtual_node else ""
    return Recipe(
        name=f"{conv}-virtual" if virtual_node else conv,
        task="graph",
        build=_molecule_builder(conv, virtual_node),
        lr=1e-3,
        weight_decay=0.0,
        epochs=100,
        description=(
            f"MolGNN: AtomEncoder, 5 x (bonds + {layer}, BN, ReLU, dropout 0.5){extra}, mean pool"
        ),
    )


#: Graph-property recipes by name (OGB's ``--gnn`` names): 5 layers of 300, Adam 1e-3,
#: batches of 32, 100 epochs. Atoms and bonds are embedded by OGB's encoders.
GRAPH_RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        _molecule("gcn", False),
        _molecule("gat", False),
        _molecule("gcn", True),
        _molecule("gat", True),
    )
}


def _ddi(conv: str, description: str) -> Recipe:
    def build(num_nodes: int, hidden_channels: int) -> nn.Module:
        from gnnkit.models import LinkGNN

        return LinkGNN.ogb_ddi(num_nodes, hidden_channels, conv=conv)

    build.__name__ = f"ddi_{conv}"
    return Recipe(
        name=conv,
        task="link",
        build=build,
        lr=0.005,
        weight_decay=0.0,
        epochs=200,
        description=description,
    )


#: Link-prediction recipes by name: OGB's ddi example (Adam 0.005, 200 epochs, no weight
#: decay); the nodes have no features, the model learns an embedding per node.
LINK_RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        _ddi("gcn", "ddi GCN: embedding 256, 2 x GCNConv 256, dropout 0.5, Hadamard MLP predictor"),
        _ddi("gat", "ddi GAT: embedding 256, 2 x GATConv 4 heads x 64, dropout 0.5, Hadamard MLP"),
    )
}

#: The five models of the citation-sentiment study (:func:`gnnkit.citation.make_model`): a
#: linear SVM, a BiLSTM, a GNN over the papers, the RNN + GNN hybrid and TextGCN.
CITATION_MODELS: tuple[str, ...] = ("svm", "text", "graph", "hybrid", "textgcn")
#: The study's ablations: name -> (base model, hyper-parameter overrides).
CITATION_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "hybrid-concat": ("hybrid", {"fusion": "concat"}),
    "hybrid-gated": ("hybrid", {"fusion": "gated"}),
    "hybrid-gat": ("hybrid", {"conv": "gat"}),
    "hybrid-structure": ("hybrid", {"features": "embedding"}),
    "graph-gat": ("graph", {"conv": "gat"}),
    "graph-structure": ("graph", {"features": "embedding"}),
    "graph-text": ("graph", {"features": "text"}),
    "rgcn-text": ("rgcn", {"relations": (), "label_features": False}),
    "rgcn-edges": ("rgcn", {"label_features": False}),
}
#: Models that read the sentence graph (issue 21): the label trick and Correct & Smooth over
#: sentences sharing a citing paper or a (citing, cited) pair, and a relational GCN over
#: typed sentence edges; not in the default benchmark.
CITATION_SIBLING_MODELS: tuple[str, ...] = ("labels", "cs", "rgcn")
#: Every name the citation study accepts: the models, the ablations, the sibling models.
CITATION_MODEL_NAMES: tuple[str, ...] = (
    CITATION_MODELS + tuple(CITATION_VARIANTS) + CITATION_SIBLING_MODELS
)

_RECIPES: dict[str, dict[str, Recipe]] = {
    "node": NODE_RECIPES,
    "graph": GRAPH_RECIPES,
    "link": LINK_RECIPES,
}


def get_recipe(task: Task, name: Any, dataset: str | None = None) -> Recipe:
    """The recipe ``name`` of ``task``; an unknown name raises :class:`InputError` listing them.

    With ``dataset``, a name that dataset has its own recipe for (:data:`DATASET_RECIPES`)
    resolves to that recipe: ``get_recipe("node", "gcn", "ogbn-arxiv")`` is ``arxiv-gcn``.
    """
    if task not in _RECIPES:
        raise InputError(f"unknown task {task!r}; choose one of: {', '.join(_RECIPES)}")
    if isinstance(name, str) and dataset is not None:
        name = DATASET_RECIPES.get(dataset, {}).get(name, name)
    recipes = _RECIPES[task]
    try:
        return recipes[name]
    except (KeyError, TypeError):
        kind = "model" if task == "node" else f"{task} model"
        raise InputError(f"unknown {kind} {name!r}; known models: {', '.join(recipes)}") from None
