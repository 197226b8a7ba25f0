"""Training sequence classifiers on the memory tasks, on the training engine.

The protocol: Adam (Kingma & Ba, arXiv:1412.6980; learning rate 1e-3), batches of 128 fresh
samples from the task's training stream, gradient clipping at global L2 norm 10 (Pascanu,
Mikolov & Bengio, *On the difficulty of training recurrent neural networks*,
arXiv:1211.5063), at most 2,000 batches, and an early stop once the last 3 training batches
are 100 % correct; then the loss and accuracy on 4,096 independent validation samples. The
number of batches until the stop measures how hard the task is for a model: it grows with
the distance the gradient has to travel back in time (Bengio, Simard & Frasconi, *Learning
long-term dependencies with gradient descent is difficult*, IEEE TNN 1994), which the LSTM's
additive cell shortens (Hochreiter & Schmidhuber, *Long Short-Term Memory*, Neural
Computation 1997).

:class:`SequenceClassifierTask` is this protocol as a task of the training engine
(:class:`gnnkit.train.engine.Run`): one engine epoch is one training batch, the stopping rule
is :meth:`~SequenceClassifierTask.should_stop`, and the validation is the one evaluation,
after the last batch (``eval_every=0``). :func:`fit` runs it and :func:`run_experiment`
builds the task and the model by name first.

NOTE: 100 % on 3 batches (384 samples) only shows an error rate below about 1 %; on
T >= 10 that rule alone stops models at 98-99.9 % validation accuracy. By default
:func:`fit` therefore confirms each stop on ``confirm_samples`` (16,384) fresh samples from a
separate "confirmation" stream (never the validation set) and trains on when one is wrong.
``TrainConfig(confirm_samples=0)`` is the 3-batch rule alone; the batch at which that rule
first fired is always recorded (:attr:`TrainResult.report_rule_batch`).

NOTE: the model that scored the final batch keeps its weights: the optimiser step of the
batch that stops the run is skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.errors import InputError
from gnnkit.seq.classifiers import (
    DEFAULT_FORGET_BIAS,
    DEFAULT_HIDDEN_DIM,
    SequenceClassifier,
    build_model,
)
from gnnkit.seq.tasks import MemoryTask, generator, make_task
from gnnkit.train.engine import Run, Task
from gnnkit.utils.checks import check_callable, check_int, check_range, check_type, describe
from gnnkit.utils.fields import NON_NEGATIVE_INT, POSITIVE_INT, POSITIVE_NUMBER, validate_fields

__all__ = [
    "SequenceClassifierTask",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "fit",
    "run_experiment",
]

logger = logging.getLogger(__name__)

#: ``callback(batch, loss, accuracy)``, called after every training batch (1-based).
Callback = Callable[[int, float, float], None]

#: Why a converged run ended (:attr:`gnnkit.train.engine.RunResult.finished`).
CONVERGED = "converged"


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters of the memory-task protocol (see the module docstring).

    Args:
        lr (float): Adam learning rate. (default: 1e-3)
        batch_size (int): samples per batch. (default: 128)
        max_norm (float): gradient clipping threshold (global L2 norm). (default: 10)
        max_batches (int): training budget. (default: 2000)
        patience (int): stop once this many consecutive training batches are 100 % correct.
            (default: 3)
        val_samples (int): size of the validation set. (default: 4096)
        confirm_samples (int): when the patience rule fires, stop only if the model is also
            100 % correct on this many fresh samples of the confirmation stream; 0 stops on
            the patience rule alone. (default: 16384)
    """

    lr: float = field(default=1e-3, metadata=POSITIVE_NUMBER)
    batch_size: int = field(default=128, metadata=POSITIVE_INT)
    max_norm: float = field(default=10.0, metadata=POSITIVE_NUMBER)
    max_batches: int = field(default=2000, metadata=POSITIVE_INT)
    patience: int = field(default=3, metadata=POSITIVE_INT)
    val_samples: int = field(default=4096, metadata=POSITIVE_INT)
    confirm_samples: int = field(default=16384, metadata=NON_NEGATIVE_INT)

    def __post_init__(self) -> None:
        validate_fields(self, qualified=True)  # "TrainConfig.lr must be ...", as seq's CLI shows


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes:
        converged (bool): whether the early-stopping criterion fired within the budget.
        batches_to_converge (int or None): the batch at which it fired (1-based), else None.
        report_rule_batch (int or None): the first batch at which the 3-batch rule alone
            (``patience`` perfect batches) fired, else None.
        checks (list of [int, int, int]): ``[batch, samples checked, mistakes]`` of every
            confirmation (a confirmation stops at the first chunk of 4,096 with a mistake).
        batches (int): batches seen (the last one's update is skipped when training stops).
        val_acc (float): accuracy on the validation set after training.
        val_loss (float): mean cross-entropy on the validation set after training.
        seconds (float): wall time of training and validation.
        loss (list of float): training loss of every batch.
        accuracy (list of float): training accuracy of every batch.
    """

    converged: bool
    batches_to_converge: int | None
    report_rule_batch: int | None
    checks: list[list[int]]
    batches: int
    val_acc: float
    val_loss: float
    seconds: float
    loss: list[float] = field(default_factory=list, repr=False)
    accuracy: list[float] = field(default_factory=list, repr=False)

    def to_dict(self, *, history: bool = True) -> dict:
        """A JSON-ready dict; ``history=False`` leaves out the per-batch curves."""
        result = asdict(self)
        if not history:
            del result["loss"], result["accuracy"]
        return result


@torch.no_grad()
def evaluate(
    model: nn.Module, tokens: Tensor, labels: Tensor, batch_size: int = 4096
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(tokens, labels)``, in eval mode.

    Args:
        model (torch.nn.Module): returns (B, C) logits for (B, T) tokens.
        tokens (Tensor): (N, T) integer tokens, N >= 1.
        labels (Tensor): (N,) integer classes (``torch.long``) in ``0 .. C - 1``.
        batch_size (int, optional): samples per forward pass. (default: 4096)
    """
    _check_samples(tokens, labels, batch_size)
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    try:
        for start in range(0, labels.numel(), batch_size):
            logits = model(tokens[start : start + batch_size])
            if start == 0:
                fix = "the model returns one logit per class; fix the labels or the model's size"
                check_range("labels", labels, logits.size(-1), fix, what="class", unit="classes")
            target = labels[start : start + batch_size]
            total_loss += F.cross_entropy(logits, target, reduction="sum").item()
            correct += int((logits.argmax(dim=1) == target).sum())
    finally:
        model.train(was_training)
    return total_loss / labels.numel(), correct / labels.numel()


def _check_samples(tokens: Any, labels: Any, batch_size: Any) -> None:
    """:func:`evaluate`'s arguments (the labels' range waits for the model's classes)."""
    check_int("batch_size", batch_size)
    is_tensor = isinstance(labels, Tensor)
    if not is_tensor or labels.dim() != 1 or labels.dtype not in (torch.long, torch.uint8):
        got = f"{labels.dtype} {tuple(labels.shape)}" if is_tensor else type(labels).__name__
        raise InputError(f"labels must be a 1-D torch.long tensor of classes, got {got}")
    if not isinstance(tokens, Tensor) or tokens.dim() < 1 or tokens.size(0) != labels.numel():
        got = describe(tokens, dtype=False)
        raise InputError(
            f"tokens must be a tensor with one row per label ({labels.numel()}), got {got}"
        )
    if labels.numel() == 0:
        raise InputError("evaluate needs at least one sample, got tokens and labels of length 0")


def _confirm(
    model: nn.Module, task: MemoryTask, num_samples: int, rng, chunk: int = 4096
) -> tuple[int, int]:
    """Check ``model`` on up to ``num_samples`` fresh samples, ``chunk`` at a time.

    Stops at the first chunk with a mistake (a model that is still wrong is found cheaply);
    returns ``(samples checked, mistakes)``.
    """
    checked = 0
    while checked < num_samples:
        size = min(chunk, num_samples - checked)
        _, accuracy = evaluate(model, *task.sample(size, rng))
        checked += size
        errors = round((1.0 - accuracy) * size)
        if errors:
            return checked, errors
    return checked, 0


class SequenceClassifierTask(Task):
    """The memory-task protocol as a :class:`~gnnkit.train.engine.Task`: an epoch is a batch.

    :meth:`train_epoch` draws the next batch of the training stream, scores it (loss and
    accuracy) and applies the stopping rule to that score; while the run goes on it takes the
    batch's optimiser step, so the batch that stops the run leaves the weights that scored it
    (:meth:`should_stop` then says ``"converged"``); :meth:`evaluate` measures the validation
    set (run it with ``eval_every=0``: once, after the last batch).

    Args:
        model (SequenceClassifier): a classifier sized for ``task``.
        task (MemoryTask): the data; its training, validation and confirmation streams are
            drawn from ``seed`` (:func:`gnnkit.seq.tasks.generator`).
        config (TrainConfig): the protocol.
        seed (int): the data seed.

    Attributes:
        report_rule_batch (int or None): the first batch at which the 3-batch rule fired.
        converged_at (int or None): the batch at which the run stopped, converged.
        checks (list of [int, int, int]): ``[batch, samples checked, mistakes]`` of every
            confirmation.

    NOTE: a non-finite loss does not raise (:attr:`nonfinite` is empty): a diverging model is
    recorded as not converged, so a sweep over seeds carries on.
    """

    nonfinite = ()
    progress_keys = (("loss", "loss"), ("acc", "accuracy"))

    def __init__(
        self, model: SequenceClassifier, task: MemoryTask, config: TrainConfig, seed: int
    ) -> None:
        self.model, self.task, self.config, self.seed = model, task, config, seed
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        self.confirm_rng = generator(seed, "confirmation")
        self.stream = task.stream(config.batch_size, seed=seed)
        self.report_rule_batch: int | None = None
        self.converged_at: int | None = None
        self.checks: list[list[int]] = []
        self._streak = 0
        model.train()

    def train_epoch(self, epoch: int) -> dict[str, float]:
        tokens, labels = next(self.stream)
        logits = self.model(tokens)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean().item()
        if not self._converged(epoch, accuracy):
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_norm)
            self.optimizer.step()
        return {"loss": loss.item(), "accuracy": accuracy}

    def should_stop(self) -> str | None:
        return CONVERGED if self.converged_at is not None else None

    def _converged(self, batch: int, accuracy: float) -> bool:
        """The stopping rule after ``batch``: ``patience`` perfect batches in a row, confirmed
        on ``confirm_samples`` fresh samples (a failed confirmation restarts the streak)."""
        self._streak = self._streak + 1 if accuracy == 1.0 else 0
        if self._streak < self.config.patience:
            return False
        self.report_rule_batch = self.report_rule_batch or batch
        if self.config.confirm_samples:
            checked, errors = _confirm(
                self.model, self.task, self.config.confirm_samples, self.confirm_rng
            )
            self.checks.append([batch, checked, errors])
            if errors:
                self._streak = 0
                return False
        self.converged_at = batch
        return True

    def evaluate(self, epoch: int) -> dict[str, float]:
        val_set = self.task.validation_set(self.config.val_samples, seed=self.seed)
        val_loss, val_acc = evaluate(self.model, *val_set)
        return {"val_loss": val_loss, "val_acc": val_acc}


