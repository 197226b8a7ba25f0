"""Mini-batch training for graph property prediction (OGB ``ogbg-mol*``), OGB's protocol.

One epoch (``examples/graphproppred/mol/main_pyg.py``):

1. training pass (``model.train()``): the training graphs in shuffled batches of
   ``batch_size`` (32); per batch one Adam step on the loss over the labelled entries
   (``BCEWithLogitsLoss`` for classification, ``MSELoss`` for regression; missing labels,
   stored as NaN, are skipped). As in OGB's example, a batch with a single node or a single
   graph is skipped (batch normalisation needs two rows);
2. evaluation (``model.eval()``, no gradients) of the validation and test graphs with
   :class:`ogb.graphproppred.Evaluator` (ROC-AUC, RMSE... whatever the dataset's metric is).
   NOTE: OGB's example also evaluates the training set every epoch; that is off by default
   here (``eval_train=False``) because nothing is selected on it and it costs as much as the
   training pass.

The reported test score is the test score at the epoch with the best validation score
(highest for ROC-AUC/AP/accuracy, lowest for RMSE/MAE; ties keep the earlier epoch), as OGB's
example reports it.

:class:`GraphTask` is this protocol as a task of the training engine: :func:`graph_run`
builds its :class:`~gnnkit.train.engine.Run`, which a benchmark steps in turn with another
one under the same machine load (:func:`~gnnkit.train.engine.interleave`), and
:func:`fit_graph` runs one to the end.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from gnnkit.errors import InputError
from gnnkit.train.checkpoint import run_identity
from gnnkit.train.engine import NonFiniteLossError, Run, RunResult, Task
from gnnkit.train.inputs import GraphSplits, graph_splits
from gnnkit.utils.checks import check_type
from gnnkit.utils.fields import FLAG, POSITIVE_INT, POSITIVE_NUMBER, SEED, validate_fields

__all__ = [
    "GraphSplits",
    "GraphTask",
    "GraphTrainConfig",
    "GraphTrainResult",
    "evaluate_graphs",
    "fit_graph",
    "graph_run",
    "graph_splits",
    "metric_direction",
]

logger = logging.getLogger(__name__)

_HIGHER = {"rocauc", "ap", "acc", "f1", "prc-auc"}
_LOWER = {"rmse", "mae"}


def metric_direction(metric: str) -> str:
    """``"max"`` when a higher ``metric`` is better (ROC-AUC, AP...), ``"min"`` otherwise."""
    key = metric.lower()
    if key in _HIGHER:
        return "max"
    if key in _LOWER:
        return "min"
    raise InputError(f"unknown OGB metric {metric!r}; known: {', '.join(sorted(_HIGHER | _LOWER))}")


@dataclass(frozen=True)
class GraphTrainConfig:
    """How to train (defaults: OGB's mol example).

    Args:
        epochs (int, optional): passes over the training graphs. (default: ``100``)
        lr (float, optional): Adam's learning rate. (default: ``1e-3``)
        batch_size (int, optional): graphs per batch. (default: ``32``)
        seed (int, optional): seed Python's, NumPy's and torch's generators when the run
            starts. (default: ``None``)
        eval_train (bool, optional): also evaluate the training graphs every epoch (OGB's
            example does; nothing is selected on it). (default: ``False``)
    """

    epochs: int = field(default=100, metadata=POSITIVE_INT)
    lr: float = field(default=1e-3, metadata=POSITIVE_NUMBER)
    batch_size: int = field(default=32, metadata=POSITIVE_INT)
    seed: int | None = field(default=None, metadata=SEED)
    eval_train: bool = field(default=False, metadata=FLAG)

    def __post_init__(self) -> None:
        validate_fields(self)

    def run_options(self) -> dict[str, Any]:
        """What this configuration sets of a :class:`~gnnkit.train.engine.Run`."""
        return {"epochs": self.epochs, "seed": self.seed}


@dataclass
class GraphTrainResult:
    """The outcome of :func:`fit_graph`.

    Attributes:
        metric (str): the evaluator's metric (``"rocauc"``, ``"rmse"``...).
        best_epoch (int): the epoch with the best validation score (1-based).
        valid (float), test (float): the scores at ``best_epoch`` (``test`` is the number to
            report).
        history (dict): per epoch, ``loss`` (mean training loss), ``valid``, ``test`` (and
            ``train`` with ``eval_train``), ``train_time`` and ``eval_time``.
        epoch_times (list of float): seconds of each epoch (training pass plus evaluation).
    """

    metric: str
    best_epoch: int
    valid: float
    test: float
    history: dict[str, list[float]]
    epoch_times: list[float] = field(repr=False)

    @property
    def run_time(self) -> float:
        return math.fsum(self.epoch_times)


def _collate(graphs: Any, batch_size: int) -> list[Any]:
    from torch_geometric.loader import DataLoader

    return list(DataLoader(graphs, batch_size=batch_size, shuffle=False))


@torch.no_grad()
def evaluate_graphs(model: nn.Module, batches: list[Any], evaluator: Any, num_tasks: int) -> float:
    """The evaluator's score of ``model`` on pre-collated ``batches`` (eval mode, no gradients).

    As in OGB's example, a batch with a single node is skipped.
    """
    was_training = model.training
    model.eval()
    y_true, y_pred = [], []
    try:
        for batch in batches:
            if batch.x.size(0) == 1:
                continue
            pred = model(batch)
            y_true.append(batch.y.view(pred.shape).detach().cpu())
            y_pred.append(pred.detach().cpu())
    finally:
        model.train(was_training)
    if not y_pred:
        raise InputError("no graphs to evaluate (every batch had a single node)")
    result = evaluator.eval(
        {"y_true": torch.cat(y_true).numpy(), "y_pred": torch.cat(y_pred).float().numpy()}
    )
    return float(result[evaluator.eval_metric])


class GraphTask(Task):
    """Graph property prediction (OGB's mol protocol) as a :class:`~gnnkit.train.engine.Task`.

    Args:
        model (torch.nn.Module): maps a PyG ``Batch`` to (G, num_tasks) predictions (logits
            for classification).
        splits (GraphSplits): from :func:`graph_splits`.
        config (GraphTrainConfig): how to train.
    """

    nonfinite = ()  # checked by train_epoch: an epoch without a usable batch records NaN
    progress_keys = (("loss", "loss"), ("valid", "valid"))

    def __init__(self, model: nn.Module, splits: GraphSplits, config: GraphTrainConfig) -> None:
        from ogb.graphproppred import Evaluator

        check_type("config", config, GraphTrainConfig, "a GraphTrainConfig")
        check_type(
            "splits", splits, GraphSplits, "GraphSplits (from gnnkit.train.graph.graph_splits)"
        )
        self.model, self.splits, self.config = model, splits, config
        first = next(iter(model.parameters()), None)
        self.device = first.device if first is not None else torch.device("cpu")
        self.monitor = (("valid", metric_direction(splits.metric)),)
        self.evaluator = Evaluator(splits.name)
        if self.evaluator.eval_metric != splits.metric:
            raise InputError(
                f"the evaluator of {splits.name} uses {self.evaluator.eval_metric!r}, the splits "
                f"say {splits.metric!r}"
            )
        if len(splits.train) == 0:
            raise InputError("the training split is empty")
        self.criterion = nn.BCEWithLogitsLoss() if splits.is_classification else nn.MSELoss()
        params = [p for p in model.parameters() if p.requires_grad]
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        self.optimizer = torch.optim.Adam(params, lr=config.lr, fused=fused or None)
        # Evaluation order never changes: collate those batches once.
        self.eval_batches = {
            key: [
                batch.to(self.device) for batch in _collate(getattr(splits, key), config.batch_size)
            ]
            for key in (("train", "valid", "test") if config.eval_train else ("valid", "test"))
        }

    def identity(self) -> dict[str, Any]:
        options = dataclasses.asdict(self.config)
        del options["epochs"]
        return run_identity(self.model, options, self.splits.fingerprint())

    def train_epoch(self, epoch: int) -> dict[str, float]:
        from torch_geometric.loader import DataLoader

        model, config = self.model, self.config
        model.train()
        losses: list[Tensor] = []
        for batch in DataLoader(self.splits.train, batch_size=config.batch_size, shuffle=True):
            if batch.x.size(0) == 1 or batch.num_graphs == 1:
                continue
            batch = batch.to(self.device, non_blocking=True)
            pred = model(batch)
            y = batch.y.view(pred.shape).to(torch.float32)
            labelled = y == y  # NaN marks a missing label
            loss = self.criterion(pred.to(torch.float32)[labelled], y[labelled])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(loss.detach())
        if not losses:
            return {"loss": math.nan}
        total = float(torch.stack(losses).double().mean())
        if not math.isfinite(total):
            raise NonFiniteLossError(
                f"the loss became non-finite at epoch {epoch}; lower the learning rate "
                f"(lr={config.lr})"
            )
        return {"loss": total}

    def evaluate(self, epoch: int) -> dict[str, float]:
        return {
            key: evaluate_graphs(self.model, batches, self.evaluator, self.splits.num_tasks)
            for key, batches in self.eval_batches.items()
        }


def graph_run(
    model: nn.Module,
    splits: GraphSplits,
    config: GraphTrainConfig | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
) -> Run:
    """The :class:`~gnnkit.train.engine.Run` of ``model`` on ``splits`` (seeded by
    ``config.seed``); :func:`graph_result` summarises it."""
    config = config or GraphTrainConfig()
    task = GraphTask(model, splits, config)
    return Run(task, checkpoint=checkpoint, resume=resume, **config.run_options())


def graph_result(result: RunResult, metric: str) -> GraphTrainResult:
    """The :class:`GraphTrainResult` of a graph :class:`~gnnkit.train.engine.Run`."""
    history = result.history
    out = {"loss": list(history["loss"])}
    for key in ("valid", "test", "train"):
        if key in history:
            out[key] = list(history[key])
    out["train_time"] = list(result.train_times)
    out["eval_time"] = [e - t for e, t in zip(result.epoch_times, result.train_times, strict=True)]
    best = result.best or {"epoch": 0, "valid": math.nan, "test": math.nan}
    return GraphTrainResult(
        metric=metric,
        best_epoch=int(best["epoch"]),
        valid=float(best["valid"]),
        test=float(best["test"]),
        history=out,
        epoch_times=list(result.epoch_times),
    )


def fit_graph(
    model: nn.Module, splits: GraphSplits, config: GraphTrainConfig | None = None
) -> GraphTrainResult:
    """Train ``model`` on ``splits`` and report the test score at the best validation epoch.

    See the module docstring for the protocol.
    """
    return graph_result(graph_run(model, splits, config).run(), splits.metric)
