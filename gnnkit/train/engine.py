"""The training engine: one loop, with checkpoints, selection and early stopping, for every task.

A :class:`Task` knows how to train one epoch and how to evaluate; :class:`Run` owns
everything around that, once for all of gnnkit's tasks (node classification full-batch,
mini-batch and distributed, graph property and link prediction, the memory-task RNNs, the
character LSTM and the citation models):

- the **epoch loop** (:meth:`Run.step` advances one epoch, :meth:`Run.run` to the end), with
  an evaluation every ``eval_every`` epochs and after the last one;
- **model selection**: the task's ``monitor`` metrics rank evaluations lexicographically
  (ties keep the earlier one); ``restore_best`` ends the run with the selected parameters;
- **early stopping**: ``patience`` epochs without a better evaluation, or the task's own rule
  (:meth:`Task.should_stop`), or a ``time_budget_s`` the next epoch would overrun;
- **checkpoints**: written atomically every ``checkpoint_every`` epochs and whenever the run
  stops (:mod:`gnnkit.train.checkpoint`); ``resume=True`` continues bit for bit;
- **random state**: each run keeps its own torch (CPU and CUDA) and Python generator states
  and swaps them in around its epochs, so runs stepped in turn (:func:`interleave`) draw
  exactly what each would draw alone, and a checkpoint holds the run's own state;
- **non-finite losses**, **progress bars** and **callbacks**.

One "epoch" is whatever the task makes it: a pass over the training nodes, graphs or edges,
or one batch of a stream (the sequence models count batches).
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gnnkit.errors import CheckpointError, InputError
from gnnkit.train.checkpoint import check_identity, load_checkpoint, save_checkpoint
from gnnkit.train.task import NonFiniteLossError, RunResult, Task, seed_everything

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

#: ``callback(record)`` after every epoch: ``epoch``, the epoch's metrics (and the
#: evaluation's, when one ran) and ``epoch_time``. Returning ``True`` stops the run after a
#: checkpoint (Ctrl-C handling).
Callback = Callable[[dict[str, Any]], "bool | None"]


def _positive_int(name: str, value: Any, *, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")


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


def _rng_state(cuda: bool) -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
    }
    if cuda:
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _copy_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Run:
    """One training run of a :class:`Task`, advanced an epoch at a time.

    Args:
        task (Task): what to train.
        epochs (int): the number of epochs to reach (a resumed run continues to it).
        eval_every (int, optional): evaluate after every this many epochs, and always after
            the last one; ``0`` evaluates only after the last. (default: ``1``)
        patience (int, optional): stop after this many epochs without a better evaluation.
            (default: none)
        restore_best (bool, optional): end with the parameters of the selected evaluation.
            (default: ``False``)
        seed (int, optional): :func:`seed_everything` when a run starts (not when it
            resumes: the checkpoint restores the generators). (default: none)
        checkpoint (str or PathLike, optional): the checkpoint file. (default: none)
        checkpoint_every (int, optional): write it every this many epochs (and whenever the
            run stops); ``0`` only when it stops. (default: ``0``)
        resume (bool, optional): continue from ``checkpoint`` if it exists. The result equals
            an uninterrupted run's. A checkpoint of another model, configuration or dataset
            is refused. (default: ``False``)
        time_budget_s (float, optional): stop, with a checkpoint, before an epoch that would
            end past this many seconds of this call (estimated from the previous epoch).
            (default: none)
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
        _positive_int("epochs", epochs)
        _positive_int("eval_every", eval_every, allow_zero=True)
        _positive_int("checkpoint_every", checkpoint_every, allow_zero=True)
        if patience is not None:
            _positive_int("patience", patience)
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
        self.epoch, self.finished, self._wall_before = 0, None, 0.0
        self.interrupted = False
        if resume and self.path is not None and self.path.exists():
            self._load()
        elif seed is not None:
            seed_everything(seed)
        self.resumed_from = self.epoch
        self._written = self.epoch if self.resumed_from else -1
        self._rng = _rng_state(self.cuda)
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
        task = self.task
        save_checkpoint(
            {
                "run": task.identity(),
                "epoch": self.epoch,
                "finished": self.finished,
                "model": task.model.state_dict(),
                "optimizer": task.optimizer.state_dict() if task.optimizer is not None else None,
                "task": task.state_dict(),
                "history": self.history,
                "best": self.best,
                "best_state": self.best_state,
                "times": {
                    "epoch": self.epoch_times,
                    "train": self.train_times,
                    "eval": self.eval_times,
                    "wall": self.wall_time(),
                },
                "rng": self._rng,
            },
            self.path,
        )
        self._written = self.epoch

    def _load(self) -> None:
        path, task = self.path, self.task
        state = load_checkpoint(path)
        task.check_checkpoint(state, path)
        check_identity(state, task.identity(), path)
        if state["epoch"] > self.epochs:
            raise CheckpointError(
                f"checkpoint {path} has already trained {state['epoch']} epochs, more than "
                f"the {self.epochs} asked for; ask for at least {state['epoch']} epochs"
            )
        task.model.load_state_dict(state["model"])
        if task.optimizer is not None:
            task.optimizer.load_state_dict(state["optimizer"])
        task.load_state_dict(state.get("task") or {}, path)
        self.history = {key: list(values) for key, values in state["history"].items()}
        self.best, self.best_state = dict(state["best"]), state["best_state"]
        times = state["times"]
        self.epoch_times, self.train_times = list(times["epoch"]), list(times["train"])
        self.eval_times, self._wall_before = list(times["eval"]), float(times["wall"])
        self.epoch, self.finished = int(state["epoch"]), state["finished"]
        if self.finished in ("epochs", "time-budget") and self.epochs > self.epoch:
            self.finished = None  # a run asked for more epochs, or for more time, goes on
        _set_rng_state(state["rng"])
        logger.info("resuming %s from epoch %d", path, self.epoch)

    # -- the loop ---------------------------------------------------------------------------

    def _check_finite(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        bad = [
            f"{key}={metrics[key]}"
            for key in self.task.nonfinite
            if key in metrics and not math.isfinite(metrics[key])
        ]
        if bad:
            kept = ""
            if self.path is not None and self.path.exists():
                kept = f"; the last checkpoint ({self.path}) is unchanged"
            raise NonFiniteLossError(self.task.nonfinite_message(epoch, bad) + kept)

    def step(self) -> dict[str, Any]:
        """Train one epoch, evaluate and checkpoint when due; returns the epoch's record."""
        if self.done:
            raise InputError(f"the run has already trained all {self.epochs} epochs")
        task, epoch = self.task, self.epoch + 1
        _set_rng_state(self._rng)
        tick = time.perf_counter()
        record = dict(task.train_epoch(epoch))
        train_time = time.perf_counter() - tick
        self._check_finite(epoch, record)
        stop = task.should_stop()
        last = stop is not None or epoch == self.epochs
        metrics: dict[str, float] | None = None
        if self._evaluates(epoch) or last:
            eval_tick = time.perf_counter()
            metrics = dict(task.evaluate(epoch))
            self.eval_times.append(time.perf_counter() - eval_tick)
        self.epoch_times.append(time.perf_counter() - tick)
        self.train_times.append(train_time)
        self._rng = _rng_state(self.cuda)
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
                    self.best_state = _copy_state(task.model)
            task.on_evaluated(epoch, metrics, improved)
        self.finished = stop or self._stopped_by_patience(epoch)
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

    def _stopped_by_patience(self, epoch: int) -> str | None:
        if self.patience is not None and epoch - self.best.get("epoch", 0) >= self.patience:
            return "patience"
        return None

    def _report(self, record: dict[str, Any]) -> bool:
        """Advance the progress bar and call the callback; whether it asked to stop."""
        if self._bar is not None:
            self._bar.update(1)
            shown = {
                label: f"{record[key]:.3f}"
                for label, key in self.task.progress_keys
                if key in record
            }
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
        _positive_int("epochs", epochs)
        if epochs < self.epoch:
            raise InputError(f"the run has already trained {self.epoch} epochs, more than {epochs}")
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
            self._evaluate_resumed_last()
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

    def _evaluate_resumed_last(self) -> None:
        """The last epoch of a run resumed from a checkpoint written between evaluations."""
        tick = time.perf_counter()
        metrics = dict(self.task.evaluate(self.epoch))
        self.eval_times.append(time.perf_counter() - tick)
        self._append({"eval_epoch": self.epoch, **metrics})
        if self.task.monitor and _better(metrics, self.best, self.task.monitor):
            self.best = {"epoch": self.epoch, **metrics}
        self.task.on_evaluated(self.epoch, metrics, False)


def round_order(names: Iterable[str], index: int) -> list[str]:
    """The names in order for round ``index``: as given on even rounds, reversed on odd.

    Alternating who goes first means neither implementation always runs on a warmer (or a
    busier) machine.
    """
    order = list(names)
    return order if index % 2 == 0 else order[::-1]


def _rounds(runs: Mapping[str, Run]) -> Iterator[list[str]]:
    index = 0
    while not all(run.done for run in runs.values()):
        yield round_order(runs, index)
        index += 1


def interleave(runs: Mapping[str, Run], *, time_budget_s: float | None = None) -> str | None:
    """Step several runs in turn, epoch by epoch (:func:`round_order`), until all are done.

    Each run keeps its own random state, so each draws what it would draw alone; all see
    the same machine load. With ``time_budget_s`` every run stops, with a checkpoint, before
    a round of epochs that would end past the budget; returns ``"time-budget"`` then.
    """
    began = time.perf_counter()
    for order in _rounds(runs):
        if time_budget_s is not None:
            estimates = [run.next_epoch_estimate() for run in runs.values() if not run.done]
            if (
                None not in estimates
                and time.perf_counter() - began + sum(estimates) > time_budget_s
            ):
                for run in runs.values():
                    if not run.done:
                        run.stop("time-budget")
                return "time-budget"
        for name in order:
            if not runs[name].done:
                runs[name].step()
    return None