def _check_sizes(model: SequenceClassifier, task: MemoryTask) -> None:
    if model.num_tokens < task.num_tokens or model.num_classes != task.num_classes:
        raise InputError(
            f"model has num_tokens={model.num_tokens}, num_classes={model.num_classes}, but "
            f"{task!r} needs {task.num_tokens} tokens and {task.num_classes} classes"
        )


def _batch_callback(callback: Callback | None) -> Callable[[dict[str, Any]], None] | None:
    """The engine's ``callback(record)`` calling ``callback(batch, loss, accuracy)``; its
    return value is ignored (it never interrupts the run)."""
    if callback is None:
        return None

    def report(record: dict[str, Any]) -> None:
        callback(record["epoch"], record["loss"], record["accuracy"])

    return report


def fit(
    model: SequenceClassifier,
    task: MemoryTask,
    *,
    seed: int = 0,
    config: TrainConfig | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Train ``model`` on ``task`` with the memory-task protocol and validate it.

    Args:
        model (SequenceClassifier): a classifier sized for ``task``.
        task (MemoryTask): the data; the training stream and validation set use ``seed``.
        seed (int, optional): data seed. (default: 0)
        config (TrainConfig, optional): hyper-parameters. (default: ``TrainConfig()``)
        callback (callable, optional): ``callback(batch, loss, accuracy)`` after every batch
            (the CLI's progress bar). (default: None)
    """
    config = TrainConfig() if config is None else config
    check_type("model", model, SequenceClassifier, "a SequenceClassifier (build_model(name, task))")
    check_type("task", task, MemoryTask, "a MemoryTask (make_task(name, seq_len))")
    check_type(
        "config", config, TrainConfig, "a gnnkit.seq.TrainConfig (for a dict d: TrainConfig(**d))"
    )
    check_callable("callback", callback, "a function callback(batch, loss, accuracy) or None")
    _check_sizes(model, task)
    start = time.perf_counter()
    training = SequenceClassifierTask(model, task, config, seed)
    run = Run(training, epochs=config.max_batches, eval_every=0, callback=_batch_callback(callback))
    history = run.run().history
    seconds = time.perf_counter() - start
    logger.debug(
        "%s on %r: %s after %d batches, val acc %.4f",
        type(model).__name__,
        task,
        "converged" if training.converged_at else "not converged",
        run.epoch,
        history["val_acc"][-1],
    )
    return TrainResult(
        converged=training.converged_at is not None,
        batches_to_converge=training.converged_at,
        report_rule_batch=training.report_rule_batch,
        checks=training.checks,
        batches=run.epoch,
        val_acc=history["val_acc"][-1],
        val_loss=history["val_loss"][-1],
        seconds=seconds,
        loss=history["loss"],
        accuracy=history["accuracy"],
    )


def run_experiment(
    task: str,
    model: str,
    seq_len: int,
    *,
    seed: int = 0,
    embed_dim: int | None = None,
    hidden_dim: int = DEFAULT_HIDDEN_DIM,
    forget_bias: float | None = DEFAULT_FORGET_BIAS,
    config: TrainConfig | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Build task and model by name, initialise the model from ``seed`` and :func:`fit` it.

    The model's initial weights come from ``torch.manual_seed(seed)`` inside
    :func:`torch.random.fork_rng`, so the caller's global random state is left untouched and
    the same arguments give the same run.

    Args:
        task (str): ``"randomcomb"`` or ``"palindrome"``.
        model (str): a name in :data:`gnnkit.seq.MODELS` (``rnn``, ``lstm``, ``bilstm``...).
        seq_len (int): sequence length T (>= 2).
        seed (int, optional): seeds the weights and the data. (default: 0)
        embed_dim (int, optional): embedding size; ``None`` means ``2 * seq_len``.
            (default: None)
        hidden_dim (int, optional): hidden size. (default: 256)
        forget_bias (float, optional): initial forget-gate bias of LSTM models, ``None`` for
            PyTorch's initialisation (see :class:`gnnkit.seq.LSTMClassifier`). (default: 1)
        config (TrainConfig, optional): hyper-parameters. (default: ``TrainConfig()``)
        callback (callable, optional): see :func:`fit`.
    """
    memory_task = make_task(task, seq_len)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed must be an integer >= 0, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = build_model(
            model,
            memory_task,
            embed_dim=embed_dim,
            hidden_dim=hidden_dim,
            forget_bias=forget_bias,
        )
    return fit(network, memory_task, seed=seed, config=config, callback=callback)
