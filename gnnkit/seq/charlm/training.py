"""Training a :class:`~gnnkit.seq.charlm.CharLSTM`: :class:`Trainer`, its :class:`History`
and :func:`plot_history`.

:class:`Trainer` is a thin facade over the training engine: a :class:`CharLMTask`
(:mod:`gnnkit.seq.charlm.task`: what one batch, an evaluation, a sample and a snapshot do)
driven by a :class:`gnnkit.train.engine.Run` (the batch loop, evaluations every
``eval_every`` batches and after the last, ``checkpoint.pt`` every ``checkpoint_every``
batches, at the end and on interruption, in the engine's one checkpoint format, and exact
resume). The schedule follows Graves (arXiv:1308.0850) and Karpathy's char-rnn: Adam,
learning-rate decay, gradient clipping, dropout; ``best.pt`` keeps the weights with the
lowest validation loss so far (small corpora such as Bartleby overfit long before the last
batch).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gnnkit.errors import CheckpointError, InputError
from gnnkit.seq.charlm.config import TrainConfig
from gnnkit.seq.charlm.corpus import TextDataset
from gnnkit.seq.charlm.model import CharLSTM
from gnnkit.seq.charlm.snapshot import FORMAT
from gnnkit.seq.charlm.task import BEST_NAME, CharLMTask, evaluate, task_state
from gnnkit.train.checkpoint import load_checkpoint
from gnnkit.train.engine import Run
from gnnkit.utils.io import not_a_file, safe_torch_load

__all__ = [
    "BEST_NAME",
    "CHECKPOINT_NAME",
    "History",
    "Trainer",
    "evaluate",
    "plot_history",
    "training_state",
]

logger = logging.getLogger(__name__)

#: The resumable checkpoint inside an output folder.
CHECKPOINT_NAME = "checkpoint.pt"

#: ``on_step(step, {"loss", "acc", "lr"})`` after every batch; ``True`` stops the run.
OnStep = Callable[[int, dict[str, float]], "bool | None"]


@dataclass
class History:
    """Curves of one training run (JSON-ready via :meth:`to_dict`).

    Attributes:
        train_loss, train_acc (list of float): per batch, in training mode (dropout on).
        lr (list of float): learning rate of every batch.
        eval_step (list of int): batches after which an evaluation ran.
        val_loss, val_acc (list of float): on the validation windows, eval mode.
        train_eval_loss, train_eval_acc (list of float): on as many training windows, eval mode.
        samples (list of [int, str]): ``[step, greedy sample]`` pairs.
        train_seconds (float): wall time of the training batches (evaluations excluded).
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    train_eval_loss: list[float] = field(default_factory=list)
    train_eval_acc: list[float] = field(default_factory=list)
    samples: list[list[Any]] = field(default_factory=list)
    train_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> History:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    @classmethod
    def from_run(cls, run: Run, samples: list[list[Any]]) -> History:
        """The curves a :class:`CharLMTask` run recorded (the engine's ``eval_epoch`` is
        :attr:`eval_step`), with its samples."""
        curves = {key: list(values) for key, values in run.history.items()}
        curves["eval_step"] = curves.pop("eval_epoch", [])
        history = cls.from_dict({**curves, "samples": [list(s) for s in samples]})
        history.train_seconds = math.fsum(run.train_times)
        return history

    def summary(self, window: int = 100) -> dict[str, Any]:
        """Final numbers: last evaluation, best validation accuracy, smoothed training curve."""
        out: dict[str, Any] = {"steps": len(self.train_loss)}
        if self.train_acc:
            tail = self.train_acc[-window:]
            out["train_acc_last"] = sum(tail) / len(tail)
            out["train_loss_last"] = sum(self.train_loss[-window:]) / len(tail)
            out["train_acc_max"] = max(self.train_acc)
        if self.eval_step:
            out["eval_step"] = self.eval_step[-1]
            out["val_loss"] = self.val_loss[-1] if self.val_loss else None
            out["val_acc"] = self.val_acc[-1] if self.val_acc else None
            out["val_acc_best"] = max(self.val_acc) if self.val_acc else None
            if self.val_loss:
                best = min(range(len(self.val_loss)), key=self.val_loss.__getitem__)
                out["best_step"] = self.eval_step[best]
                out["best_val_loss"] = self.val_loss[best]
                out["best_val_acc"] = self.val_acc[best]
            out["train_eval_loss"] = self.train_eval_loss[-1]
            out["train_eval_acc"] = self.train_eval_acc[-1]
        return out


def _check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be an integer >= 1, got {steps!r}")
    return steps


