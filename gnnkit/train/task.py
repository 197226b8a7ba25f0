"""What the training engine trains, and what a run returns: :class:`Task` and :class:`RunResult`.

A :class:`Task` trains one epoch and evaluates; :class:`gnnkit.train.engine.Run` drives it
(the loop, selection, stopping, checkpoints) and returns a :class:`RunResult`. Each training
path subclasses :class:`Task` beside its domain: the node, graph and link tasks in
:mod:`gnnkit.train`, the partitioned one in :mod:`gnnkit.distributed`, the sequence and
citation tasks in :mod:`gnnkit.seq` and :mod:`gnnkit.citation`. Both names are importable from
:mod:`gnnkit.train.engine` too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["RunResult", "Task"]


class Task:
    """What :class:`~gnnkit.train.engine.Run` trains: one epoch at a time, plus an evaluation.

    Subclasses set :attr:`model` (and :attr:`optimizer`, which checkpoints hold) and
    implement :meth:`train_epoch`; every other method has a default.

    Attributes:
        model (torch.nn.Module): the model being trained.
        optimizer (torch.optim.Optimizer, optional): saved and restored with checkpoints.
        monitor (sequence of (str, str)): ``(metric, "max" | "min")`` pairs that rank
            evaluations in order (a tie on the first goes to the second); empty: no selection.
        nonfinite (sequence of str): metrics that must stay finite (losses).
        progress_keys (sequence of (str, str)): ``(label, metric)`` pairs the progress bar
            shows after every epoch.
        units (str): what the engine's epochs are to the user, as messages count them
            (``"epochs"``; a character model's task trains ``"batches"``).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    monitor: Sequence[tuple[str, str]] = ()
    nonfinite: Sequence[str] = ("loss",)
    progress_keys: Sequence[tuple[str, str]] = (("loss", "loss"),)
    units: str = "epochs"

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Train epoch ``epoch`` (1-based); returns its metrics (e.g. the mean loss)."""
        raise NotImplementedError(f"{type(self).__name__} must implement train_epoch")

    def evaluate(self, epoch: int) -> dict[str, float]:
        """Metrics after epoch ``epoch`` (validation and test scores). (default: none)"""
        return {}

    def should_stop(self) -> str | None:
        """A reason to end the run after the epoch just trained (e.g. ``"converged"``)."""
        return None

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed
        (:func:`gnnkit.train.checkpoint.run_identity`)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Task state beyond the model and optimizer that a checkpoint must hold."""
        return {}

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        """Restore :meth:`state_dict` from the checkpoint ``path``."""

    def check_checkpoint(self, state: dict[str, Any], path: Path) -> None:
        """Refuse, with a specific message, a checkpoint this task cannot resume (called
        before the generic identity check)."""

    def on_evaluated(self, epoch: int, metrics: dict[str, float], improved: bool) -> None:
        """Called after every evaluation (logging, best-model files)."""

    def on_epoch_end(self, epoch: int, finished: str | None) -> None:
        """Called after every epoch, before the checkpoint (samples, snapshots)."""

    def nonfinite_message(self, epoch: int, bad: list[str]) -> str:
        """The error message for non-finite ``bad`` metrics (``name=value``) at ``epoch``."""
        lr = self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else None
        hint = "lower the learning rate" + (f" (lr={lr})" if lr is not None else "")
        return (
            f"the loss became non-finite at epoch {epoch} ({', '.join(bad)}); {hint} or check "
            "the inputs for NaN/inf"
        )


@dataclass
class RunResult:
    """The outcome of a :class:`~gnnkit.train.engine.Run`.

    Attributes:
        history (dict): one list per metric: the epochs' metrics (one entry per epoch) and
            the evaluations' (one entry per evaluation, whose epochs are ``eval_epoch``).
        best (dict): the selected evaluation's ``epoch`` and metrics (empty: none selected).
        epochs_run (int): epochs trained, over every call that trained the run.
        finished (str or None): why the run ended: ``"epochs"``, ``"patience"``,
            ``"time-budget"``, a task's reason, or ``None`` (interrupted, resumable).
        epoch_times (list of float): seconds of each epoch (training plus evaluation;
            checkpoints, progress bars and callbacks excluded).
        train_times, eval_times (list of float): seconds of each epoch's training alone, and
            of each evaluation.
        resumed_from (int): the epoch this call continued from (0 for a fresh run).
        wall_time (float): seconds of training, evaluation and checkpoints over all calls.
    """

    history: dict[str, list[Any]]
    best: dict[str, Any]
    epochs_run: int
    finished: str | None
    epoch_times: list[float] = field(repr=False)
    train_times: list[float] = field(repr=False)
    eval_times: list[float] = field(repr=False)
    resumed_from: int = 0
    wall_time: float = 0.0

    @property
    def run_time(self) -> float:
        """Seconds spent in epochs (the sum of :attr:`epoch_times`)."""
        return math.fsum(self.epoch_times)
