"""Next-character training of a :class:`~gnnkit.seq.charlm.CharLSTM` as a task of the engine.

One epoch of the training engine (:class:`gnnkit.train.engine.Run`) is one batch:
``batch_size`` windows at random positions of the training part, the mean cross-entropy of the
next character at every step (teacher forcing, as in Graves, *Generating Sequences With
Recurrent Neural Networks*, arXiv:1308.0850), Adam with weight decay, the learning rate
multiplied by ``lr_decay`` every ``lr_decay_every`` batches and the gradient norm clipped (as
Karpathy's char-rnn does). The engine evaluates every ``eval_every`` batches and after the
last; :class:`CharLMTask` adds what a language model run keeps beside its checkpoint:

- ``best.pt``, the model with the lowest validation loss so far (:meth:`CharLMTask.on_evaluated`);
- greedy samples in the history and ``step_NNNNNN.pt`` snapshots every ``sample_every`` and
  ``snapshot_every`` batches and after the last (:meth:`CharLMTask.on_epoch_end`);
- in the engine's checkpoint (``task``): the vocabulary, model config, corpus, preset, schedule,
  seed, learning-rate scheduler, the batch sampler's generator and the samples, so a resumed
  run continues bit for bit, and a checkpoint of another vocabulary, model, corpus or schedule
  is refused with a message that names the difference (:meth:`CharLMTask.check_checkpoint`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gnnkit.errors import CheckpointError, InputError
from gnnkit.seq.charlm.config import CharLSTMConfig, TrainConfig
from gnnkit.seq.charlm.corpus import TextDataset
from gnnkit.seq.charlm.generate import generate
from gnnkit.seq.charlm.model import CharLSTM
from gnnkit.seq.charlm.snapshot import save_model
from gnnkit.train.checkpoint import run_identity
from gnnkit.train.engine import Task

__all__ = ["BEST_NAME", "RESUMABLE_CHANGES", "CharLMTask", "evaluate", "task_state"]

logger = logging.getLogger(__name__)

#: The snapshot with the lowest validation loss so far inside an output folder.
BEST_NAME = "best.pt"
#: The :class:`TrainConfig` fields a resumed run may change (the rest is the schedule).
RESUMABLE_CHANGES = ("steps", "eval_every", "sample_every", "checkpoint_every", "snapshot_every")


@torch.no_grad()
def evaluate(
    model: CharLSTM, inputs: Tensor, targets: Tensor, batch_size: int = 512
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
            logits, _ = model(x)  # (B, T, V)
            total_loss += F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
            ).item()
            correct += int((logits.argmax(-1) == y).sum())
            count += y.numel()
    finally:
        model.train(was_training)
    return total_loss / count, correct / count


class CharLMTask(Task):
    """One :class:`CharLSTM` training run, a batch per engine epoch (see the module docstring).

    Args:
        model (CharLSTM): the model, already on its training device.
        dataset (TextDataset): the corpus, with the model's vocabulary.
        config (TrainConfig): the schedule.
        seed (int, optional): seeds the batch sampler; picks the samples' start characters.
            (default: 0)
        preset (str, optional): the preset name recorded in snapshots. (default: ``None``)
        out_dir (str or PathLike, optional): where ``best.pt`` and ``step_NNNNNN.pt`` go;
            ``None`` writes nothing. (default: ``None``)

    Attributes:
        samples (list of [int, str]): ``[batch, greedy sample]`` pairs so far.
    """

    nonfinite = ("train_loss",)
    progress_keys = (("loss", "train_loss"), ("acc", "train_acc"))
    units = "batches"

    def __init__(
        self,
        model: CharLSTM,
        dataset: TextDataset,
        config: TrainConfig,
        *,
        seed: int = 0,
        preset: str | None = None,
        out_dir: str | os.PathLike | None = None,
    ) -> None:
        self.model, self.dataset, self.config = model, dataset, config
        self.seed, self.preset = int(seed), preset
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.samples: list[list[Any]] = []
        self.generator = torch.Generator().manual_seed(self.seed)
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=config.lr_decay_every, gamma=config.lr_decay
        )
        has_val = config.val_fraction > 0
        self.monitor = (("val_loss", "min"),) if has_val else ()
        self._eval_val = dataset.windows("val", limit=config.eval_windows) if has_val else None
        n_val = self._eval_val[0].shape[0] if self._eval_val is not None else config.eval_windows
        self._eval_train = dataset.windows("train", limit=n_val)

    # -------------------------------------------------------------------------------- epochs
    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg, model, device = self.config, self.model, self.model.head.weight.device
        model.train()
        x, y = self.dataset.sample_batch(cfg.batch_size, self.generator)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        lr = self.optimizer.param_groups[0]["lr"]
        logits, _ = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, model.vocab_size), y.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        acc = (logits.detach().argmax(-1) == y).float().mean()
        return {"train_loss": loss.item(), "train_acc": acc.item(), "lr": lr}

    def evaluate(self, epoch: int) -> dict[str, float]:
        """Eval-mode loss and accuracy on the validation windows and as many training ones."""
        loss, acc = evaluate(self.model, *self._eval_train)
        metrics = {"train_eval_loss": loss, "train_eval_acc": acc}
        if self._eval_val is not None:
            metrics["val_loss"], metrics["val_acc"] = evaluate(self.model, *self._eval_val)
        return metrics

    def on_evaluated(self, epoch: int, metrics: dict[str, float], improved: bool) -> None:
        if improved:
            self._snapshot(epoch, BEST_NAME)
        if "val_loss" in metrics:
            logger.info(
                "batch %d: train loss %.3f acc %.1f%%, validation loss %.3f acc %.1f%%",
                epoch,
                metrics["train_eval_loss"],
                100 * metrics["train_eval_acc"],
                metrics["val_loss"],
                100 * metrics["val_acc"],
            )

    def on_epoch_end(self, epoch: int, finished: str | None) -> None:
        cfg, last = self.config, finished is not None
        if cfg.sample_every and (epoch % cfg.sample_every == 0 or last):
            self._sample(epoch)
        if cfg.snapshot_every and (epoch % cfg.snapshot_every == 0 or last):
            self._snapshot(epoch)

    def _sample(self, step: int) -> None:
        # Greedy from a start character that depends on the step: no randomness is drawn, so
        # logging samples never changes the training run.
        start_id = (self.seed * 1_000_003 + step) % len(self.model.vocabulary)
        start = self.model.vocabulary.chars[start_id]
        text = start + generate(self.model, start, self.config.sample_length - 1)
        self.samples.append([step, text])
        logger.info("batch %d sample: %r", step, text)

    def _snapshot(self, step: int, name: str | None = None) -> None:
        if self.out_dir is None:
            return
        path = self.out_dir / (name or f"step_{step:06d}.pt")
        save_model(self.model, path, step=step, preset=self.preset, corpus=self.dataset.info())

    def nonfinite_message(self, epoch: int, bad: list[str]) -> str:
        lr = self.optimizer.param_groups[0]["lr"]
        return (
            f"the training loss became non-finite at batch {epoch} ({', '.join(bad)}); lower "
            f"the learning rate (lr={lr:g}) or the clipping norm (clip_norm="
            f"{self.config.clip_norm:g})"
        )

    # ---------------------------------------------------------------------------- checkpoints
    def schedule(self) -> dict[str, Any]:
        """The training options a resumed run must keep (all but :data:`RESUMABLE_CHANGES`)."""
        return {k: v for k, v in self.config.to_dict().items() if k not in RESUMABLE_CHANGES}

    def identity(self) -> dict[str, Any]:
        return run_identity(self.model, self.schedule(), {"sha256": self.dataset.sha256})

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds beside the engine's model, optimizer, RNG and history."""
        return {
            "vocabulary": self.model.vocabulary.to_list(),
            "model_config": self.model.config.to_dict(),
            "corpus": self.dataset.info(),
            "preset": self.preset,
            "train_config": self.config.to_dict(),
            "seed": self.seed,
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "samples": [list(sample) for sample in self.samples],
        }

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        try:
            self.scheduler.load_state_dict(state["scheduler"])
            self.generator.set_state(state["generator"])
            self.seed = int(state["seed"])
            self.samples = [list(sample) for sample in state.get("samples", [])]
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise CheckpointError(
                f"checkpoint {path} has an unusable training state ({type(exc).__name__}: {exc})"
            ) from None
        if self.preset is None:
            self.preset = state.get("preset")

    def check_checkpoint(self, state: dict[str, Any], path: Path) -> None:
        """Refuse a checkpoint of another vocabulary, model shape, corpus or schedule."""
        saved = task_state(state, path)
        _check_vocabulary(saved["vocabulary"], self.model, path)
        _check_model_config(saved["model_config"], self.model, path)
        corpus = saved.get("corpus") or {}
        if corpus.get("sha256") not in (None, self.dataset.sha256):
            raise CheckpointError(
                f"checkpoint {path} was trained on another text ({corpus.get('name')!r}, "
                f"{corpus.get('num_chars')} characters); resume on the same corpus and options "
                "or start a new run in another folder"
            )
        _check_schedule(saved.get("train_config") or {}, self.config, path)


