"""The training engine: the :class:`Run` that drives a :class:`Task`.

A task trains one epoch and evaluates (:mod:`gnnkit.train.task`: the :class:`Task` interface and
the :class:`RunResult` a run returns); a run does everything around that, once for every
training path of gnnkit (node classification full-batch, mini-batch and distributed, graph
property and link prediction, the memory-task RNNs, the character LSTM, the citation models):
the epoch loop, model selection (the task's ``monitor`` metrics rank evaluations
lexicographically; ties keep the earlier one), early stopping (patience, the task's own rule,
a time budget), checkpoints (:mod:`gnnkit.train.checkpoint`; ``resume=True`` continues bit for
bit), non-finite losses, progress bars and callbacks.

Each run swaps its own torch (CPU, CUDA) and Python generator states in around its epochs
(:mod:`gnnkit.utils.rng`), so runs stepped in turn (:func:`interleave`, in
:mod:`gnnkit.train.interleaving`) draw exactly what each would draw alone, and a checkpoint
holds the run's own state. One "epoch" is whatever the task makes it: a pass over the training
nodes, graphs or edges, or one batch of a stream (the sequence models count batches).

:class:`Task`, :class:`RunResult`, :func:`interleave` and :func:`round_order` are importable
from here as well as from their own modules.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from gnnkit.errors import GnnkitError, InputError
from gnnkit.train.checkpoint import resume_task, save_checkpoint, task_state
from gnnkit.train.interleaving import interleave, round_order
from gnnkit.train.task import RunResult, Task
from gnnkit.utils.checks import check_callable, check_flags, check_int, check_number, check_type
from gnnkit.utils.rng import rng_state, seed_everything, set_rng_state

__all__ = [
    "NonFiniteLossError",
    "Run",
    "RunResult",
    "Task",
    "interleave",
    "round_order",
    "seed_everything",
]

logger = logging.getLogger(__name__)


class NonFiniteLossError(GnnkitError, FloatingPointError):
    """A loss became NaN or infinite; the message names the epoch."""


#: ``callback(record)`` after every epoch (``epoch``, its metrics, the evaluation's when one
#: ran, ``epoch_time``); returning ``True`` stops the run after a checkpoint (Ctrl-C handling).
Callback = Callable[[dict[str, Any]], "bool | None"]


def _better(
    new: Mapping[str, float], best: Mapping[str, Any], monitor: Sequence[tuple[str, str]]
) -> bool:
    """Whether ``new`` ranks strictly above ``best``: the first ``monitor`` metric that
    differs decides; NaN never wins; anything beats no evaluation at all."""
    for key, mode in monitor:
        value = new[key]
        if math.isnan(value):
            return False
        if key not in best:
            return True
        if value != best[key]:
            return value > best[key] if mode == "max" else value < best[key]
    return False


class Run:
    """One training run of a :class:`Task`, advanced an epoch at a time.

    Args:
        task (Task): what to train.
        epochs (int): the number of epochs to reach (a resumed run continues to it).
        eval_every (int, optional): evaluate after every this many epochs and after the
            last; ``0``: only after the last. (default: ``1``)
        patience (int, optional): stop after this many epochs without improvement. (default: none)
        restore_best (bool, optional): end with the selected parameters. (default: ``False``)
        seed (int, optional): :func:`seed_everything` when a run starts (not when it
            resumes: the checkpoint restores the generators). (default: none)
        checkpoint (str or PathLike, optional): the checkpoint file. (default: none)
        checkpoint_every (int, optional): write it every this many epochs and whenever the
            run stops; ``0``: only when it stops. (default: ``0``)
        resume (bool, optional): continue from ``checkpoint`` if it exists, to the result of
            an uninterrupted run; a checkpoint of another model, configuration or dataset is
            refused. (default: ``False``)
        time_budget_s (float, optional): stop, with a checkpoint, before an epoch that would
            end past this many seconds (> 0) of this call (by the previous epoch). (default: none)
        progress (bool, optional): a tqdm bar on stderr. (default: ``False``)
        progress_unit (str, optional): the bar's unit. (default: ``"ep"``)
        callback (callable, optional): :data:`Callback`, after every epoch.
        main_process (bool, optional): this process writes checkpoints and shows progress
            (``False`` on the other ranks of a distributed run). (default: ``True``)
    """

    def __init__(
        self,
        task: Task,
        *,
        epochs: int,
        eval_every: int = 1,
        patience: int | None = None,
        restore_best: bool = False,
        seed: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 0,
        resume: bool = False,
        time_budget_s: float | None = None,
        progress: bool = False,
        progress_unit: str = "ep",
        callback: Callback | None = None,
        main_process: bool = True,
    ) -> None:
        check_type("task", task, Task, "a Task (a NodeTask, for example; not a model)")
        check_int("epochs", epochs)
        check_int("eval_every", eval_every, 0)
        check_int("checkpoint_every", checkpoint_every, 0)
        check_int("patience", patience, optional=True)
        check_int("seed", seed, None, optional=True)  # its range: seed_everything's check
        check_number("time_budget_s", time_budget_s, 0.0, open_low=True, optional=True)
        check_type("progress_unit", progress_unit, str, "a str (the bar's unit, such as 'ep')")
        check_flags(restore_best=restore_best, resume=resume, progress=progress)
        check_flags(main_process=main_process)
        check_callable("callback", callback, "a function of the epoch's record (or None)")
        self.task, self.epochs, self.eval_every = task, epochs, eval_every
        self.patience, self.restore_best = patience, restore_best
        self.path = Path(checkpoint) if checkpoint is not None else None
        if resume and self.path is None:
            raise InputError("resume=True needs a checkpoint path")
        self.checkpoint_every, self.time_budget_s = checkpoint_every, time_budget_s
        self.callback, self.main_process = callback, main_process
        self.cuda = any(p.device.type == "cuda" for p in task.model.parameters())

        self.history: dict[str, list[Any]] = {}
        self.best: dict[str, Any] = {}
        self.best_state: dict[str, Tensor] | None = None
        self.epoch_times: list[float] = []
        self.train_times: list[float] = []
        self.eval_times: list[float] = []
        self.epoch, self.finished, self.interrupted, self._wall_before = 0, None, False, 0.0
        if resume and self.path is not None and self.path.exists():
            self._load()
        elif seed is not None:
            seed_everything(seed)
        self.resumed_from = self.epoch
        self._written = self.epoch if self.resumed_from else -1
        self._rng = rng_state(self.cuda)
        self.started = time.perf_counter()
        self._bar = None
        if progress and main_process:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=epochs, initial=self.epoch, desc="epochs", leave=False, unit=progress_unit
            )

    # -- state ------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Every epoch has been trained, or the run has stopped (or was interrupted)."""
        return self.epoch >= self.epochs or self.finished is not None or self.interrupted

    def wall_time(self) -> float:
        """Seconds spent in this run, over every call that trained it."""
        return self._wall_before + time.perf_counter() - self.started

    def _evaluates(self, epoch: int) -> bool:
        return (bool(self.eval_every) and epoch % self.eval_every == 0) or epoch == self.epochs

    def next_epoch_estimate(self) -> float | None:
        """Seconds the next epoch should take (the last one's, plus an evaluation if due)."""
        if not self.train_times:
            return None
        estimate = self.train_times[-1]
        if self._evaluates(self.epoch + 1) and self.eval_times:
            estimate += self.eval_times[-1]
        return estimate

    def _append(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)

    # -- checkpoints ------------------------------------------------------------------------

    def save(self) -> None:
        """Write the checkpoint now (no-op without a path, or outside the main process)."""
        if self.path is None or not self.main_process:
            return
        times = {"epoch": self.epoch_times, "train": self.train_times, "eval": self.eval_times}
        save_checkpoint(
            {
                **task_state(self.task),
                "epoch": self.epoch,
                "finished": self.finished,
                "history": self.history,
                "best": self.best,
                "best_state": self.best_state,
                "times": {**times, "wall": self.wall_time()},
                "rng": self._rng,
            },
            self.path,
        )
        self._written = self.epoch

    def _load(self) -> None:
        state = resume_task(self.task, self.path, self.epochs)
        self.history = {key: list(values) for key, values in state["history"].items()}
        self.best, self.best_state = dict(state["best"]), state["best_state"]
        times = state["times"]
        self.epoch_times, self.train_times = list(times["epoch"]), list(times["train"])
        self.eval_times, self._wall_before = list(times["eval"]), float(times["wall"])
        self.epoch, self.finished = int(state["epoch"]), state["finished"]
        if self.finished in ("epochs", "time-budget") and self.epochs > self.epoch:
            self.finished = None  # a run asked for more epochs, or for more time, goes on
        set_rng_state(state["rng"])
        logger.info("resuming %s from epoch %d", self.path, self.epoch)

    # -- the loop ---------------------------------------------------------------------------

    def _check_finite(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        bad = [
            f"{key}={metrics[key]}"
            for key in self.task.nonfinite
            if key in metrics and not math.isfinite(metrics[key])
        ]
        if bad:
            kept = self.path is not None and self.path.exists()
            note = f"; the last checkpoint ({self.path}) is unchanged" if kept else ""
            raise NonFiniteLossError(self.task.nonfinite_message(epoch, bad) + note)

    def step(self) -> dict[str, Any]:
        """Train one epoch, evaluate and checkpoint when due; returns the epoch's record."""
        if self.done:
            raise InputError(f"the run has already trained all {self.epochs} epochs")
        task, epoch = self.task, self.epoch + 1
        set_rng_state(self._rng)
        tick = time.perf_counter()
        record = dict(task.train_epoch(epoch))
        train_time = time.perf_counter() - tick
        self._check_finite(epoch, record)
        stop = task.should_stop()
        metrics: dict[str, float] | None = None
        if self._evaluates(epoch) or stop is not None:  # the last epoch is always evaluated
            eval_tick = time.perf_counter()
            metrics = dict(task.evaluate(epoch))
            self.eval_times.append(time.perf_counter() - eval_tick)
        self.epoch_times.append(time.perf_counter() - tick)
        self.train_times.append(train_time)
        self._rng = rng_state(self.cuda)
        self.epoch = epoch
        self._append(record)
        if metrics is not None:
            self._check_finite(epoch, metrics)
            self._append({"eval_epoch": epoch, **metrics})
            record.update(metrics)
            improved = bool(task.monitor) and _better(metrics, self.best, task.monitor)
            if improved:
                self.best = {"epoch": epoch, **metrics}
                if self.restore_best:
                    state = task.model.state_dict()
                    self.best_state = {k: v.detach().clone() for k, v in state.items()}
            task.on_evaluated(epoch, metrics, improved)
        waited = epoch - self.best.get("epoch", 0)
        patience_ran_out = self.patience is not None and waited >= self.patience
        self.finished = stop or ("patience" if patience_ran_out else None)
        if self.finished is None and epoch == self.epochs:
            self.finished = "epochs"
        task.on_epoch_end(epoch, self.finished)
        if self.finished or (self.checkpoint_every and epoch % self.checkpoint_every == 0):
            self.save()
        record = {"epoch": epoch, **record, "epoch_time": self.epoch_times[-1]}
        if self._report(record) and not self.done:
            self.interrupted = True  # resumable: the checkpoint says it has not finished
            self.save()
        return record

    def _report(self, record: dict[str, Any]) -> bool:
        """Advance the progress bar and call the callback; whether it asked to stop."""
        if self._bar is not None:
            self._bar.update(1)
            keys = self.task.progress_keys
            shown = {label: f"{record[key]:.3f}" for label, key in keys if key in record}
            self._bar.set_postfix(shown, refresh=False)
        return self.callback is not None and bool(self.callback(record))

    def over_budget(self) -> bool:
        """Whether the next epoch would end past ``time_budget_s`` (unknown: no)."""
        estimate = self.next_epoch_estimate()
        if self.time_budget_s is None or estimate is None:
            return False
        return time.perf_counter() - self.started + estimate > self.time_budget_s

    def extend(self, epochs: int) -> None:
        """Let a run that reached its last epoch, or was interrupted, go on to ``epochs``
        (a later :meth:`run` in the same process, as a resumed run would)."""
        check_int("epochs", epochs)
        if epochs < self.epoch:
            units = getattr(self.task, "units", "epochs")
            raise InputError(
                f"the run has already trained {self.epoch} {units}, more than {epochs}"
            )
        self.epochs, self.interrupted = epochs, False
        if self.finished in ("epochs", "time-budget") and epochs > self.epoch:
            self.finished = None

    def stop(self, reason: str) -> None:
        """End the run now for ``reason`` (e.g. ``"time-budget"``), with a checkpoint."""
        logger.info("stopping after epoch %d: %s", self.epoch, reason)
        self.finished = reason
        self.save()

    def run(self) -> RunResult:
        """Train to the end (or until stopped) and return :meth:`result`."""
        try:
            while not self.done:
                if self.over_budget():
                    self.stop("time-budget")
                    break
                self.step()
        finally:
            self.close()
        return self.result()

    def close(self) -> None:
        """Close the progress bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def result(self) -> RunResult:
        """Finish the run (evaluate a resumed last epoch that was not, restore the selected
        parameters, checkpoint if anything is unwritten) and summarise it."""
        evaluated = self.history.get("eval_epoch", [None])[-1]
        if self.epoch >= self.epochs and evaluated != self.epoch:
            # A run resumed at its last epoch from a checkpoint written between evaluations.
            tick = time.perf_counter()
            metrics = dict(self.task.evaluate(self.epoch))
            self.eval_times.append(time.perf_counter() - tick)
            self._append({"eval_epoch": self.epoch, **metrics})
            if self.task.monitor and _better(metrics, self.best, self.task.monitor):
                self.best = {"epoch": self.epoch, **metrics}
            self.task.on_evaluated(self.epoch, metrics, False)
        if self.finished is None and self.epoch >= self.epochs:
            self.finished = "epochs"
        if self._written != self.epoch and self.epoch:
            self.save()
        if self.restore_best and self.best_state is not None:
            self.task.model.load_state_dict(self.best_state)
        return RunResult(
            history={key: list(values) for key, values in self.history.items()},
            best=dict(self.best),
            epochs_run=self.epoch,
            finished=self.finished,
            epoch_times=list(self.epoch_times),
            train_times=list(self.train_times),
            eval_times=list(self.eval_times),
            resumed_from=self.resumed_from,
            wall_time=self.wall_time(),
        )
