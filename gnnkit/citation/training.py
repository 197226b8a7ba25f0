"""Training the neural citation models on gnnkit's engine (:mod:`gnnkit.train.engine`).

Every neural model (``text``, ``graph``, ``hybrid``, ``textgcn``) trains the same way:

1. the training fold is split into a fitting part and a stratified validation part
   (:func:`~gnnkit.citation.cv.inner_split`); the test part is used only by ``predict``;
2. each epoch minimises the class-weighted cross-entropy on the fitting part (full-batch by
   default, in mini-batches for the sentence models), with Adam;
3. after each epoch the model is evaluated on the validation part: macro-F1 and the
   class-weighted cross-entropy;
4. :class:`gnnkit.train.engine.Run` selects the epoch with the **highest validation macro-F1,
   ties broken by the lower validation loss** (a tiny validation set that reaches F1 = 1 early
   still lets training improve the loss), stops ``patience`` epochs after the last
   improvement, and restores the selected epoch's parameters; the model ends in eval mode.

The class weights are balanced over the training labels: class :math:`c` weighs
:math:`n / (C\\, n_c)` to the power ``class_weight_power`` (:meth:`FoldView.class_weights`),
and the loss is :math:`\\sum_i w_{y_i} \\ell_i / \\sum_i w_{y_i}`.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.citation.base import CitationModel
from gnnkit.citation.folds import FoldView, inner_split
from gnnkit.citation.metrics import macro_f1
from gnnkit.errors import InputError
from gnnkit.train.engine import Run, RunResult, Task
from gnnkit.utils.checks import check_number
from gnnkit.utils.fields import POSITIVE_INT, POSITIVE_NUMBER, PROBABILITY, rule, validate_fields

__all__ = ["CitationTask", "NeuralModel", "TrainingHistory", "train"]


@dataclass
class TrainingHistory:
    """What a neural model's training recorded (``model.history_`` after ``fit``).

    Attributes:
        best_epoch (int): the epoch whose parameters were kept (1-based).
        best_score (float): the validation macro-F1 of ``best_epoch``.
        best_loss (float): the validation loss of ``best_epoch``.
        scores (list of float): the validation macro-F1 after each epoch.
        losses (list of float): the class-weighted validation loss after each epoch.
        train_losses (list of float): each epoch's mean training loss (over its batches).
        finished (str or None): why training ended: ``"epochs"`` or ``"patience"``.
    """

    best_epoch: int = 0
    best_score: float = -1.0
    best_loss: float = math.inf
    scores: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    finished: str | None = None

    @classmethod
    def from_run(cls, result: RunResult) -> TrainingHistory:
        """The history of a :class:`CitationTask`'s :class:`~gnnkit.train.engine.Run`."""
        best, history = result.best, result.history
        return cls(
            best_epoch=int(best.get("epoch", 0)),
            best_score=float(best.get("val_macro_f1", -1.0)),
            best_loss=float(best.get("val_loss", math.inf)),
            scores=list(history.get("val_macro_f1", [])),
            losses=list(history.get("val_loss", [])),
            train_losses=list(history.get("loss", [])),
            finished=result.finished,
        )


class CitationTask(Task):
    """A citation model's training as an engine :class:`~gnnkit.train.engine.Task`.

    One epoch is one full-batch Adam step on the class-weighted cross-entropy of the fitting
    sentences (subclasses such as :class:`~gnnkit.citation.text.SentenceTask` train in
    mini-batches); the evaluation scores the validation sentences (see the module docstring).

    Args:
        model (torch.nn.Module): the parameters trained (and restored to the best epoch's).
        optimizer (torch.optim.Optimizer): their optimiser.
        logits (callable): ``logits(index)`` returns the (len(index), C) logits of the
            sentences ``index`` (an int64 array), in that order, from the current parameters.
        fit (array): the sentences the loss is taken on.
        val (array): the validation sentences.
        labels (Tensor): (|E|,) int64 label of every sentence, ``-1`` outside the training
            fold (:meth:`NeuralModel._split`).
        weight (Tensor): (C,) the cross-entropy's class weights.
    """

    monitor = (("val_macro_f1", "max"), ("val_loss", "min"))
    nonfinite = ("loss", "val_loss")
    progress_keys = (("loss", "loss"), ("val F1", "val_macro_f1"))

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        logits: Callable[[np.ndarray], Tensor],
        fit: np.ndarray,
        val: np.ndarray,
        labels: Tensor,
        weight: Tensor,
    ) -> None:
        self.model, self.optimizer, self.logits = model, optimizer, logits
        self.fit, self.val, self.labels, self.weight = fit, val, labels, weight
        self.y_fit = labels[torch.as_tensor(fit)]
        self.y_val = labels[torch.as_tensor(val)]
        if bool((self.y_fit < 0).any()) or bool((self.y_val < 0).any()):
            raise InputError(
                "fit and val must hold training sentences only (whose labels are >= 0)"
            )

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        loss = F.cross_entropy(self.logits(self.fit), self.y_fit, weight=self.weight)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach())}

    def evaluate(self, epoch: int) -> dict[str, float]:
        self.model.eval()
        with torch.no_grad():
            logits = self.logits(self.val)  # (n_val, C)
            loss = float(F.cross_entropy(logits, self.y_val, weight=self.weight))
            pred = logits.argmax(dim=1).numpy()
        score = macro_f1(self.y_val.numpy(), pred, self.weight.numel())
        return {"val_macro_f1": score, "val_loss": loss}