def task_state(state: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """The :meth:`CharLMTask.state_dict` part of an engine checkpoint ``state``.

    Raises:
        CheckpointError: the checkpoint was written by another task (it has no vocabulary).
    """
    saved = state.get("task") or {}
    if not isinstance(saved, dict) or "vocabulary" not in saved or "model_config" not in saved:
        raise CheckpointError(
            f"checkpoint {path} was not written by a character-LSTM run (it holds no "
            "vocabulary); resume a run of gnnkit text train, or start a new one"
        )
    return saved


def _check_vocabulary(chars: Any, model: CharLSTM, path: Path) -> None:
    if list(chars) == model.vocabulary.to_list():
        return
    ours, theirs = set(model.vocabulary), set(chars)
    if ours == theirs and len(chars) == len(model.vocabulary):
        raise CheckpointError(
            f"checkpoint {path} was trained on the same {len(ours)} characters in another "
            "order, so the character ids differ; build the dataset in the checkpoint's order "
            f"(TextDataset(text, ..., vocabulary=Vocabulary(read_model_file({str(path)!r})"
            "['vocabulary']))) and the model from its vocabulary, or start a new run in "
            "another folder"
        )
    raise CheckpointError(
        f"checkpoint {path} was trained on another vocabulary ({len(theirs)} characters; "
        f"this corpus has {len(ours)}, {len(ours - theirs)} of them new: "
        f"{''.join(sorted(ours - theirs))[:20]!r}); resume on the same corpus or start "
        "a new run in another folder"
    )


def _check_model_config(values: Any, model: CharLSTM, path: Path) -> None:
    try:
        stored = CharLSTMConfig.from_dict(values)
    except (InputError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} has an invalid model config: {exc}") from None
    if stored != model.config:
        raise CheckpointError(f"checkpoint {path} holds a model {stored}, not {model.config}")


def _check_schedule(stored: dict[str, Any], config: TrainConfig, path: Path) -> None:
    ours = config.to_dict()
    changed = sorted(
        k for k, v in ours.items() if k not in RESUMABLE_CHANGES and k in stored and stored[k] != v
    )
    if changed:
        diffs = ", ".join(f"{k}: {stored[k]!r} -> {ours[k]!r}" for k in changed)
        raise CheckpointError(
            f"checkpoint {path} was trained with a different schedule ({diffs}); only "
            "steps and the logging intervals may change on resume"
        )
