"""What each task is trained on, prepared once before training.

- :func:`node_inputs` turns a PyG :class:`~torch_geometric.data.Data` with ``train_mask`` /
  ``val_mask`` / ``test_mask`` into :class:`NodeInputs`: features row-normalised (kept sparse
  where they are sparse), masks turned into index tensors, everything on one device. The
  training loop then does no per-epoch preparation at all.
- :func:`graph_splits`: an OGB graph-property dataset's train / valid / test graphs and what
  its evaluator needs (:class:`GraphSplits`).
- :func:`link_data`: an OGB link dataset's message-passing graph and edge splits
  (:class:`LinkData`).

Each has a ``fingerprint()`` that checkpoints record, so a run never resumes on other data.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.utils.checks import (
    check_device,
    check_edge_index,
    check_int,
    check_range,
    describe,
    is_integer_tensor,
)

__all__ = [
    "EVAL_TRAIN_SEED",
    "GraphSplits",
    "LinkData",
    "NodeInputs",
    "graph_splits",
    "link_data",
    "node_inputs",
    "normalize_features",
    "raw_features",
]

Layout = Literal["sparse", "dense", "auto", "raw"]

#: ``layout="auto"`` keeps features sparse when at most this fraction of entries is non-zero.
SPARSE_DENSITY = 0.1


def normalize_features(x: Tensor, *, layout: Layout = "auto") -> Tensor:
    r"""Row-normalise node features as PyG's ``T.NormalizeFeatures``, optionally kept sparse.

    .. math::
        \tilde{x}_{ij} = \frac{x_{ij} - m}{\max\bigl(1, \sum_k (x_{ik} - m)\bigr)},
        \qquad m = \min_{i, j} x_{ij}

    For non-negative bag-of-words features (Cora, CiteSeer, PubMed) :math:`m = 0` and each row
    sums to one: the row-normalisation of Kipf & Welling's ``preprocess_features``.

    NOTE: PyG's transform returns a dense matrix; with ``layout="sparse"`` (or ``"auto"`` on a
    matrix at most 10 % non-zero) the same values come back as a sparse CSR matrix, so
    Cora's 2708 x 1433 features (1.3 % non-zero) are never densified during training.

    Args:
        x (Tensor): dense or sparse (|V|, F) features.
        layout (str, optional): ``"sparse"`` (CSR), ``"dense"`` or ``"auto"``.
            (default: ``"auto"``)

    Shapes:
        - **input:** (|V|, F)
        - **output:** (|V|, F), dense or sparse CSR
    """
    if layout not in ("sparse", "dense", "auto"):
        raise InputError(f"layout must be 'sparse', 'dense' or 'auto', got {layout!r}")
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = describe(x, dtype=False)
        raise InputError(f"node features must be a (|V|, F) tensor, got {shape}")
    dense = x.to_dense() if x.layout != torch.strided else x
    if not dense.is_floating_point():
        dense = dense.float()
    if dense.numel():
        dense = dense - dense.min()
        dense = dense / dense.sum(dim=-1, keepdim=True).clamp(min=1.0)
    if layout == "auto":
        density = float((dense != 0).sum()) / max(dense.numel(), 1)
        layout = "sparse" if density <= SPARSE_DENSITY else "dense"
    if layout == "dense":
        return dense.contiguous()
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
        return dense.to_sparse_csr()


def raw_features(x: Tensor) -> Tensor:
    """Features as they are, as dense float32: no row normalisation.

    For features that are not bag-of-words counts, such as ogbn-arxiv's 128 averaged
    word2vec embeddings, which OGB's example feeds in unchanged.
    """
    dense = x.to_dense() if x.layout != torch.strided else x
    return dense.float().contiguous()


def _check_split(name: str, index: Any, num_nodes: int, device: torch.device) -> None:
    """A split's node indices: a non-empty 1-D integer tensor (not a mask) in [0, |V|)."""
    got = describe(index)
    if isinstance(index, Tensor) and index.dtype == torch.bool:
        raise InputError(
            f"{name} must hold node indices, got a boolean mask {tuple(index.shape)}; pass "
            "mask.nonzero().view(-1), or build the inputs with gnnkit.train.node_inputs(data)"
        )
    if not is_integer_tensor(index) or index.dim() != 1:
        raise InputError(f"{name} must be a 1-D integer tensor of node indices, got {got}")
    if index.device != device:
        raise InputError(f"{name} is on {index.device} but y on {device}; use one device")
    if index.numel() == 0:
        raise InputError(f"{name} holds no node; every split needs at least one node")
    check_range(name, index, num_nodes, "pass indices of the graph's nodes", what="node index")