def train(task: CitationTask, *, epochs: int, patience: int) -> TrainingHistory:
    """Train ``task`` for at most ``epochs`` epochs with early stopping (see the module
    docstring); the model ends with the selected epoch's parameters, in eval mode."""
    result = Run(task, epochs=epochs, patience=patience, restore_best=True).run()
    task.model.eval()
    return TrainingHistory.from_run(result)


@dataclass
class NeuralModel(CitationModel):
    """The hyper-parameters, inner split and training shared by the neural models."""

    name: ClassVar[str]
    epochs: int = field(default=20, metadata=POSITIVE_INT)
    patience: int = field(default=4, metadata=POSITIVE_INT)
    lr: float = field(default=3e-3, metadata=POSITIVE_NUMBER)
    weight_decay: float = 0.0
    batch_size: int = field(default=128, metadata=POSITIVE_INT)
    dropout: float = field(default=0.3, metadata=PROBABILITY)
    val_fraction: float = field(
        default=0.1, metadata=rule(check_number, low=0.0, high=1.0, open_low=True, open_high=True)
    )
    class_weight_power: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        validate_fields(self)
        self.module_: nn.Module | None = None
        self.history_: TrainingHistory | None = None

    @property
    def best_epoch(self) -> int | None:
        """The epoch whose parameters were kept (after :meth:`fit`)."""
        return None if self.history_ is None else self.history_.best_epoch

    def _split(self, view: FoldView) -> tuple[np.ndarray, np.ndarray, Tensor]:
        """Check ``view`` and seed torch (how every ``fit`` begins); return the fitting and the
        validation sentences, and every sentence's training label (``-1`` for test sentences)."""
        self._check_view(view)
        torch.manual_seed(self.seed)
        fit, val = inner_split(view.train, view.y_train, fraction=self.val_fraction, seed=view.seed)
        labels = torch.full((len(view.tokens),), -1, dtype=torch.long)
        labels[torch.as_tensor(view.train)] = torch.as_tensor(view.y_train, dtype=torch.long)
        return fit, val, labels

    def _train(
        self,
        view: FoldView,
        split: tuple[np.ndarray, np.ndarray, Tensor],
        task_type: type[CitationTask] = CitationTask,
        **options: Any,
    ) -> None:
        """Train ``self.module_`` with Adam as a ``task_type`` task (``options`` are that
        task's own arguments) on the :meth:`_split` ``split``; keep the history."""
        fit, val, labels = split
        task = task_type(
            self.module_,
            torch.optim.Adam(self.module_.parameters(), lr=self.lr, weight_decay=self.weight_decay),
            logits=self._all_logits,
            fit=fit,
            val=val,
            labels=labels,
            weight=view.class_weights(self.class_weight_power),
            **options,
        )
        self.history_ = train(task, epochs=self.epochs, patience=self.patience)

    @abstractmethod
    def _all_logits(self, index: np.ndarray) -> Tensor:
        """The (len(index), C) logits of the sentences ``index``, in that order."""

    def predict(self, view: FoldView, index: np.ndarray | None = None) -> np.ndarray:
        self._check_fitted("module_")
        self.module_.eval()
        index = view.test if index is None else np.asarray(index)
        with torch.no_grad():
            return self._all_logits(index).argmax(1).numpy().astype(np.int64)