def _on_step_callback(on_step: OnStep | None) -> Callable[[dict[str, Any]], Any] | None:
    """The engine's ``callback(record)`` for ``on_step(step, {"loss", "acc", "lr"})``."""
    if on_step is None:
        return None

    def report(record: dict[str, Any]) -> bool | None:
        metrics = {"loss": record["train_loss"], "acc": record["train_acc"], "lr": record["lr"]}
        return on_step(record["epoch"], metrics)

    return report


def _refuse_model_file(path: Path) -> None:
    """Raise a specific message when ``path`` is a model file, not a training checkpoint
    (called when the engine refused ``path``, so the second read costs only on errors)."""
    try:
        payload = safe_torch_load(path, what="checkpoint")
    except CheckpointError:
        return
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        return
    if payload.get("kind") == "training":
        raise CheckpointError(
            f"checkpoint {path} was written by an earlier gnnkit, before the training engine: "
            "it cannot be resumed (load_model and gnnkit text sample still read it); start a "
            "new run in another folder"
        )
    raise CheckpointError(
        f"checkpoint {path} is a model snapshot without optimizer state; resume from "
        f"the run's {CHECKPOINT_NAME}"
    )


def training_state(path: str | os.PathLike) -> dict[str, Any]:
    """The character model's part of a run's checkpoint (:meth:`CharLMTask.state_dict`:
    vocabulary, model and training configs, corpus, preset, seed...) and its ``step``.

    Raises:
        CheckpointError: a missing or corrupt file, a model snapshot or a checkpoint written
            before the training engine (each said so), or a checkpoint of another task.
    """
    path = Path(path)
    try:
        state = load_checkpoint(path)
    except CheckpointError:
        _refuse_model_file(path)
        raise
    return {**task_state(state, path), "step": int(state["epoch"])}


