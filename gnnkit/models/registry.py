"""Named node-classification recipes: a model plus the features and optimiser it is trained with.

``gnnkit bench node --model NAME`` looks models up here. A :class:`ModelSpec` is also what
benchmark references provide (PyG's models, registered through the ``gnnkit.references``
entry-point group; see :mod:`gnnkit.bench.references`).

Some datasets have their own recipe for a model name (:data:`DATASET_RECIPES`). On ogbn-arxiv,
``gcn`` means OGB's arxiv GCN (``arxiv-gcn``: 3 layers, 256 hidden, batch norm, raw features,
symmetrised graph, 500 epochs), not the 2-layer Cora network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from gnnkit.errors import InputError

__all__ = ["DATASET_RECIPES", "NODE_MODELS", "ModelSpec", "get_node_model"]


@dataclass(frozen=True)
class ModelSpec:
    """A model and the paper's recipe for training it on a node-classification dataset.

    Attributes:
        name (str): the registry name (``"gcn"``, ``"pyg-gcn"``...).
        build (callable): ``build(in_channels, num_classes)`` returns a fresh model whose
            ``forward(x, edge_index)`` returns logits.
        features (str or callable): how :func:`gnnkit.train.node_inputs` prepares the node
            features: ``"sparse"``, ``"dense"``, ``"auto"`` or a callable on ``data.x``.
        lr (float): Adam's learning rate.
        weight_decay (float): the L2 penalty (where it applies is the model's
            ``parameter_groups``).
        epochs (int): the paper's number of epochs.
        description (str): one line for listings and tables.
        graph (callable, optional): ``graph(edge_index, num_nodes)`` prepares the edges the
            model trains on (the arxiv recipes make the citation graph symmetric); ``None``
            keeps them as the dataset stores them.
        fanouts (tuple of int): neighbours sampled per node at each hop in mini-batch mode,
            one per layer of the model (``-1``: all of them).
    """

    name: str
    build: Callable[[int, int], nn.Module]
    features: str | Callable[[Tensor], Tensor]
    lr: float
    weight_decay: float
    epochs: int = 200
    description: str = ""
    graph: Callable[[Tensor, int], Tensor] | None = None
    fanouts: tuple[int, ...] = (10, 10)


def _gcn(in_channels: int, num_classes: int) -> nn.Module:
    from gnnkit.models.node import GCN

    return GCN(in_channels, num_classes)


def _gat(in_channels: int, num_classes: int) -> nn.Module:
    from gnnkit.models.node import GAT

    return GAT(in_channels, num_classes)


def _arxiv_gcn(in_channels: int, num_classes: int) -> nn.Module:
    from gnnkit.models.arxiv import ArxivGCN

    return ArxivGCN(in_channels, num_classes)


def _arxiv_gat(in_channels: int, num_classes: int) -> nn.Module:
    from gnnkit.models.arxiv import ArxivGAT

    return ArxivGAT(in_channels, num_classes)


def raw_features(x: Tensor) -> Tensor:
    """The features as they are (dense float32): :func:`gnnkit.models.arxiv.raw_features`."""
    from gnnkit.models.arxiv import raw_features as prepare

    return prepare(x)


def symmetric_graph(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Both directions of every edge: :func:`gnnkit.models.arxiv.symmetrize`."""
    from gnnkit.models.arxiv import symmetrize

    return symmetrize(edge_index, num_nodes)


#: gnnkit's node-classification models by name.
NODE_MODELS: dict[str, ModelSpec] = {
    "gcn": ModelSpec(
        name="gcn",
        build=_gcn,
        features="auto",
        lr=0.01,
        weight_decay=5e-4,
        epochs=200,
        description="GCN (Kipf & Welling 2017): 16 hidden, ReLU, dropout 0.5, Adam 0.01, wd 5e-4 on layer 1",
    ),
    "gat": ModelSpec(
        name="gat",
        build=_gat,
        features="auto",
        lr=0.005,
        weight_decay=5e-4,
        epochs=200,
        description="GAT (Velickovic et al. 2018): 8 heads x 8 hidden, ELU, dropout 0.6, Adam 0.005, wd 5e-4",
    ),
    "arxiv-gcn": ModelSpec(
        name="arxiv-gcn",
        build=_arxiv_gcn,
        features=raw_features,
        lr=0.01,
        weight_decay=0.0,
        epochs=500,
        description="OGB's arxiv GCN: 3 layers, 256 hidden, batch norm, dropout 0.5, Adam 0.01, symmetric graph",
        graph=symmetric_graph,
        fanouts=(15, 10, 5),
    ),
    "arxiv-gat": ModelSpec(
        name="arxiv-gat",
        build=_arxiv_gat,
        features=raw_features,
        lr=0.01,
        weight_decay=0.0,
        epochs=500,
        description="OGB's arxiv GCN recipe with GAT layers: 3 layers, 8 heads x 32, batch norm, dropout 0.5",
        graph=symmetric_graph,
        fanouts=(15, 10, 5),
    ),
}

#: Per dataset, the recipe a model name stands for (``gnnkit bench node --dataset D --model M``).
DATASET_RECIPES: dict[str, dict[str, str]] = {
    "ogbn-arxiv": {"gcn": "arxiv-gcn", "gat": "arxiv-gat"},
}


def get_node_model(name: Any, dataset: str | None = None) -> ModelSpec:
    """The registered model ``name``; an unknown name raises :class:`InputError` listing the known ones.

    With ``dataset``, a name that dataset has its own recipe for (:data:`DATASET_RECIPES`)
    resolves to that recipe: ``get_node_model("gcn", "ogbn-arxiv")`` is ``arxiv-gcn``.
    """
    if isinstance(name, str) and dataset is not None:
        name = DATASET_RECIPES.get(dataset, {}).get(name, name)
    try:
        return NODE_MODELS[name]
    except (KeyError, TypeError):
        known = ", ".join(NODE_MODELS)
        raise InputError(f"unknown model {name!r}; known models: {known}") from None
