"""The reference report's training protocol for the memory tasks (Questions 1.3 and 1.4).

Adam (learning rate 1e-3), batches of 128 fresh samples, gradient clipping at max-norm 10, at
most 2,000 batches, early stop once the accuracy is 100 % on the last 3 training batches;
then loss and accuracy on 4,096 independent validation samples. The report's metric is the
number of batches until convergence.

NOTE: 100 % on 3 batches (384 samples) only shows an error rate below about 1 %; on
T >= 10 the report's rule alone stops models at 98-99.9 % validation accuracy. By default
:func:`fit` therefore confirms each stop on 4,096 fresh samples from a separate
"confirmation" stream (never the validation set) and trains on when one is wrong.
``TrainConfig(confirm_samples=0)`` is the report's rule alone; the batch at which the report's
rule first fired is always recorded (:attr:`TrainResult.report_rule_batch`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

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

__all__ = ["TrainConfig", "TrainResult", "evaluate", "fit", "run_experiment"]

logger = logging.getLogger(__name__)

#: ``callback(batch, loss, accuracy)``, called after every training batch (1-based).
Callback = Callable[[int, float, float], None]


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters; the defaults are the report's.

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
            the patience rule alone (the report's protocol). (default: 4096)
    """

    lr: float = 1e-3
    batch_size: int = 128
    max_norm: float = 10.0
    max_batches: int = 2000
    patience: int = 3
    val_samples: int = 4096
    confirm_samples: int = 16384

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_batches", "patience", "val_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"TrainConfig.{name} must be an integer >= 1, got {value!r}")
        value = self.confirm_samples
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(
                f"TrainConfig.confirm_samples must be an integer >= 0 (0: no confirmation), "
                f"got {value!r}"
            )
        for name in ("lr", "max_norm"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise InputError(f"TrainConfig.{name} must be a finite number > 0, got {value!r}")


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes:
        converged (bool): whether the early-stopping criterion fired within the budget.
        batches_to_converge (int or None): the batch at which it fired (1-based), else None.
        report_rule_batch (int or None): the first batch at which the report's rule alone
            (``patience`` perfect batches) fired, else None.
        checks (list of [int, float]): ``[batch, accuracy]`` of every confirmation.
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
    checks: list[list[float]]
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
    """Mean cross-entropy and accuracy of ``model`` on ``(tokens, labels)``, in eval mode."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    try:
        for start in range(0, labels.numel(), batch_size):
            logits = model(tokens[start : start + batch_size])
            target = labels[start : start + batch_size]
            total_loss += F.cross_entropy(logits, target, reduction="sum").item()
            correct += int((logits.argmax(dim=1) == target).sum())
    finally:
        model.train(was_training)
    return total_loss / labels.numel(), correct / labels.numel()


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


def fit(
    model: SequenceClassifier,
    task: MemoryTask,
    *,
    seed: int = 0,
    config: TrainConfig | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Train ``model`` on ``task`` with the report's protocol and validate it.

    Args:
        model (SequenceClassifier): a classifier sized for ``task``.
        task (MemoryTask): the data; the training stream and validation set use ``seed``.
        seed (int, optional): data seed. (default: 0)
        config (TrainConfig, optional): hyper-parameters. (default: the report's)
        callback (callable, optional): ``callback(batch, loss, accuracy)`` after every batch
            (the CLI's progress bar). (default: None)
    """
    config = config or TrainConfig()
    if model.num_tokens < task.num_tokens or model.num_classes != task.num_classes:
        raise InputError(
            f"model has num_tokens={model.num_tokens}, num_classes={model.num_classes}, but "
            f"{task!r} needs {task.num_tokens} tokens and {task.num_classes} classes"
        )
    start = time.perf_counter()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    losses: list[float] = []
    accuracies: list[float] = []
    checks: list[list[float]] = []
    streak = 0
    converged_at = report_rule_batch = None
    confirm_rng = generator(seed, "confirmation")
    model.train()
    stream = task.stream(config.batch_size, seed=seed)
    for batch in range(1, config.max_batches + 1):
        tokens, labels = next(stream)
        logits = model(tokens)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean().item()
        losses.append(loss.item())
        accuracies.append(accuracy)
        if callback is not None:
            callback(batch, losses[-1], accuracy)
        streak = streak + 1 if accuracy == 1.0 else 0
        if streak >= config.patience:
            report_rule_batch = report_rule_batch or batch
            if not config.confirm_samples:
                converged_at = batch
                break
            checked, errors = _confirm(model, task, config.confirm_samples, confirm_rng)
            checks.append([batch, checked, errors])
            if errors == 0:
                converged_at = batch
                break
            streak = 0
        # the model that scored the final batch is kept: its update is skipped on a stop
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.max_norm)
        optimizer.step()

    val_loss, val_acc = evaluate(model, *task.validation_set(config.val_samples, seed=seed))
    seconds = time.perf_counter() - start
    logger.debug(
        "%s on %r: %s after %d batches, val acc %.4f",
        type(model).__name__,
        task,
        "converged" if converged_at else "not converged",
        len(losses),
        val_acc,
    )
    return TrainResult(
        converged=converged_at is not None,
        batches_to_converge=converged_at,
        report_rule_batch=report_rule_batch,
        checks=checks,
        batches=len(losses),
        val_acc=val_acc,
        val_loss=val_loss,
        seconds=seconds,
        loss=losses,
        accuracy=accuracies,
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
        config (TrainConfig, optional): hyper-parameters. (default: the report's)
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
