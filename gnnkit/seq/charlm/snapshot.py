"""Model files of the character LSTM: config, vocabulary and weights in one small file.

The snapshots a training run keeps (``best.pt``, ``step_NNNNNN.pt``) and :func:`save_model`
write this format; :func:`read_model_file` and :func:`load_model` also read the run's
resumable ``checkpoint.pt``, written in the training engine's format
(:data:`gnnkit.train.checkpoint.CHECKPOINT_FORMAT`), which keeps the same parts under
``task`` (vocabulary, model config, corpus, preset) and ``model`` (the weights).

A model file is a plain dict of tensors, dicts, lists, strings and numbers, written
atomically and readable with ``torch.load(weights_only=True)``:

``format``
    :data:`FORMAT`; anything else is refused.
``version``
    the layout version (:data:`VERSION`).
``kind``
    ``"model"``. (Files from gnnkit versions before the training engine may say
    ``"training"``: resumable checkpoints in this format, which still load as models.)
``vocabulary``, ``model_config``, ``state_dict``
    what :func:`load_model` needs to rebuild the model.
``step``, ``corpus``, ``preset``
    the batch count, the corpus description (:meth:`TextDataset.info`) and the preset name,
    when known.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from gnnkit.errors import CheckpointError, InputError
from gnnkit.seq.charlm.config import CharLSTMConfig
from gnnkit.seq.charlm.corpus import Vocabulary
from gnnkit.seq.charlm.model import CharLSTM
from gnnkit.train.checkpoint import CHECKPOINT_FORMAT, check_loadable
from gnnkit.utils.io import atomic_torch_save, safe_torch_load

__all__ = [
    "FORMAT",
    "RESERVED_KEYS",
    "VERSION",
    "load_model",
    "model_from_payload",
    "model_payload",
    "read_model_file",
    "save_model",
]

FORMAT = "gnnkit.seq.charlm.CharLSTM"
VERSION = 1


#: The keys :func:`model_payload` writes itself; an ``extra`` entry may not replace them.
RESERVED_KEYS = ("format", "version", "kind", "vocabulary", "model_config", "state_dict")


def model_payload(model: CharLSTM, **extra: Any) -> dict[str, Any]:
    """The model file dict of a model (weights on the CPU), with ``extra`` entries added.

    Raises:
        InputError: ``model`` is not a :class:`CharLSTM`, or an ``extra`` key is one of
            :data:`RESERVED_KEYS`.
    """
    if not isinstance(model, CharLSTM):
        raise InputError(
            f"model must be a gnnkit.seq.charlm.CharLSTM, got {type(model).__name__}; "
            "save other modules with torch.save(module.state_dict(), path)"
        )
    taken = [key for key in extra if key in RESERVED_KEYS]
    if taken:
        raise InputError(
            f"extra entry {taken[0]!r} is reserved for the model file's own data (reserved: "
            f"{', '.join(RESERVED_KEYS)}); save it under another name"
        )
    state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "kind": "model",
        "vocabulary": model.vocabulary.to_list(),
        "model_config": model.config.to_dict(),
        "state_dict": state_dict,
    }
    payload.update(extra)
    return payload


def save_model(model: CharLSTM, path: str | os.PathLike, **extra: Any) -> Path:
    """Write a model file (config, vocabulary, weights, ``extra`` entries) atomically.

    Raises:
        InputError: ``model`` is not a :class:`CharLSTM`; an ``extra`` key that the file
            uses itself (:data:`RESERVED_KEYS`); or an ``extra`` entry that
            :func:`read_model_file` could not load back
            (``torch.load(weights_only=True)``: a ``fractions.Fraction``, an instance of your
            own class...); nothing is written then (``gnnkit.train.checkpoint.check_loadable``).
    """
    payload = model_payload(model, **extra)
    check_loadable(payload, path)
    return atomic_torch_save(payload, path)


def _from_engine_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """The model file dict of a training checkpoint written by the engine."""
    task = state.get("task")
    if not isinstance(task, dict) or "vocabulary" not in task or "model" not in state:
        raise CheckpointError(
            f"checkpoint {path} is a training checkpoint of another model, not of a character "
            "LSTM (it holds no vocabulary)"
        )
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": "training",
        "vocabulary": task["vocabulary"],
        "model_config": task.get("model_config"),
        "state_dict": state["model"],
        "step": state.get("epoch", 0),
        "corpus": task.get("corpus"),
        "preset": task.get("preset"),
    }


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """A model file's dict, or the same parts of a run's training checkpoint (not yet
    checked against each other: :func:`model_from_payload` does that).

    Raises:
        CheckpointError: missing, truncated or corrupt file, or a file of another model.
    """
    payload = safe_torch_load(path, what="checkpoint")
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if found == CHECKPOINT_FORMAT:
        return _from_engine_checkpoint(payload, path)
    if found != FORMAT:
        raise CheckpointError(
            f"checkpoint {path} is not a gnnkit character-model checkpoint (format: {found!r}, "
            f"expected {FORMAT!r} or {CHECKPOINT_FORMAT!r}); it was written by another model "
            "or program"
        )
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has layout version {payload.get('version')!r}; this gnnkit "
            f"reads version {VERSION}"
        )
    missing = [k for k in ("vocabulary", "model_config", "state_dict") if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    return payload


def model_from_payload(payload: dict[str, Any], path: str | os.PathLike = "<memory>") -> CharLSTM:
    """Rebuild a :class:`CharLSTM` from a model file dict, refusing mismatched parts."""
    try:
        vocabulary = Vocabulary(payload["vocabulary"])
        config = CharLSTMConfig.from_dict(payload["model_config"])
    except (InputError, TypeError) as exc:
        raise CheckpointError(
            f"checkpoint {path} has an invalid vocabulary or config: {exc}"
        ) from None
    model = CharLSTM(vocabulary, config)
    state_dict = payload["state_dict"]
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"checkpoint {path}: state_dict is not a dict")
    rows = state_dict.get("embedding.weight")
    if isinstance(rows, torch.Tensor) and rows.dim() == 2 and rows.shape[0] != len(vocabulary):
        raise CheckpointError(
            f"checkpoint {path}: its weights were trained for a vocabulary of {rows.shape[0]} "
            f"characters but it stores a vocabulary of {len(vocabulary)}; the file mixes two "
            "models"
        )
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise CheckpointError(
            f"checkpoint {path}: the weights do not fit a CharLSTM with config {config} and "
            f"{len(vocabulary)} characters ({detail})"
        ) from None
    return model


def load_model(path: str | os.PathLike, map_location: Any = "cpu") -> CharLSTM:
    """A :class:`CharLSTM` from a model file or a run's training checkpoint, in eval mode.

    Raises:
        CheckpointError: missing, truncated or corrupt file, a file of another model, or
            weights that do not match the stored config and vocabulary.
    """
    model = model_from_payload(read_model_file(path), path)
    return model.to(map_location).eval()
