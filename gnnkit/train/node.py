"""Full-batch node classification on the training engine (:mod:`gnnkit.train.engine`).

One epoch is one optimiser step on the whole graph followed by one evaluation of every split:

1. training step (``model.train()``): forward on all nodes, cross-entropy on the training
   nodes, backward, optimiser step;
2. evaluation (``model.eval()`` under ``torch.inference_mode``): one forward, then the mean
   cross-entropy and the accuracy on the train, validation and test nodes.

Model selection: the selected epoch is the first epoch with the highest validation accuracy
(ties keep the earlier epoch, as PyG's examples do with ``if val_acc > best_val_acc``); the
reported test accuracy is the test accuracy measured at that epoch, in the same evaluation.
With ``restore_best`` the model ends with its parameters from that epoch.

Early stopping (optional): the run stops once ``patience`` consecutive epochs have passed
without a strictly higher validation accuracy.

A paper's protocol instead (``fit(..., protocol=NAME)``, :mod:`gnnkit.train.protocols`): its
rule reads every epoch's validation loss and accuracy, decides when the run stops and which
epoch's model is kept; the selected epoch is then the last one the rule kept, and the reported
test accuracy is the one measured at that epoch (with ``restore_best`` the model ends with
that epoch's parameters, as the GAT code restores its checkpoint; Kipf & Welling's rule keeps
every epoch, so it reports the final model). NOTE: so that the rule can end the run after the
epoch whose validation triggered it (the engine asks :meth:`NodeTask.should_stop` before it
evaluates), the task evaluates right after the training step, within :meth:`NodeTask.train_epoch`,
and hands that evaluation to the engine; the numbers are those of the usual order, and
``RunResult.train_times`` then include the evaluation.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.errors import InputError
from gnnkit.ops.backend import is_deterministic
from gnnkit.ops.metrics import split_metrics
from gnnkit.train.checkpoint import run_identity
from gnnkit.train.engine import Run, RunResult, Task
from gnnkit.train.graphed import CapturedStep
from gnnkit.train.inputs import NodeInputs
from gnnkit.train.optim import adam_class
from gnnkit.train.protocols import StoppingRule, make_protocol
from gnnkit.utils.checks import check_type, describe
from gnnkit.utils.fields import (
    NON_NEGATIVE_NUMBER,
    OPTIONAL_POSITIVE_INT,
    POSITIVE_INT,
    POSITIVE_NUMBER,
    SEED,
    one_of,
    validate_fields,
)

__all__ = ["HISTORY_KEYS", "NodeTask", "TrainConfig", "TrainResult", "fit"]

#: The per-epoch series in :attr:`TrainResult.history`, in this order.
HISTORY_KEYS = (
    "loss",
    "train_loss",
    "val_loss",
    "test_loss",
    "train_acc",
    "val_acc",
    "test_acc",
)


@dataclass(frozen=True)
class TrainConfig:
    """How to train. The defaults are Kipf & Welling's Cora set-up, the ``gcn`` recipe of
    :data:`gnnkit.recipes.NODE_RECIPES` (a test keeps the two equal).

    Args:
        epochs (int, optional): the maximum number of epochs. (default: ``200``)
        lr (float, optional): the learning rate. (default: ``0.01``, Kipf & Welling's)
        weight_decay (float, optional): L2 penalty added to the gradient (Adam's coupled
            ``weight_decay``). A model that defines ``parameter_groups(weight_decay)`` decides
            which parameters receive it (gnnkit's :class:`~gnnkit.models.GCN`: the first
            layer only, as in Kipf & Welling's code). (default: ``5e-4``)
        optimizer (str, optional): ``"adam"`` or ``"adamw"``. (default: ``"adam"``)
        patience (int, optional): stop after this many epochs without a higher validation
            accuracy; ``None`` trains all epochs. (default: ``None``)
        seed (int, optional): seed Python's, NumPy's and torch's generators when a run starts
            (not when it resumes: the checkpoint restores them). ``None`` leaves them alone.
            (default: ``None``)
        restore_best (bool, optional): end with the parameters of the selected epoch.
            (default: ``True``)
        checkpoint_every (int, optional): with a checkpoint path, write one every this many
            epochs, and always after the last epoch. (default: ``10``)
        cuda_graph (bool, optional): on a CUDA device, record the training step as a CUDA
            graph after three eager steps and replay it every later epoch
            (:class:`gnnkit.train.CapturedStep`): one launch per step instead of
            hundreds, for small graphs where launching kernels takes longer than running
            them. The optimiser is made ``capturable``. While the graph is captured the
            layers skip their checks of values on the host (the eager steps made them); a
            resumed run is not promised to be bit-for-bit an uninterrupted one.
            (default: ``False``)
    """

    epochs: int = field(default=200, metadata=POSITIVE_INT)
    lr: float = field(default=0.01, metadata=POSITIVE_NUMBER)
    weight_decay: float = field(default=5e-4, metadata=NON_NEGATIVE_NUMBER)
    optimizer: Literal["adam", "adamw"] = field(default="adam", metadata=one_of("adam", "adamw"))
    patience: int | None = field(default=None, metadata=OPTIONAL_POSITIVE_INT)
    seed: int | None = field(default=None, metadata=SEED)
    restore_best: bool = True
    checkpoint_every: int = field(default=10, metadata=POSITIVE_INT)
    cuda_graph: bool = False

    def __post_init__(self) -> None:
        validate_fields(self)

    def identity(self) -> dict[str, Any]:
        """The options that shape the trajectory (checked on resume; ``epochs`` may grow)."""
        options = asdict(self)
        del options["epochs"], options["checkpoint_every"]
        if not self.cuda_graph:  # (checkpoints written before the option existed match)
            del options["cuda_graph"]
        return options

    def run_options(self) -> dict[str, Any]:
        """What this configuration sets of a :class:`~gnnkit.train.engine.Run` (not the
        seed: full-batch runs seed the engine, mini-batch tasks seed their own draws)."""
        return {
            "epochs": self.epochs,
            "patience": self.patience,
            "restore_best": self.restore_best,
            "checkpoint_every": self.checkpoint_every,
        }


@dataclass
class TrainResult:
    """The outcome of :func:`fit`.

    Attributes:
        best_epoch (int): the selected epoch (1-based): the first with the highest
            validation accuracy (with a protocol: the last epoch its rule kept).
        val_acc (float): validation accuracy at ``best_epoch``.
        test_acc (float): test accuracy at ``best_epoch`` (the number to report).
        train_acc (float): training accuracy at ``best_epoch``.
        epochs_run (int): epochs trained (fewer than ``epochs`` after early stopping).
        stopped_early (bool): whether ``patience``, or the protocol's rule, ended the run.
        history (dict): one list per key of :data:`HISTORY_KEYS`, one entry per epoch.
            ``loss`` is the training objective of the optimiser step (dropout on, weight
            decay not included); ``*_loss`` and ``*_acc`` come from the evaluation.
        epoch_times (list of float): wall seconds of each epoch (training step plus
            evaluation; checkpoint writes, progress bar and callbacks excluded).
        resumed_from (int): the epoch a resumed run continued from (0 for a fresh run).
    """

    best_epoch: int
    val_acc: float
    test_acc: float
    train_acc: float
    epochs_run: int
    stopped_early: bool
    history: dict[str, list[float]]
    epoch_times: list[float] = field(repr=False)
    resumed_from: int = 0

    @property
    def run_time(self) -> float:
        """Seconds spent in epochs (the sum of :attr:`epoch_times`)."""
        return math.fsum(self.epoch_times)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over the model's ``parameter_groups(weight_decay)`` (else every
    parameter with ``config.weight_decay``), fused where the parameters allow it."""
    groups_fn = getattr(model, "parameter_groups", None)
    if callable(groups_fn):
        groups = list(groups_fn(config.weight_decay))
    else:
        groups = [{"params": list(model.parameters()), "weight_decay": config.weight_decay}]
    cls = adam_class(decoupled=config.optimizer != "adam")
    # The fused kernel updates every parameter in one call: about 3x faster than the default
    # per-parameter loop on CPU for the few small tensors of a GCN or GAT.
    groups = [
        {**g, "params": [g["params"]] if isinstance(g["params"], Tensor) else list(g["params"])}
        for g in groups
    ]
    params = [p for group in groups for p in group["params"]]
    fused = bool(params) and all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params
    )
    # A captured step needs the optimiser's step count on the device (capturable).
    capturable = {"capturable": True} if config.cuda_graph else {}
    return cls(groups, lr=config.lr, fused=fused or None, **capturable)


class NodeEvaluator:
    """Loss and accuracy of the three splits from one forward pass, one host sync per epoch
    (the sums in two compiled passes on CPU: :func:`gnnkit.ops.metrics.split_metrics`)."""

    def __init__(self, inputs: NodeInputs) -> None:
        indices = (inputs.train_idx, inputs.val_idx, inputs.test_idx)
        self.index = torch.cat(indices)  # (M,) nodes of all splits
        self.split = torch.cat(
            [torch.full_like(idx, k) for k, idx in enumerate(indices)]
        )  # (M,) 0 train, 1 val, 2 test
        self.y = inputs.y[self.index]  # (M,)
        self.counts = [idx.numel() for idx in indices]
        self.y_train = inputs.y[inputs.train_idx]

    def __call__(self, logits: Tensor, train_loss: Tensor) -> list[float]:
        sums = split_metrics(logits, self.index, self.y, self.split, 3)  # (3, 2) float64
        values = torch.cat([train_loss.detach().double().view(1), sums.view(-1)]).tolist()
        loss_sums, correct_sums = values[1::2], values[2::2]
        return [
            values[0],
            *(s / n for s, n in zip(loss_sums, self.counts, strict=True)),
            *(c / n for c, n in zip(correct_sums, self.counts, strict=True)),
        ]


def _device_of(model: nn.Module, inputs: NodeInputs) -> torch.device:
    device = inputs.y.device
    for p in model.parameters():
        if p.device != device:
            raise InputError(
                f"the model's parameters are on {p.device} but the inputs on {device}; "
                f"move one of them (model.to({str(device)!r}) or inputs.to({str(p.device)!r}))"
            )
    return device


def check_node_run(model: nn.Module, inputs: Any, config: Any) -> torch.device:
    """The checks every node-training entry point makes: the model's, the config's and the
    inputs' types, and one device for model and inputs. Returns that device."""
    check_type("model", model, nn.Module, "a torch.nn.Module")
    check_type("config", config, TrainConfig, "a TrainConfig")
    check_type("inputs", inputs, NodeInputs, "NodeInputs (from gnnkit.train.node_inputs)")
    device = _device_of(model, inputs)
    if config.cuda_graph:
        if is_deterministic():
            raise InputError(
                "cuda_graph=True cannot capture deterministic mode's SpMM (it reads row "
                "pointers on the host); leave deterministic mode or cuda_graph=False"
            )
        if device.type != "cuda":
            raise InputError(
                f"cuda_graph=True captures the training step on a CUDA GPU, but the model and "
                f"inputs are on {device}; move them to CUDA or leave cuda_graph=False"
            )
    return device


def _check_logits(out: Any, inputs: NodeInputs) -> None:
    """The model's output must be a floating-point (|V|, C) tensor with at least a column
    per class (cross-entropy would fail deep inside torch with an IndexError)."""
    expected = f"({inputs.num_nodes}, {inputs.num_classes})"
    if not isinstance(out, Tensor) or not out.is_floating_point() or out.dim() != 2:
        got = describe(out, dtype=False)
        raise InputError(f"the model must return (|V|, num_classes) = {expected} logits, got {got}")
    if out.size(0) != inputs.num_nodes or out.size(1) < inputs.num_classes:
        raise InputError(
            f"the model returned {tuple(out.shape)} logits but the inputs have "
            f"{inputs.num_nodes} nodes and {inputs.num_classes} classes; build its last layer "
            f"with out_channels=inputs.num_classes (expected {expected})"
        )


class NodeTask(Task):
    """Full-batch node classification as a :class:`~gnnkit.train.engine.Task`.

    Args:
        model (torch.nn.Module): ``model(inputs.x, inputs.edge_index)`` returns (|V|, C) logits.
        inputs (NodeInputs): from :func:`gnnkit.train.node_inputs`.
        config (TrainConfig): the optimiser and the options recorded in checkpoints.
        protocol (StoppingRule, optional): a paper's rule (:mod:`gnnkit.train.protocols`)
            that stops the run and chooses the epoch to report. Its evaluations carry one
            more metric, ``"kept"``: how many epochs the rule has kept so far, which the
            engine's selection follows (it rises exactly when an epoch is kept).
            (default: none, selection by validation accuracy)
    """

    monitor: tuple[tuple[str, str], ...] = (("val_acc", "max"),)
    nonfinite = HISTORY_KEYS[:4]
    progress_keys = (("loss", "loss"), ("val", "val_acc"))

    def __init__(
        self,
        model: nn.Module,
        inputs: NodeInputs,
        config: TrainConfig,
        protocol: StoppingRule | None = None,
    ) -> None:
        check_node_run(model, inputs, config)
        self.model, self.inputs, self.config = model, inputs, config
        self.optimizer = make_optimizer(model, config)
        self.evaluator = NodeEvaluator(inputs)
        # (CapturedStep is handed the step on each call: holding self._eager_step would make a
        # reference cycle that keeps the model alive until the garbage collector's next pass.)
        self._captured = CapturedStep(inputs.y.device) if config.cuda_graph else None
        self._loss: Tensor | None = None
        self.protocol, self.kept, self._stop = protocol, 0, False
        self._measured: dict[str, float] | None = None
        self._unchecked_output = True
        if protocol is not None:
            self.monitor = (("kept", "max"),)

    def identity(self) -> dict[str, Any]:
        options = self.config.identity()
        if self.protocol is not None:
            options["protocol"] = self.protocol.name
        return run_identity(self.model, options, self.inputs.fingerprint())

    def state_dict(self) -> dict[str, Any]:
        if self.protocol is None:
            return {}
        return {"protocol": self.protocol.state_dict(), "kept": self.kept}

    def load_state_dict(self, state: dict[str, Any], path: Any) -> None:
        if self.protocol is not None:
            self.protocol.load_state_dict(state["protocol"])
            self.kept = int(state["kept"])

    def _eager_step(self) -> Tensor:
        """One optimiser step on the whole graph (no host sync: a CUDA graph may capture it)."""
        inputs, model = self.inputs, self.model
        self.optimizer.zero_grad(set_to_none=True)
        out = model(inputs.x, inputs.edge_index)
        if self._unchecked_output:  # the first step: shapes only, no host read
            _check_logits(out, inputs)
            self._unchecked_output = False
        loss = F.cross_entropy(out[inputs.train_idx], self.evaluator.y_train)
        loss.backward()
        self.optimizer.step()
        return loss

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        step, captured = self._eager_step, self._captured
        self._loss = step() if captured is None else captured(step)  # read by the evaluation
        if self.protocol is not None:  # evaluated now, for should_stop (module docstring)
            self._measured = self._judge(self.protocol, self._measure())
        return {}

    def evaluate(self, epoch: int) -> dict[str, float]:
        if self._measured is not None:
            measured, self._measured = self._measured, None
            return measured
        metrics = self._measure()
        if self.protocol is not None:  # a resumed run's last epoch: reported, not judged
            metrics["kept"] = float(self.kept)
        return metrics

    def should_stop(self) -> str | None:
        return "early-stopping" if self._stop else None

    def _measure(self) -> dict[str, float]:
        self.model.eval()
        with torch.inference_mode():
            values = self.evaluator(self.model(self.inputs.x, self.inputs.edge_index), self._loss)
        return dict(zip(HISTORY_KEYS, values, strict=True))

    def _judge(self, protocol: StoppingRule, metrics: dict[str, float]) -> dict[str, float]:
        """Feed ``protocol`` this epoch's validation; ``metrics`` with ``"kept"`` added."""
        val_loss = metrics["val_loss"]
        if protocol.loss_includes_l2:
            val_loss += l2_penalty(self.optimizer)
        decision = protocol.update(val_loss, metrics["val_acc"])
        self.kept += decision.keep
        self._stop = decision.stop
        return {**metrics, "kept": float(self.kept)}


def l2_penalty(optimizer: torch.optim.Optimizer) -> float:
    r""":math:`\sum_g \frac{\lambda_g}{2} \lVert \theta_g \rVert^2` over the optimizer's
    parameter groups: the L2 term whose gradient is Adam's coupled ``weight_decay``
    (``tf.nn.l2_loss`` times the decay in Kipf & Welling's code)."""
    total = 0.0
    with torch.no_grad():
        for group in optimizer.param_groups:
            if group["weight_decay"]:
                squares = sum(float(p.double().pow(2).sum()) for p in group["params"])
                total += 0.5 * group["weight_decay"] * squares
    return total


def train_result(result: RunResult) -> TrainResult:
    """The :class:`TrainResult` of a node-classification :class:`~gnnkit.train.engine.Run`."""
    best = result.best
    return TrainResult(
        best_epoch=int(best["epoch"]),
        val_acc=float(best["val_acc"]),
        test_acc=float(best["test_acc"]),
        train_acc=float(best["train_acc"]),
        epochs_run=result.epochs_run,
        stopped_early=result.finished in ("patience", "early-stopping"),
        history={key: list(result.history[key]) for key in HISTORY_KEYS},
        epoch_times=list(result.epoch_times),
        resumed_from=result.resumed_from,
    )


def fit(
    model: nn.Module,
    inputs: NodeInputs,
    config: TrainConfig | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = False,
    callback: Callable[[dict[str, float]], Any] | None = None,
    protocol: str | None = None,
) -> TrainResult:
    """Train a node classifier full-batch and select the epoch with the best validation accuracy
    (or the epoch a paper's ``protocol`` keeps).

    ``model(inputs.x, inputs.edge_index)`` must return (|V|, C) logits. See the module
    docstring for what one epoch does and how the epoch is selected.

    Args:
        model (torch.nn.Module): the classifier, on the inputs' device.
        inputs (NodeInputs): from :func:`gnnkit.train.node_inputs`.
        config (TrainConfig, optional): how to train. (default: ``TrainConfig()``)
        checkpoint (str or PathLike, optional): write checkpoints here (atomically) every
            ``config.checkpoint_every`` epochs and after the last one. (default: none)
        resume (bool, optional): if ``checkpoint`` exists, continue from it. The result is
            bit-for-bit that of an uninterrupted run with the same seed. A checkpoint of a
            different model, configuration or dataset is refused. (default: ``False``)
        progress (bool, optional): show a tqdm progress bar on stderr. (default: ``False``)
        callback (callable, optional): called after every epoch with a dict of ``epoch``,
            the :data:`HISTORY_KEYS` values and ``epoch_time``; returning ``True`` stops the
            run after a checkpoint. (default: none)
        protocol (str, optional): a paper's protocol, a key of
            :data:`gnnkit.train.protocols.PROTOCOLS` (``"kipf-welling"``, ``"velickovic"``):
            its rule stops the run and chooses the reported epoch, within ``config.epochs``
            (set that to the rule's ``epochs`` for the paper's maximum). Exclusive with
            ``config.patience``. (default: none)

    Raises:
        NonFiniteLossError: a loss became NaN or infinite (the message names the epoch; the
            last checkpoint, if any, is left as it was).
        CheckpointError: ``resume`` met a corrupt or foreign checkpoint.
    """
    config = config or TrainConfig()
    check_node_run(model, inputs, config)
    rule = None if protocol is None else make_protocol(protocol)
    if rule is not None and config.patience is not None:
        raise InputError(
            f"patience={config.patience} and protocol={protocol!r} both stop the run: the "
            "protocol has its own rule; leave patience at None"
        )
    run = Run(
        NodeTask(model, inputs, config, rule),
        seed=config.seed,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        callback=callback,
        **config.run_options(),
    )
    return train_result(run.run())
