"""Training a :class:`~gnnkit.seq.charlm.CharLSTM` with the report's schedule, checkpoints and resume.

Every batch is ``batch_size`` windows at random positions of the training part; the loss is the
mean cross-entropy of the next character at every step (teacher forcing). Adam with weight
decay, the learning rate multiplied by ``lr_decay`` every ``lr_decay_every`` batches, gradient
norm clipping. Each ``eval_every`` batches the model is evaluated (eval mode, no dropout) on
the validation windows and on as many training windows; each ``sample_every`` batches a greedy
sample is logged; each ``checkpoint_every`` batches ``checkpoint.pt`` is rewritten atomically,
with everything needed to resume exactly where it stopped (weights, optimizer, scheduler,
RNG states, history). ``best.pt`` keeps the weights with the lowest validation loss so far
(small corpora such as Bartleby overfit long before the last batch).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from gnnkit.errors import CheckpointError, InputError
from gnnkit.seq.charlm.checkpoint import load_checkpoint, model_from_payload, model_payload
from gnnkit.seq.charlm.config import TrainConfig
from gnnkit.seq.charlm.corpus import TextDataset
from gnnkit.seq.charlm.generate import generate
from gnnkit.seq.charlm.model import CharLSTM
from gnnkit.utils.io import atomic_torch_save

__all__ = ["BEST_NAME", "CHECKPOINT_NAME", "History", "Trainer", "evaluate", "plot_history"]

logger = logging.getLogger(__name__)

#: The resumable checkpoint inside an output folder.
CHECKPOINT_NAME = "checkpoint.pt"
#: The snapshot with the lowest validation loss so far inside an output folder.
BEST_NAME = "best.pt"


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


@torch.no_grad()
def evaluate(
    model: CharLSTM, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 512
) -> tuple[float, float]:
    """Mean next-character cross-entropy and accuracy over windows ``(N, T)`` (eval mode)."""
    was_training = model.training
    model.eval()
    device = model.head.weight.device
    total_loss, correct, count = 0.0, 0, 0
    try:
        for start in range(0, inputs.shape[0], batch_size):
            x = inputs[start : start + batch_size].to(device)
            y = targets[start : start + batch_size].to(device)
            logits, _ = model(x)
            total_loss += F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
            ).item()
            correct += int((logits.argmax(-1) == y).sum())
            count += y.numel()
    finally:
        model.train(was_training)
    return total_loss / count, correct / count


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

    NOTE: the report does not say how it measured accuracy; gnnkit records the accuracy of
    every training batch (dropout on, as the report's curves) and, at each evaluation, the
    accuracy in eval mode on the validation windows and on as many training windows, all
    from a zero state at each window's start.

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
        if not isinstance(model, CharLSTM):
            raise InputError(f"model must be a CharLSTM, got {type(model).__name__}")
        if not isinstance(config, TrainConfig):
            raise InputError(f"config must be a TrainConfig, got {type(config).__name__}")
        if dataset.vocabulary != model.vocabulary:
            raise InputError(
                f"the dataset's vocabulary ({len(dataset.vocabulary)} characters) differs from "
                f"the model's ({len(model.vocabulary)}); build the model with "
                "dataset.vocabulary"
            )
        if dataset.seq_length != config.seq_length:
            raise InputError(
                f"dataset windows have length {dataset.seq_length} but config.seq_length is "
                f"{config.seq_length}"
            )
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.dataset = dataset
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.seed = int(seed)
        self.preset = preset
        self.step = 0
        self.history = History()
        torch.manual_seed(self.seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=config.lr_decay_every, gamma=config.lr_decay
        )
        self._eval_val = (
            dataset.windows("val", limit=config.eval_windows) if config.val_fraction > 0 else None
        )
        n_val = self._eval_val[0].shape[0] if self._eval_val is not None else config.eval_windows
        self._eval_train = dataset.windows("train", limit=n_val)

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    # ----------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The resumable checkpoint dict (see :mod:`gnnkit.seq.charlm.checkpoint`)."""
        optimizer = self.optimizer.state_dict()
        rng: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "generator": self.generator.get_state(),
        }
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return model_payload(
            self.model,
            kind="training",
            step=self.step,
            preset=self.preset,
            corpus=self.dataset.info(),
            train_config=self.config.to_dict(),
            seed=self.seed,
            optimizer=optimizer,
            scheduler=self.scheduler.state_dict(),
            rng=rng,
            history=self.history.to_dict(),
        )

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the resumable checkpoint atomically (default: ``out_dir/checkpoint.pt``)."""
        target = Path(path) if path is not None else self.checkpoint_path
        if target is None:
            raise InputError("no out_dir and no path: nowhere to write the checkpoint")
        return atomic_torch_save(self.state_dict(), target)

    def load_state_dict(self, payload: dict[str, Any], path: str | os.PathLike) -> None:
        """Restore a resumable checkpoint written by :meth:`state_dict`.

        Raises:
            CheckpointError: a snapshot rather than a training checkpoint, another model,
                vocabulary, corpus or schedule.
        """
        if payload.get("kind") != "training":
            raise CheckpointError(
                f"checkpoint {path} is a model snapshot without optimizer state; resume from "
                f"the run's {CHECKPOINT_NAME}"
            )
        stored = model_from_payload(payload, path)
        if stored.vocabulary != self.model.vocabulary:
            ours, theirs = set(self.model.vocabulary), set(stored.vocabulary)
            raise CheckpointError(
                f"checkpoint {path} was trained on another vocabulary ({len(theirs)} characters; "
                f"this corpus has {len(ours)}, {len(ours - theirs)} of them new: "
                f"{''.join(sorted(ours - theirs))[:20]!r}); resume on the same corpus or start "
                "a new run in another folder"
            )
        if stored.config != self.model.config:
            raise CheckpointError(
                f"checkpoint {path} holds a model {stored.config}, not {self.model.config}"
            )
        corpus = payload.get("corpus") or {}
        if corpus.get("sha256") not in (None, self.dataset.sha256):
            raise CheckpointError(
                f"checkpoint {path} was trained on another text ({corpus.get('name')!r}, "
                f"{corpus.get('num_chars')} characters); resume on the same corpus and options "
                "or start a new run in another folder"
            )
        stored_config = payload.get("train_config") or {}
        ignore = {"steps", "eval_every", "sample_every", "checkpoint_every", "snapshot_every"}
        changed = sorted(
            k
            for k, v in self.config.to_dict().items()
            if k not in ignore and k in stored_config and stored_config[k] != v
        )
        if changed:
            diffs = ", ".join(
                f"{k}: {stored_config[k]!r} -> {getattr(self.config, k)!r}" for k in changed
            )
            raise CheckpointError(
                f"checkpoint {path} was trained with a different schedule ({diffs}); only "
                "steps and the logging intervals may change on resume"
            )
        try:
            self.model.load_state_dict(stored.state_dict())
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            rng = payload["rng"]
            torch.set_rng_state(rng["torch"])
            self.generator.set_state(rng["generator"])
            if "cuda" in rng and self.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], self.device)
            self.step = int(payload["step"])
            self.history = History.from_dict(payload.get("history") or {})
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise CheckpointError(
                f"checkpoint {path} has an unusable training state ({type(exc).__name__}: {exc})"
            ) from None
        # the optimizer state follows the model's device
        for state in self.optimizer.state.values():
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and key != "step":
                    state[key] = value.to(self.device)

    def resume(self, path: str | os.PathLike | None = None) -> int:
        """Load ``path`` (default: ``out_dir/checkpoint.pt``); returns the step reached."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise InputError("no out_dir and no path: nothing to resume from")
        self.load_state_dict(load_checkpoint(path), path)
        logger.info("resumed from %s at batch %d", path, self.step)
        return self.step

    # ------------------------------------------------------------------------------- training
    def _evaluate(self) -> None:
        h = self.history
        loss, acc = evaluate(self.model, *self._eval_train)
        h.eval_step.append(self.step)
        h.train_eval_loss.append(loss)
        h.train_eval_acc.append(acc)
        if self._eval_val is not None:
            val_loss, val_acc = evaluate(self.model, *self._eval_val)
            if not h.val_loss or val_loss < min(h.val_loss):
                self._snapshot(BEST_NAME)
            h.val_loss.append(val_loss)
            h.val_acc.append(val_acc)
            logger.info(
                "batch %d: train loss %.3f acc %.1f%%, validation loss %.3f acc %.1f%%",
                self.step,
                loss,
                100 * acc,
                val_loss,
                100 * val_acc,
            )

    def _sample(self) -> None:
        # Greedy from a start character that depends on the step: no randomness is drawn, so
        # logging samples never changes the training run.
        start_id = (self.seed * 1_000_003 + self.step) % len(self.model.vocabulary)
        start = self.model.vocabulary.chars[start_id]
        text = start + generate(self.model, start, self.config.sample_length - 1)
        self.history.samples.append([self.step, text])
        logger.info("batch %d sample: %r", self.step, text)

    def _snapshot(self, name: str | None = None) -> None:
        if self.out_dir is None:
            return
        path = self.out_dir / (name or f"step_{self.step:06d}.pt")
        atomic_torch_save(
            model_payload(
                self.model,
                step=self.step,
                preset=self.preset,
                corpus=self.dataset.info(),
            ),
            path,
        )

    def run(
        self,
        steps: int | None = None,
        *,
        on_step: Callable[[int, dict[str, float]], bool | None] | None = None,
    ) -> History:
        """Train until batch ``steps`` (default: ``config.steps``); returns the history.

        Args:
            steps (int, optional): the batch count to reach (not a count of extra batches).
            on_step (callable, optional): called after every batch with the step and
                ``{"loss", "acc", "lr"}``; returning ``True`` stops training after a checkpoint
                is written (for Ctrl-C handling and progress bars).
        """
        cfg = self.config
        steps = cfg.steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise InputError(f"steps must be an integer >= 1, got {steps!r}")
        model, optimizer, scheduler = self.model, self.optimizer, self.scheduler
        vocab_size = model.vocab_size
        h = self.history
        model.train()
        stop = False
        while self.step < steps and not stop:
            tic = time.perf_counter()
            x, y = self.dataset.sample_batch(cfg.batch_size, self.generator)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            lr = optimizer.param_groups[0]["lr"]
            logits, _ = model(x)  # (B, T, V)
            loss = F.cross_entropy(logits.reshape(-1, vocab_size), y.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            optimizer.step()
            scheduler.step()
            acc = (logits.detach().argmax(-1) == y).float().mean()
            loss_value, acc_value = loss.item(), acc.item()
            h.train_seconds += time.perf_counter() - tic
            self.step += 1
            h.train_loss.append(loss_value)
            h.train_acc.append(acc_value)
            h.lr.append(lr)
            last = self.step == steps
            if on_step is not None:
                stop = bool(on_step(self.step, {"loss": loss_value, "acc": acc_value, "lr": lr}))
            if (cfg.eval_every and self.step % cfg.eval_every == 0) or last:
                self._evaluate()
            if cfg.sample_every and (self.step % cfg.sample_every == 0 or last):
                self._sample()
            if cfg.snapshot_every and (self.step % cfg.snapshot_every == 0 or last):
                self._snapshot()
            if self.out_dir is not None and (
                (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0) or last or stop
            ):
                self.save()
        return h


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
