"""Training loop for link prediction with sampled negatives (OGB's ogbl-ddi protocol).

One epoch walks over the training edges in shuffled batches (64 x 1024 in OGB's ddi
example); for each batch:

1. encode the whole graph (``model.encode``: the GNN on all nodes);
2. score the batch's observed edges and as many negatives drawn by PyG's
   :func:`torch_geometric.utils.negative_sampling` (``method="dense"``, as OGB: uniform
   node pairs that are not edges of the message-passing graph), or, with
   ``negatives="device"``, as many from :class:`gnnkit.sampling.NegativeSampler` (the same
   distribution, drawn on the graph's device);
3. one Adam step on ``model.link_loss``, after clipping the gradient norm of each of
   ``model.clip_groups()`` to ``clip_norm`` (OGB: embeddings, GNN and predictor, 1.0 each).

Every ``eval_every`` epochs (and after the last one) the model scores the validation and test
edges and their fixed negatives, plus a fixed sample of training edges as large as the
validation set (OGB's ``eval_train``: the first |valid| edges of a permutation seeded 12345),
ranked against the validation negatives. The metric is Hits@K from
:class:`ogb.linkproppred.Evaluator`: the fraction of positive edges that score above the
K-th best negative. The reported test Hits@K is the one measured at the evaluation with the
best validation Hits@K (ties keep the earlier one), as OGB's ``Logger`` reports it.

:class:`LinkTask` is this protocol as a task of the training engine
(:mod:`gnnkit.train.engine`): checkpoints, written atomically after every evaluation, hold the
model, optimiser, random state, history and selection, so an interrupted run resumes exactly
where it stopped; ``time_budget_s`` ends a run cleanly, with a checkpoint, before it would
run past the budget.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from gnnkit.errors import InputError
from gnnkit.sampling.negative import NegativeSampler
from gnnkit.train.checkpoint import run_identity
from gnnkit.train.engine import Run, RunResult, Task
from gnnkit.train.inputs import LinkData, link_data
from gnnkit.utils.checks import check_choice, check_type
from gnnkit.utils.fields import (
    OPTIONAL_POSITIVE_NUMBER,
    POSITIVE_INT,
    POSITIVE_NUMBER,
    SEED,
    one_of,
    validate_fields,
)

__all__ = [
    "LinkData",
    "LinkTask",
    "LinkTrainConfig",
    "LinkTrainResult",
    "evaluate_link",
    "fit_link",
    "hits_at_k",
    "link_data",
    "link_result",
    "link_run",
    "negative_drawer",
]

logger = logging.getLogger(__name__)

#: Who draws the training negatives (:attr:`LinkTrainConfig.negatives`).
NEGATIVES = ("pyg", "device")
#: OGB's choice: PyG's ``negative_sampling``.
DEFAULT_NEGATIVES = NEGATIVES[0]


# ---------------------------------------------------------------------------------------------
# Metric
# ---------------------------------------------------------------------------------------------


def hits_at_k(pos_scores: Tensor, neg_scores: Tensor, k: int, name: str = "ogbl-ddi") -> float:
    """Hits@K from :class:`ogb.linkproppred.Evaluator`: positives above the K-th best negative.

    Args:
        pos_scores (Tensor): (P,) scores of positive pairs.
        neg_scores (Tensor): (Q,) scores of negative pairs.
        k (int): K. With fewer than K negatives every positive counts as a hit (OGB's rule).
        name (str, optional): the OGB dataset whose evaluator to use. (default: ``"ogbl-ddi"``)
    """
    from ogb.linkproppred import Evaluator

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    evaluator = Evaluator(name)
    evaluator.K = k
    result = evaluator.eval({"y_pred_pos": pos_scores.detach(), "y_pred_neg": neg_scores.detach()})
    return float(result[f"hits@{k}"])


@torch.no_grad()
def _scores(model: nn.Module, h: Tensor, pairs: Tensor, batch_size: int) -> Tensor:
    out = [
        model.score(h, pairs[i : i + batch_size].t()).float().view(-1)
        for i in range(0, pairs.size(0), batch_size)
    ]
    return torch.cat(out) if out else h.new_zeros(0)


@torch.no_grad()
def evaluate_link(
    model: nn.Module,
    data: LinkData,
    graph: Any,
    *,
    ks: tuple[int, ...] = (20,),
    batch_size: int = 64 * 1024,
) -> dict[str, float]:
    """Hits@K of the training sample, validation and test edges (OGB's ``test()``).

    The training sample is ranked against the validation negatives, as in OGB's example.
    Returns ``{"train_hits@K", "valid_hits@K", "test_hits@K"}`` for every K in ``ks``.
    """
    was_training = model.training
    model.eval()
    try:
        h = model.encode(graph)
        scores = {
            name: _scores(model, h, getattr(data, name), batch_size)
            for name in ("eval_train_pos", "valid_pos", "valid_neg", "test_pos", "test_neg")
        }
    finally:
        model.train(was_training)
    result = {}
    for k in ks:
        result[f"train_hits@{k}"] = hits_at_k(scores["eval_train_pos"], scores["valid_neg"], k)
        result[f"valid_hits@{k}"] = hits_at_k(scores["valid_pos"], scores["valid_neg"], k)
        result[f"test_hits@{k}"] = hits_at_k(scores["test_pos"], scores["test_neg"], k)
    return result


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def negative_drawer(data: LinkData, negatives: str = DEFAULT_NEGATIVES) -> Callable[[int], Tensor]:
    """``draw(k)``: ``k`` training negatives, shape (2, k') with k' <= k, for ``data``'s graph.

    ``"pyg"``: PyG's :func:`~torch_geometric.utils.negative_sampling` (``method="dense"``, as
    OGB). ``"device"``: :class:`gnnkit.sampling.NegativeSampler` on the graph's device.
    """
    check_choice("negatives", negatives, NEGATIVES)
    if negatives == "device":
        return NegativeSampler(data.edge_index, data.num_nodes)
    from torch_geometric.utils import negative_sampling

    def draw(k: int) -> Tensor:
        return negative_sampling(
            data.edge_index, num_nodes=data.num_nodes, num_neg_samples=k, method="dense"
        )

    return draw


@dataclass(frozen=True)
class LinkTrainConfig:
    """How to train (defaults: OGB's ddi example).

    Args:
        epochs (int, optional): passes over the training edges. (default: ``200``)
        lr (float, optional): Adam's learning rate. (default: ``0.005``)
        batch_size (int, optional): positive edges per step (as many negatives are drawn).
            (default: ``65536``)
        eval_every (int, optional): evaluate every this many epochs, and after the last one.
            (default: ``5``)
        k (int, optional): the K of the Hits@K that selects the evaluation. (default: ``20``)
        report_ks (tuple of int, optional): the Ks recorded at every evaluation (``k`` is
            added). (default: ``(10, 20, 30)``, OGB's)
        clip_norm (float, optional): gradient-norm bound of each clip group; ``None`` turns
            clipping off. (default: ``1.0``)
        seed (int, optional): seed Python's, NumPy's and torch's generators when a run starts
            (not on resume: the checkpoint restores torch's and Python's, which PyG's
            ``negative_sampling`` draws from). (default: ``None``)
        time_budget_s (float, optional): stop, with a checkpoint, before an epoch that would
            end past this many seconds of this call's wall time (estimated from the previous
            epoch). ``None``: no budget. (default: ``None``)
        eval_batch_size (int, optional): pairs scored per call at evaluation.
            (default: ``65536``)
        negatives (str, optional): who draws the negatives: ``"pyg"``, PyG's
            ``negative_sampling`` (OGB's; its draw runs on the host), or ``"device"``,
            :class:`gnnkit.sampling.NegativeSampler` on the graph's device (the same
            distribution, another random stream: seeds give other runs). (default: ``"pyg"``)
    """

    epochs: int = field(default=200, metadata=POSITIVE_INT)
    lr: float = field(default=0.005, metadata=POSITIVE_NUMBER)
    batch_size: int = field(default=64 * 1024, metadata=POSITIVE_INT)
    eval_every: int = field(default=5, metadata=POSITIVE_INT)
    k: int = field(default=20, metadata=POSITIVE_INT)
    report_ks: tuple[int, ...] = (10, 20, 30)
    clip_norm: float | None = field(default=1.0, metadata=OPTIONAL_POSITIVE_NUMBER)
    seed: int | None = field(default=None, metadata=SEED)
    time_budget_s: float | None = field(default=None, metadata=OPTIONAL_POSITIVE_NUMBER)
    eval_batch_size: int = field(default=64 * 1024, metadata=POSITIVE_INT)
    negatives: str = field(default=DEFAULT_NEGATIVES, metadata=one_of(*NEGATIVES))

    def __post_init__(self) -> None:
        validate_fields(self)
        if not isinstance(self.report_ks, tuple) or not all(
            isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in self.report_ks
        ):
            raise InputError(f"report_ks must be a tuple of positive ints, got {self.report_ks!r}")

    @property
    def ks(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.report_ks) | {self.k}))

    def run_options(self) -> dict[str, Any]:
        """What this configuration sets of a :class:`~gnnkit.train.engine.Run`: evaluations,
        and checkpoints with them, every ``eval_every`` epochs."""
        return {
            "epochs": self.epochs,
            "eval_every": self.eval_every,
            "seed": self.seed,
            "checkpoint_every": self.eval_every,
            "time_budget_s": self.time_budget_s,
        }

    def identity(self) -> dict[str, Any]:
        """The options that shape the trajectory (checked on resume)."""
        options = asdict(self)
        for key in ("epochs", "time_budget_s", "eval_batch_size"):
            del options[key]
        if self.negatives == DEFAULT_NEGATIVES:
            del options["negatives"]  # checkpoints written before the option existed resume
        options["report_ks"] = list(self.report_ks)
        return options


@dataclass
class LinkTrainResult:
    """The outcome of :func:`fit_link`.

    Attributes:
        best_epoch (int): the evaluated epoch with the best validation Hits@K (0 if none).
        valid_hits, test_hits, train_hits (float): Hits@K there (``test_hits`` is the number
            to report).
        epochs_run (int): epochs trained so far (over all resumed calls).
        finished (str or None): ``"epochs"`` (all epochs done) or ``"time-budget"``.
        history (dict): ``loss`` and ``epoch_time`` per epoch; ``eval_epoch``,
            ``eval_time`` and ``{train,valid,test}_hits@K`` per evaluation.
        epoch_times (list of float): training seconds of each epoch (evaluation excluded).
        eval_times (list of float): seconds of each evaluation.
        wall_time (float): seconds of training, evaluation and checkpoints over all calls.
        resumed_from (int): the epoch this call continued from (0 for a fresh run).
        k (int): the K of the metric.
    """

    best_epoch: int
    valid_hits: float
    test_hits: float
    train_hits: float
    epochs_run: int
    finished: str | None
    history: dict[str, list[float]]
    epoch_times: list[float] = field(repr=False)
    eval_times: list[float] = field(repr=False)
    wall_time: float = 0.0
    resumed_from: int = 0
    k: int = 20


def _check_model(model: nn.Module) -> None:
    missing = [
        name
        for name in ("prepare_graph", "encode", "score", "link_loss", "clip_groups")
        if not callable(getattr(model, name, None))
    ]
    if missing:
        raise InputError(
            f"{type(model).__name__} cannot be trained by fit_link: it has no "
            f"{', '.join(missing)} (see gnnkit.models.link.LinkGNN for the interface)"
        )


class LinkTask(Task):
    """Link prediction with sampled negatives (OGB's ddi protocol) as a
    :class:`~gnnkit.train.engine.Task`.

    Args:
        model (torch.nn.Module): a model with ``prepare_graph``, ``encode``, ``score``,
            ``link_loss`` and ``clip_groups`` (:class:`gnnkit.models.LinkGNN`, or PyG's
            reference), on ``data``'s device.
        data (LinkData): from :func:`link_data`.
        config (LinkTrainConfig): how to train.
    """

    progress_keys = (("loss", "loss"),)

    def __init__(self, model: nn.Module, data: LinkData, config: LinkTrainConfig) -> None:
        check_type("config", config, LinkTrainConfig, "a LinkTrainConfig")
        check_type("data", data, LinkData, "LinkData (from gnnkit.train.link.link_data)")
        _check_model(model)
        self.model, self.data, self.config = model, data, config
        self.device = data.edge_index.device
        params = [p for p in model.parameters() if p.requires_grad]
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        self.optimizer = torch.optim.Adam(params, lr=config.lr, fused=fused or None)
        self.graph = model.prepare_graph(data.edge_index, data.num_nodes)
        self.metric = f"valid_hits@{config.k}"
        self.monitor = ((self.metric, "max"),)
        self._draw_negatives = negative_drawer(data, config.negatives)

    def identity(self) -> dict[str, Any]:
        return run_identity(self.model, self.config.identity(), self.data.fingerprint())

    def nonfinite_message(self, epoch: int, bad: list[str]) -> str:
        return (
            f"the loss became non-finite at epoch {epoch}; lower the learning rate "
            f"(lr={self.config.lr})"
        )

    def train_epoch(self, epoch: int) -> dict[str, float]:
        model, config, train_pos = self.model, self.config, self.data.train_pos
        model.train()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        for perm in torch.randperm(train_pos.size(0), device=self.device).split(config.batch_size):
            self.optimizer.zero_grad(set_to_none=True)
            h = model.encode(self.graph)
            pos = train_pos[perm].t()  # (2, B)
            neg = self._draw_negatives(perm.numel())  # (2, B') with B' <= B
            loss = model.link_loss(h, pos, neg)
            loss.backward()
            if config.clip_norm is not None:
                for group in model.clip_groups():
                    torch.nn.utils.clip_grad_norm_(group, config.clip_norm, foreach=True)
            self.optimizer.step()
            total += loss.detach().double() * perm.numel()
            count += perm.numel()
        return {"loss": float(total) / count}

    def evaluate(self, epoch: int) -> dict[str, float]:
        config = self.config
        return evaluate_link(
            self.model, self.data, self.graph, ks=config.ks, batch_size=config.eval_batch_size
        )

    def on_evaluated(self, epoch: int, metrics: dict[str, float], improved: bool) -> None:
        k = self.config.k
        logger.info(
            "epoch %d: Hits@%d train %.4f valid %.4f test %.4f",
            epoch, k, metrics[f"train_hits@{k}"], metrics[self.metric], metrics[f"test_hits@{k}"],
        )  # fmt: skip


def link_run(
    model: nn.Module, data: LinkData, config: LinkTrainConfig | None = None, **options: Any
) -> Run:
    """The :class:`~gnnkit.train.engine.Run` of ``model`` on ``data``: evaluations (and
    checkpoints) every ``config.eval_every`` epochs and after the last; :func:`link_result`
    summarises it. ``options`` go to the run: :func:`fit_link`'s ``checkpoint``, ``resume``
    and ``callback``."""
    config = config or LinkTrainConfig()
    return Run(LinkTask(model, data, config), **options, **config.run_options())


def link_result(result: RunResult, k: int) -> LinkTrainResult:
    """The :class:`LinkTrainResult` of a link :class:`~gnnkit.train.engine.Run`."""
    history = {"loss": list(result.history["loss"]), "epoch_time": list(result.train_times)}
    history["eval_epoch"] = list(result.history.get("eval_epoch", []))
    history["eval_time"] = list(result.eval_times)
    for key, values in result.history.items():
        if "_hits@" in key:
            history[key] = list(values)
    best = result.best
    return LinkTrainResult(
        best_epoch=int(best.get("epoch", 0)),
        valid_hits=float(best.get(f"valid_hits@{k}", 0.0)),
        test_hits=float(best.get(f"test_hits@{k}", 0.0)),
        train_hits=float(best.get(f"train_hits@{k}", 0.0)),
        epochs_run=result.epochs_run,
        finished=result.finished,
        history=history,
        epoch_times=list(result.train_times),
        eval_times=list(result.eval_times),
        wall_time=result.wall_time,
        resumed_from=result.resumed_from,
        k=k,
    )


def fit_link(
    model: nn.Module,
    data: LinkData,
    config: LinkTrainConfig | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, Any]], Any] | None = None,
) -> LinkTrainResult:
    """Train a link predictor with sampled negatives; see the module docstring.

    Args:
        model (torch.nn.Module): a model with ``prepare_graph``, ``encode``, ``score``,
            ``link_loss`` and ``clip_groups`` (:class:`gnnkit.models.LinkGNN`, or PyG's
            reference), on ``data``'s device.
        data (LinkData): from :func:`link_data`.
        config (LinkTrainConfig, optional): how to train. (default: OGB's ddi set-up)
        checkpoint (str or PathLike, optional): write a checkpoint here after every
            evaluation and when the run stops. (default: none)
        resume (bool, optional): continue from ``checkpoint`` if it exists; a checkpoint of a
            different model, configuration or dataset is refused. (default: ``False``)
        callback (callable, optional): called after every epoch with ``epoch``, ``loss``,
            ``epoch_time`` and, at evaluations, the Hits@K values. (default: none)

    Raises:
        NonFiniteLossError: the loss became NaN or infinite.
        CheckpointError: ``resume`` met a corrupt or foreign checkpoint.
    """
    config = config or LinkTrainConfig()
    run = link_run(model, data, config, checkpoint=checkpoint, resume=resume, callback=callback)
    return link_result(run.run(), config.k)