@dataclass
class NodeInputs:
    """Everything full-batch node classification needs, prepared once.

    Attributes:
        x (Tensor): (|V|, F) floating-point node features, dense or sparse.
        edge_index (Tensor): (2, |E|) edges, source row then target row.
        y (Tensor): (|V|,) class labels in ``0 .. num_classes - 1`` (``torch.long``).
        train_idx, val_idx, test_idx (Tensor): node indices of the three splits (not masks),
            each non-empty.
        num_classes (int): number of classes.

    Raises:
        InputError: when built (:func:`node_inputs` does it for you) with mismatched sizes,
            a wrong dtype, tensors on different devices, or an index out of range.
    """

    x: Tensor
    edge_index: Tensor
    y: Tensor
    train_idx: Tensor
    val_idx: Tensor
    test_idx: Tensor
    num_classes: int

    def __post_init__(self) -> None:
        """Shapes and dtypes, plus one min/max per index tensor (built once, not per epoch)."""
        y = self.y
        if not isinstance(y, Tensor) or y.dtype not in (torch.long, torch.uint8) or y.dim() != 1:
            got = describe(y)
            raise InputError(f"y must be a 1-D torch.long tensor of class labels, got {got}")
        x, num_nodes = self.x, y.size(0)
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 2:
            got = describe(x)
            raise InputError(f"x must be a 2-D floating-point (|V|, F) tensor, got {got}")
        if x.size(0) != num_nodes:
            raise InputError(f"x has {x.size(0)} rows but y has {num_nodes} labels (one per node)")
        check_int("num_classes", self.num_classes)
        check_edge_index(self.edge_index, num_nodes)
        for name, tensor in (("x", x), ("edge_index", self.edge_index)):
            if tensor.device != y.device:
                raise InputError(
                    f"{name} is on {tensor.device} but y on {y.device}; use one device"
                )
        fix = "pass the right num_classes or fix y"
        check_range("y", y, self.num_classes, fix, what="class", unit="classes")
        for name in ("train_idx", "val_idx", "test_idx"):
            _check_split(name, getattr(self, name), num_nodes, y.device)

    @property
    def num_nodes(self) -> int:
        return self.y.size(0)

    @property
    def num_features(self) -> int:
        return self.x.size(1)

    def to(self, device: str | torch.device) -> NodeInputs:
        """A copy on ``device``."""
        device = check_device("device", device)
        return NodeInputs(
            x=self.x.to(device),
            edge_index=self.edge_index.to(device),
            y=self.y.to(device),
            train_idx=self.train_idx.to(device),
            val_idx=self.val_idx.to(device),
            test_idx=self.test_idx.to(device),
            num_classes=self.num_classes,
        )

    def fingerprint(self) -> dict[str, Any]:
        """A short description that identifies the task (recorded in checkpoints).

        Sizes plus a hash of the labels, splits and edges; the feature values are not hashed
        (two feature preprocessings of one dataset share a fingerprint only if their shapes
        agree, which is checked too).
        """
        digest = hashlib.sha256()
        for tensor in (self.y, self.train_idx, self.val_idx, self.test_idx, self.edge_index):
            digest.update(tensor.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
        return {
            "num_nodes": self.num_nodes,
            "num_features": self.num_features,
            "num_classes": self.num_classes,
            "num_edges": int(self.edge_index.size(1)),
            "splits": [
                int(self.train_idx.numel()),
                int(self.val_idx.numel()),
                int(self.test_idx.numel()),
            ],
            "sha256": digest.hexdigest()[:16],
        }


def _mask_to_index(data: Any, name: str, num_nodes: int, device: torch.device) -> Tensor:
    mask = getattr(data, name, None)
    if mask is None:
        raise InputError(
            f"the dataset has no {name}; node classification needs train_mask, val_mask and "
            "test_mask (boolean, one entry per node)"
        )
    mask = torch.as_tensor(mask)
    if mask.dim() == 2:
        raise InputError(
            f"{name} has shape {tuple(mask.shape)}: several splits are stored; select one "
            f"column first (data.{name} = data.{name}[:, 0])"
        )
    if mask.dtype != torch.bool or mask.shape != (num_nodes,):
        raise InputError(
            f"{name} must be a boolean tensor of shape ({num_nodes},), got {mask.dtype} "
            f"{tuple(mask.shape)}"
        )
    index = mask.nonzero().view(-1).to(device)
    if index.numel() == 0:
        raise InputError(f"{name} selects no node; every split needs at least one node")
    return index


def node_inputs(
    data: Any,
    *,
    features: Layout | Callable[[Tensor], Tensor] = "auto",
    device: str | torch.device = "cpu",
) -> NodeInputs:
    """Prepare a node-classification dataset for :func:`gnnkit.train.fit`.

    Args:
        data (torch_geometric.data.Data): with ``x``, ``edge_index``, ``y`` and boolean
            ``train_mask`` / ``val_mask`` / ``test_mask`` (what :func:`gnnkit.data.load`
            returns for node datasets). ``num_classes`` is read from ``data.num_classes``
            when present, else ``y.max() + 1``.
        features (str or callable, optional): ``"sparse"``, ``"dense"`` or ``"auto"``
            row-normalise with :func:`normalize_features` in that layout; ``"raw"`` keeps
            the values as they are (:func:`raw_features`); a callable
            receives ``data.x`` and returns the features to train on (for example PyG's
            ``NormalizeFeatures``). (default: ``"auto"``)
        device (str or torch.device, optional): where to put everything. (default: ``"cpu"``)
    """
    device = check_device("device", device)
    x, edge_index, y = (
        getattr(data, "x", None),
        getattr(data, "edge_index", None),
        getattr(data, "y", None),
    )
    if x is None or y is None or edge_index is None:
        missing = [n for n, v in (("x", x), ("edge_index", edge_index), ("y", y)) if v is None]
        raise InputError(
            f"the dataset has no {', '.join(missing)}; node classification needs x, edge_index and y"
        )
    y = y.view(-1) if y.dim() == 2 and y.size(1) == 1 else y
    if y.dim() != 1 or y.dtype not in (torch.int64, torch.int32):
        raise InputError(
            f"y must hold one integer class per node, got {y.dtype} of shape {tuple(y.shape)}"
        )
    num_nodes = y.size(0)
    if x.size(0) != num_nodes:  # before features(x) runs (NodeInputs checks it again)
        raise InputError(f"x has {x.size(0)} rows but y has {num_nodes} labels (one per node)")
    # NodeInputs checks the edges and the labels' range when it is built (below).
    num_classes = int(getattr(data, "num_classes", 0) or 0) or int(y.max()) + 1
    if callable(features):
        prepared = features(x)
    elif features == "raw":
        prepared = raw_features(x)
    else:
        prepared = normalize_features(x, layout=features)
    return NodeInputs(
        x=prepared.to(device),
        edge_index=edge_index.to(device),
        y=y.long().to(device),
        train_idx=_mask_to_index(data, "train_mask", num_nodes, device),
        val_idx=_mask_to_index(data, "val_mask", num_nodes, device),
        test_idx=_mask_to_index(data, "test_mask", num_nodes, device),
        num_classes=num_classes,
    )


@dataclass
class GraphSplits:
    """A graph dataset split for training, with what the evaluator needs.

    Attributes:
        name (str): the OGB dataset name (selects :class:`ogb.graphproppred.Evaluator`).
        train, valid, test: the graphs of each split (OGB dataset subsets or lists of ``Data``).
        num_tasks (int): labels per graph.
        task_type (str): OGB's ``task_type`` (``"binary classification"``, ``"regression"``...).
        metric (str): OGB's ``eval_metric`` (``"rocauc"``, ``"rmse"``...).
    """

    name: str
    train: Any
    valid: Any
    test: Any
    num_tasks: int
    task_type: str
    metric: str

    @property
    def is_classification(self) -> bool:
        return "classification" in self.task_type

    def fingerprint(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sizes": [len(self.train), len(self.valid), len(self.test)],
            "num_tasks": self.num_tasks,
        }


def graph_splits(dataset: Any, name: str | None = None) -> GraphSplits:
    """:class:`GraphSplits` of an OGB ``PygGraphPropPredDataset`` (``gnnkit.data.load``).

    Raises:
        InputError: the dataset has no OGB split, or a split is empty.
    """
    name = name or getattr(dataset, "name", None)
    for attr in ("get_idx_split", "num_tasks", "task_type", "eval_metric"):
        if not hasattr(dataset, attr):
            raise InputError(
                f"graph property prediction needs an OGB PygGraphPropPredDataset (from "
                f"gnnkit.data.load('ogbg-mol...')); {type(dataset).__name__} has no {attr}"
            )
    split = dataset.get_idx_split()
    parts = {}
    for key in ("train", "valid", "test"):
        index = split.get(key)
        if index is None or len(index) == 0:
            raise InputError(f"the {name} split has no {key!r} graphs")
        parts[key] = dataset[index]
    return GraphSplits(
        name=str(name),
        train=parts["train"],
        valid=parts["valid"],
        test=parts["test"],
        num_tasks=int(dataset.num_tasks),
        task_type=str(dataset.task_type),
        metric=str(dataset.eval_metric),
    )


#: Seed of OGB's ``eval_train`` sample (``torch.manual_seed(12345)`` in the ddi example).
EVAL_TRAIN_SEED = 12345


def _edge_list(value: Any, name: str, num_nodes: int) -> Tensor:
    if not isinstance(value, Tensor) or value.dim() != 2 or value.size(1) != 2:
        shape = describe(value, dtype=False)
        raise InputError(f"{name} must be an integer tensor of shape (M, 2), got {shape}")
    if value.is_floating_point() or value.dtype == torch.bool:
        raise InputError(f"{name} must hold integer node indices, got {value.dtype}")
    value = value.long()
    check_range(name, value, num_nodes, "pass edges between the graph's nodes", what="node index")
    return value


@dataclass
class LinkData:
    """A link-prediction task: the message-passing graph and the edge splits.

    Attributes:
        num_nodes (int): |V|.
        edge_index (Tensor): (2, |E|) the graph messages run on and negatives avoid (for
            ogbl-ddi: the training edges in both directions).
        train_pos (Tensor): (P, 2) training edges (each undirected edge once).
        valid_pos, valid_neg, test_pos, test_neg (Tensor): (M, 2) evaluation edges and their
            fixed negatives.
        eval_train_pos (Tensor): (M, 2) training edges scored at evaluation (OGB's
            ``eval_train``).
    """

    num_nodes: int
    edge_index: Tensor
    train_pos: Tensor
    valid_pos: Tensor
    valid_neg: Tensor
    test_pos: Tensor
    test_neg: Tensor
    eval_train_pos: Tensor

    def to(self, device: torch.device | str) -> LinkData:
        moved = {
            k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()
        }
        return LinkData(**moved)

    def fingerprint(self) -> dict[str, Any]:
        """Sizes and a hash of every edge list (recorded in checkpoints)."""
        digest = hashlib.sha256()
        sizes = {}
        for name in (
            "edge_index",
            "train_pos",
            "valid_pos",
            "valid_neg",
            "test_pos",
            "test_neg",
            "eval_train_pos",
        ):
            tensor = getattr(self, name)
            digest.update(tensor.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
            sizes[name] = int(tensor.numel() // 2)
        return {"num_nodes": self.num_nodes, **sizes, "sha256": digest.hexdigest()[:16]}


def link_data(
    dataset: Any,
    *,
    edge_index: Tensor | None = None,
    split: dict[str, dict[str, Tensor]] | None = None,
    eval_train_seed: int = EVAL_TRAIN_SEED,
) -> LinkData:
    """:class:`LinkData` from an OGB link dataset (``gnnkit.data.load("ogbl-ddi")``).

    Args:
        dataset: an OGB ``PygLinkPropPredDataset`` (``dataset[0].edge_index`` and
            ``dataset.get_edge_split()``); ``None`` when ``edge_index`` and ``split`` are given.
        edge_index (Tensor, optional): the message-passing graph. (default: the dataset's)
        split (dict, optional): ``{"train": {"edge"}, "valid": {"edge", "edge_neg"},
            "test": {"edge", "edge_neg"}}`` with (M, 2) tensors. (default: the dataset's)
        eval_train_seed (int, optional): seed of the permutation that picks the ``eval_train``
            edges. (default: ``12345``, OGB's)

    Raises:
        InputError: a split is missing or malformed, or holds nodes outside the graph.
    """
    if edge_index is None or split is None:
        if dataset is None:
            raise InputError("link_data needs a dataset, or both edge_index and split")
        data = dataset[0]
        edge_index = data.edge_index if edge_index is None else edge_index
        split = dataset.get_edge_split() if split is None else split
        num_nodes = int(data.num_nodes)
    else:
        num_nodes = None
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise InputError("edge_index must be a (2, |E|) integer tensor")
    if num_nodes is None:
        num_nodes = int(edge_index.max()) + 1 if edge_index.numel() else 0
    needed = {"train": ("edge",), "valid": ("edge", "edge_neg"), "test": ("edge", "edge_neg")}
    for part, keys in needed.items():
        for key in keys:
            if part not in split or key not in split[part]:
                raise InputError(
                    f"the edge split has no {part!r}/{key!r}; link prediction needs train edges "
                    "and valid/test edges with their negatives ('edge_neg')"
                )
    train = _edge_list(split["train"]["edge"], "split['train']['edge']", num_nodes)
    if train.size(0) == 0:
        raise InputError("the training split has no edges")
    valid = _edge_list(split["valid"]["edge"], "split['valid']['edge']", num_nodes)
    generator = torch.Generator().manual_seed(eval_train_seed)
    order = torch.randperm(train.size(0), generator=generator)[: valid.size(0)]
    return LinkData(
        num_nodes=num_nodes,
        edge_index=edge_index.long(),
        train_pos=train,
        valid_pos=valid,
        valid_neg=_edge_list(split["valid"]["edge_neg"], "split['valid']['edge_neg']", num_nodes),
        test_pos=_edge_list(split["test"]["edge"], "split['test']['edge']", num_nodes),
        test_neg=_edge_list(split["test"]["edge_neg"], "split['test']['edge_neg']", num_nodes),
        eval_train_pos=train[order],
    )