class Trainer:
    """Trains a model on a dataset; writes checkpoints to ``out_dir`` and resumes from them.

    Args:
        model (CharLSTM): the model (moved to ``device``).
        dataset (TextDataset): the corpus; its vocabulary must be the model's and its window
            length ``config.seq_length``.
        config (TrainConfig): the schedule.
        out_dir (str or PathLike, optional): where ``checkpoint.pt``, ``best.pt`` and the
            snapshots ``step_NNNNNN.pt`` go; ``None`` writes nothing. (default: ``None``)
        seed (int, optional): seeds the batch sampler and, through ``torch.manual_seed``, the
            dropout masks. (default: 0)
        device (str or torch.device, optional): where to train. (default: ``"cpu"``)
        preset (str, optional): the preset name recorded in checkpoints. (default: ``None``)

    Attributes:
        task (CharLMTask): what the engine trains (model, optimizer, scheduler, sampler).

    NOTE: gnnkit records the accuracy of every training batch (dropout on) and, at each
    evaluation, the accuracy in eval mode on the validation windows and on as many training
    windows, all from a zero state at each window's start.

    Example::

        trainer = Trainer(model, dataset, config, out_dir="runs/bartleby")
        history = trainer.run()
        trainer = Trainer(model, dataset, config.replace(steps=4000), out_dir="runs/bartleby")
        trainer.resume()  # from runs/bartleby/checkpoint.pt, to batch 4000
        history = trainer.run()
    """

    def __init__(
        self,
        model: CharLSTM,
        dataset: TextDataset,
        config: TrainConfig,
        *,
        out_dir: str | os.PathLike | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        preset: str | None = None,
    ) -> None:
        _check_arguments(model, dataset, config)
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.dataset, self.config = dataset, config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        torch.manual_seed(int(seed))
        self.task = CharLMTask(
            self.model, dataset, config, seed=seed, preset=preset, out_dir=self.out_dir
        )
        self._run: Run | None = None

    # the task's parts, under the names they have always had
    optimizer = property(lambda self: self.task.optimizer)
    scheduler = property(lambda self: self.task.scheduler)
    generator = property(lambda self: self.task.generator)
    seed = property(lambda self: self.task.seed)
    preset = property(lambda self: self.task.preset)

    @property
    def checkpoint_path(self) -> Path | None:
        """``out_dir/checkpoint.pt`` (``None`` without an ``out_dir``)."""
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    @property
    def step(self) -> int:
        """Batches trained so far."""
        return self._run.epoch if self._run is not None else 0

    @property
    def history(self) -> History:
        """The curves so far (a new :class:`History` on every access)."""
        if self._run is None:
            return History()
        return History.from_run(self._run, self.task.samples)

    def _new_run(self, steps: int, checkpoint: Path | None, resume: bool = False) -> Run:
        cfg = self.config
        return Run(
            self.task,
            epochs=steps,
            eval_every=cfg.eval_every,
            checkpoint=checkpoint,
            checkpoint_every=cfg.checkpoint_every,
            resume=resume,
        )

    # ---------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The character model's part of a checkpoint (:meth:`CharLMTask.state_dict`); the
        engine adds the weights, optimizer, random states and history when it writes one."""
        return self.task.state_dict()

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the resumable checkpoint atomically (default: ``out_dir/checkpoint.pt``)."""
        target = Path(path) if path is not None else self.checkpoint_path
        if target is None:
            raise InputError("no out_dir and no path: nowhere to write the checkpoint")
        if self._run is None:
            self._run = self._new_run(self.config.steps, self.checkpoint_path)
        run, previous = self._run, self._run.path
        run.path = target
        try:
            run.save()
        finally:
            run.path = previous
        return target

    def resume(self, path: str | os.PathLike | None = None) -> int:
        """Load ``path`` (default: ``out_dir/checkpoint.pt``); returns the step reached.

        Later checkpoints go to ``out_dir/checkpoint.pt`` (none without an ``out_dir``).

        Raises:
            CheckpointError: a missing or corrupt file, a model snapshot rather than a
                training checkpoint, a run of another vocabulary, model, corpus or schedule,
                or one that has trained more than ``config.steps`` batches.
        """
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise InputError("no out_dir and no path: nothing to resume from")
        problem = not_a_file(path)
        if problem:
            raise CheckpointError(f"checkpoint {path} {problem}")
        try:
            run = self._new_run(self.config.steps, path, resume=True)
        except CheckpointError:
            _refuse_model_file(path)
            raise
        run.path = self.checkpoint_path
        self._run = run
        logger.info("resumed from %s at batch %d", path, run.epoch)
        return run.epoch

    # ------------------------------------------------------------------------------- training
    def run(self, steps: int | None = None, *, on_step: OnStep | None = None) -> History:
        """Train until batch ``steps`` (default: ``config.steps``); returns the history.

        Args:
            steps (int, optional): the batch count to reach (not a count of extra batches).
            on_step (callable, optional): called after every batch with the step and
                ``{"loss", "acc", "lr"}``; returning ``True`` stops training after a checkpoint
                is written (for Ctrl-C handling and progress bars).

        Raises:
            NonFiniteLossError: the training loss became NaN or infinite (the last checkpoint
                is left as it was).
        """
        steps = _check_steps(self.config.steps if steps is None else steps)
        if self._run is None:
            self._run = self._new_run(steps, self.checkpoint_path)
        elif steps <= self._run.epoch:
            return self.history
        else:
            self._run.extend(steps)
        self._run.callback = _on_step_callback(on_step)
        self._run.run()
        return self.history


def _check_arguments(model: Any, dataset: TextDataset, config: Any) -> None:
    if not isinstance(model, CharLSTM):
        raise InputError(f"model must be a CharLSTM, got {type(model).__name__}")
    if not isinstance(config, TrainConfig):
        raise InputError(f"config must be a TrainConfig, got {type(config).__name__}")
    if dataset.vocabulary != model.vocabulary:
        raise InputError(
            f"the dataset's vocabulary ({len(dataset.vocabulary)} characters) differs from "
            f"the model's ({len(model.vocabulary)}); build the model with dataset.vocabulary"
        )
    if dataset.seq_length != config.seq_length:
        raise InputError(
            f"dataset windows have length {dataset.seq_length} but config.seq_length is "
            f"{config.seq_length}"
        )


def plot_history(history: History, path: str | os.PathLike, *, title: str = "") -> Path:
    """Loss and accuracy curves (per batch light, smoothed dark; evaluations as markers)."""
    from gnnkit.utils.plotting import plot_seed_curves, save_figure, subplots

    fig, (ax_loss, ax_acc) = subplots(1, 2, figsize=(11, 4))
    for ax, train, train_eval, val, name in (
        (ax_loss, history.train_loss, history.train_eval_loss, history.val_loss, "loss"),
        (ax_acc, history.train_acc, history.train_eval_acc, history.val_acc, "accuracy"),
    ):
        plot_seed_curves(ax, [train], label="training batches", color="C0", window=50)
        if train_eval:
            ax.plot(history.eval_step, train_eval, "s-", color="C2", ms=3, label="training (eval)")
        if val:
            ax.plot(history.eval_step, val, "o-", color="C1", ms=3, label="validation")
        ax.set_xlabel("batch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
