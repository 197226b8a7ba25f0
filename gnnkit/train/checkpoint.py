"""Checkpoints of a training run: written atomically, loaded safely, refused when foreign.

The one checkpoint format of :class:`gnnkit.train.Run`, whatever the task. A checkpoint is a
plain dictionary of tensors, numbers, strings, lists and dictionaries, so it loads with
``torch.load(weights_only=True)`` (:func:`gnnkit.utils.io.safe_torch_load`) and never runs
pickled code; :func:`save_checkpoint` refuses, before writing, any state that this load would
refuse (:func:`check_loadable`). It holds everything the engine needs to continue exactly where
it stopped:

- ``format``: :data:`CHECKPOINT_FORMAT`;
- ``run``: the run's identity (:func:`run_identity`): model class, parameter names and shapes,
  the model's ``repr``, the training configuration and a fingerprint of the data;
- ``epoch``: the number of completed epochs; ``finished``: why the run ended (``None`` while
  it runs, ``"epochs"``, ``"patience"``, ``"time-budget"``...);
- ``model``, ``optimizer``: state dictionaries after ``epoch`` epochs; ``task``: the task's
  own state (a sampler's seed, a learning-rate schedule, a vocabulary...);
- ``best``: the selected evaluation so far (its epoch and metrics) and ``best_state``, the
  model's parameters there (``None`` unless kept);
- ``history``, ``times``: metrics and timings so far;
- ``rng``: torch's CPU generator state, Python's, and every CUDA generator's when CUDA is in
  use.
"""

from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gnnkit.errors import CheckpointError, InputError, OutputError
from gnnkit.utils.io import (
    atomic_torch_save,
    check_new_output,
    not_a_file,
    refused_global,
    safe_torch_load,
)

if TYPE_CHECKING:
    from gnnkit.train.engine import Task

__all__ = [
    "CHECKPOINT_FORMAT",
    "check_identity",
    "check_loadable",
    "check_result_output",
    "claim_checkpoint",
    "claim_checkpoint_dir",
    "load_checkpoint",
    "resume_task",
    "run_identity",
    "save_checkpoint",
    "task_state",
]

#: Written into every checkpoint; a file with another value is refused.
CHECKPOINT_FORMAT = "gnnkit.train/1"


def run_identity(model: Any, config: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """What must agree between a checkpoint and the run that resumes it.

    Args:
        model (torch.nn.Module): the model (its class, parameter shapes and ``repr``).
        config (dict): the training options that shape the trajectory (learning rate, weight
            decay, seed...; not the number of epochs, which may grow on resume).
        data (dict): :meth:`gnnkit.train.NodeInputs.fingerprint` of the training data.
    """
    cls = type(model)
    return {
        "model": f"{cls.__module__}.{cls.__qualname__}",
        "parameters": {name: list(p.shape) for name, p in model.state_dict().items()},
        "repr": repr(model),
        "config": dict(config),
        "data": dict(data),
    }


#: Types whose exact instances torch's weights-only unpickler always loads back: each has a
#: pickle opcode of its own or a global on torch's allow-list (``int`` only below the size
#: that needs the LONG4 opcode, which it refuses).
_LEAVES = frozenset({type(None), bool, int, float, complex, str, bytes})
_INT_LIMIT = 1 << 2000


def _flat(items: Iterable[Any]) -> bool:
    """Whether every one of ``items`` is one of the :data:`_LEAVES` (a history's list of floats
    is checked at C speed, not item by item)."""
    items = list(items)
    kinds = set(map(type, items))
    if not kinds <= _LEAVES:
        return False
    return int not in kinds or all(-_INT_LIMIT < v < _INT_LIMIT for v in items if type(v) is int)


def _collect(obj: Any, where: str, seen: set[int], out: list[tuple[str, Any]]) -> None:
    """Append ``(description, object)`` for every part of ``obj`` whose loading back only
    torch can vouch for: anything but the :data:`_LEAVES`, plain tensors and parameters (no
    Python attributes) and the dicts, ordered dicts, lists and tuples (exact types) that hold
    them. ``seen`` holds the containers already walked (a shared or cyclic reference)."""
    kind = type(obj)
    if kind in _LEAVES:
        if kind is int and not -_INT_LIMIT < obj < _INT_LIMIT:
            out.append((f"entry {where}", obj))
        return
    if kind is torch.Tensor or kind is torch.nn.Parameter:
        if obj.__dict__:  # Python attributes are pickled with the tensor
            out.append((f"entry {where}", obj))
        return
    if id(obj) in seen:
        return
    if kind is dict or kind is OrderedDict:
        seen.add(id(obj))
        if kind is dict and _flat(obj) and _flat(obj.values()):
            return
        if kind is OrderedDict:  # its attributes (a state_dict's _metadata) are pickled too
            for name, value in vars(obj).items():
                _collect(value, f"{where}.{name}", seen, out)
        for key, value in obj.items():
            if type(key) not in _LEAVES:
                out.append((f"a key of entry {where}" if where else "a key of the state", key))
            _collect(value, f"{where}.{key}" if where else str(key), seen, out)
    elif kind is list or kind is tuple:
        seen.add(id(obj))
        if _flat(obj):
            return
        for i, value in enumerate(obj):
            _collect(value, f"{where}[{i}]", seen, out)
    else:
        out.append((f"entry {where}", obj))


def _refusal(obj: Any) -> str | None:
    """Why ``obj`` cannot be a checkpoint's content: it does not pickle, or
    ``torch.load(weights_only=True)`` refuses it once saved; ``None`` if it loads back.

    Saves to memory and loads tensors onto the meta device (their bytes are not read), or
    onto the CPU for tensors the meta device cannot hold (quantized, nested)."""
    buffer = io.BytesIO()
    try:
        torch.save(obj, buffer)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        return f"cannot be pickled ({str(exc).splitlines()[0] if str(exc) else exc!r})"
    for device in ("meta", "cpu"):
        buffer.seek(0)
        try:
            torch.load(buffer, map_location=device, weights_only=True)
        except pickle.UnpicklingError as exc:
            return f"torch.load(weights_only=True) refuses ({refused_global(str(exc))})"
        except (NotImplementedError, RuntimeError):
            continue  # a tensor the meta device does not take: judged on the CPU
        return None
    return None  # loads only onto its own device, as load_checkpoint's map_location gives


def _type_name(obj: Any) -> str:
    kind = type(obj)
    module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
    return f"{module}{kind.__qualname__}"


def check_loadable(state: dict[str, Any], path: str | os.PathLike | None = None) -> None:
    """Refuse a checkpoint ``state`` that could be written but not loaded back by
    :func:`load_checkpoint` (``torch.load(weights_only=True)``), naming the first offending
    entry (``task.ratio``, ``history.loss[3]``) and its type; ``path`` only names the file in
    the message.

    Plain data (tensors, numbers, strings and the dicts, lists and tuples that hold them) is
    vouched for by its type alone; torch judges the rest (one save to memory and load back,
    tensors read onto the meta device), so an object torch allows (``torch.Size``, a ``set``,
    a global added with :func:`torch.serialization.add_safe_globals`) is accepted. That list is
    the process's: PyG, which gnnkit imports, adds its own classes and
    ``collections.defaultdict`` to it.

    Raises:
        InputError: an entry cannot be pickled, or torch's weights-only unpickler refuses it.
    """
    found: list[tuple[str, Any]] = []
    _collect(state, "", set(), found)
    if not found or _refusal([obj for _, obj in found]) is None:
        return
    where, obj, reason = next(
        ((where, obj, why) for where, obj in found if (why := _refusal(obj))),
        ("the state", state, "fails to load back as a whole"),
    )
    target = f"checkpoint {path}" if path else "the checkpoint"
    advice = (
        "store so large an int as a str (str(x))"
        if type(obj) is int
        else "store it as tensors, numbers, strings, lists, tuples or dicts instead (float(x), "
        "str(x), a dict of its fields)"
    )
    raise InputError(
        f"cannot save {target}: {where} has type {_type_name(obj)}, which {reason}, so the "
        f"run could not resume from it; {advice}; nothing was written"
    )


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` (with :data:`CHECKPOINT_FORMAT`) to ``path`` atomically.

    Only what :func:`load_checkpoint` loads back is written (:func:`check_loadable`), so a
    run's checkpoint can always resume it.

    Raises:
        InputError: ``state`` is not a dict, ``path`` is not a path, or ``state`` holds an
            object that cannot be pickled (a lambda, a lock...) or that
            ``torch.load(weights_only=True)`` refuses (a ``fractions.Fraction``, a numpy
            scalar, an instance of your own class...); nothing is written then, and an
            earlier checkpoint at ``path`` is left as it was.
        OutputError: ``path`` cannot be written.
    """
    if not isinstance(state, dict):
        raise InputError(f"state must be a dict, got {type(state).__name__}")
    if not isinstance(path, str | os.PathLike):
        raise InputError(f"path must be a str or os.PathLike file name, got {path!r}")
    state = {"format": CHECKPOINT_FORMAT, **state}
    check_loadable(state, path)
    return atomic_torch_save(state, path)


def _refuse_non_file(path: str | os.PathLike) -> None:
    """A folder, a link to nothing or a device where a checkpoint goes is not a checkpoint gnnkit
    wrote: neither continued nor replaced, whatever the flags."""
    problem = not_a_file(path)
    if problem:
        raise CheckpointError(
            f"{path} {problem}, where the checkpoint goes; move it away or choose another path"
        )


def claim_checkpoint(
    path: str | os.PathLike | None, *, resume: bool, overwrite: bool = False
) -> None:
    """The one rule for a checkpoint that already exists, used by every trainer that writes one.

    An existing checkpoint is continued with ``resume``, replaced with ``overwrite``, and
    otherwise refused, so no run silently destroys another's work. Without a path, or when the
    file does not exist yet, there is nothing to decide.

    Raises:
        InputError: both ``resume`` and ``overwrite``.
        CheckpointError: ``path`` exists and neither flag is given, or ``path`` is not a
            regular file (a folder, a link to nothing, a device), whatever the flags.
    """
    if resume and overwrite:
        raise InputError(
            "--resume and --overwrite contradict each other: resume continues the existing "
            "checkpoint, overwrite starts afresh and replaces it; pass one of them"
        )
    if path is None or not os.path.lexists(path):
        return
    _refuse_non_file(path)
    if resume or overwrite:
        return
    raise CheckpointError(
        f"{path} already holds a checkpoint; pass --resume (resume=True) to continue it, "
        "--overwrite (overwrite=True) to start afresh and replace it, or choose another path"
    )


def check_result_output(
    path: str | os.PathLike | None,
    option: str,
    *,
    overwrite: bool,
    resume: bool,
    continued: bool,
) -> Path | None:
    """:func:`~gnnkit.utils.io.check_new_output` for a result file (``--json``, ``--plot``...)
    of a run that may resume. An existing file is replaced with ``overwrite``, or when the run
    ``continued`` a checkpoint (it is that run's own result, written again). A ``resume`` that
    found no checkpoint starts afresh, so the file it would replace is another run's: refused.

    Raises:
        OutputError: ``check_new_output``'s refusals, or the file exists and is not this run's.
    """
    target = check_new_output(path, option, replace=overwrite or resume)
    if target is not None and resume and not continued and not overwrite and target.exists():
        raise OutputError(
            f"{option} {target} already exists and --resume finds no checkpoint to "
            "continue, so it is not this run's result; choose another path, or drop "
            "--resume and pass --overwrite to replace it"
        )
    return target


def claim_checkpoint_dir(
    folder: str | os.PathLike | None,
    patterns: str | Iterable[str],
    *,
    resume: bool,
    overwrite: bool = False,
) -> list[Path]:
    """:func:`claim_checkpoint` for the checkpoint files ``folder/PATTERN`` a command writes.

    ``patterns`` are :meth:`pathlib.Path.glob` patterns naming exactly the files of this
    command's run (``glob.escape`` a literal name), so other runs' files in the same folder
    (another model, another seed, another mode) are neither refused nor touched. The first
    existing file is refused unless ``resume`` or ``overwrite``. Nothing is deleted here: with
    ``overwrite`` the existing files are returned, for the caller to delete once every other
    check has passed and the work starts (so a command refused later loses nothing).
    """
    claim_checkpoint(None, resume=resume, overwrite=overwrite)  # the flags agree
    if folder is None or not Path(folder).is_dir():
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    existing = [path for pattern in patterns for path in sorted(Path(folder).glob(pattern))]
    for path in existing:  # each must be a file; the first existing one decides the flags
        _refuse_non_file(path)
    for path in existing[:1]:
        claim_checkpoint(path, resume=resume, overwrite=overwrite)
    return existing if overwrite else []


def _first_difference(saved: Any, current: Any, where: str) -> str | None:
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current), key=str):
            if key not in saved:
                return f"{where}.{key}: absent in the checkpoint, {current[key]!r} now"
            if key not in current:
                return f"{where}.{key}: {saved[key]!r} in the checkpoint, absent now"
            found = _first_difference(saved[key], current[key], f"{where}.{key}")
            if found:
                return found
        return None
    if saved != current:
        if isinstance(saved, str) and "\n" in saved:
            return f"{where} differs"
        return f"{where}: {saved!r} in the checkpoint, {current!r} now"
    return None


def check_identity(state: dict[str, Any], expect: dict[str, Any], path: Any) -> None:
    """Refuse a checkpoint whose ``run`` identity differs from ``expect``, naming the first
    difference.

    Raises:
        CheckpointError: written by a different model, configuration or dataset.
    """
    difference = _first_difference(state["run"], expect, "run")
    if difference:
        raise CheckpointError(
            f"checkpoint {path} was written by a different model, configuration or "
            f"dataset ({difference.removeprefix('run.')}); resume with the same "
            "settings, or delete the checkpoint to start afresh"
        )


def load_checkpoint(
    path: str | os.PathLike, expect: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Load a checkpoint safely and check that it belongs to the run ``expect`` describes.

    Args:
        path (str or PathLike): the checkpoint file.
        expect (dict, optional): :func:`run_identity` of the run about to resume; ``None``
            skips the check. (default: ``None``)

    Raises:
        CheckpointError: the file is missing, truncated, corrupt, not a gnnkit training
            checkpoint, or written by a different model, configuration or dataset.
    """
    state = safe_torch_load(path, what="checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        if isinstance(found, str) and found.startswith("gnnkit.train."):
            raise CheckpointError(
                f"checkpoint {path} was written by gnnkit 0.1 (format {found!r}); this gnnkit "
                f"resumes only its one format {CHECKPOINT_FORMAT!r}: start the run afresh "
                "(delete the file or choose another path)"
            )
        raise CheckpointError(
            f"checkpoint {path} is not a gnnkit training checkpoint (format {found!r}, "
            f"expected {CHECKPOINT_FORMAT!r}); delete it or choose another path"
        )
    missing = [
        key
        for key in ("run", "epoch", "model", "optimizer", "history", "best", "times", "rng")
        if key not in state
    ]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: no {', '.join(missing)}")
    if expect is not None:
        check_identity(state, expect, path)
    return state


def task_state(task: Task) -> dict[str, Any]:
    """A checkpoint's entries for ``task``: ``run`` (its identity), ``model``, ``optimizer``
    (``None`` without one) and ``task`` (its own state)."""
    return {
        "run": task.identity(),
        "model": task.model.state_dict(),
        "optimizer": task.optimizer.state_dict() if task.optimizer is not None else None,
        "task": task.state_dict(),
    }


def resume_task(task: Task, path: Path, epochs: int) -> dict[str, Any]:
    """Load the checkpoint ``path`` into ``task`` (model, optimizer, task state) and return it.

    Raises:
        CheckpointError: :func:`load_checkpoint`'s refusals, the task's own
            (:meth:`Task.check_checkpoint`), or a checkpoint past ``epochs``.
    """
    state = load_checkpoint(path)
    task.check_checkpoint(state, path)
    check_identity(state, task.identity(), path)
    if state["epoch"] > epochs:
        done, units = state["epoch"], getattr(task, "units", "epochs")
        raise CheckpointError(
            f"checkpoint {path} has already trained {done} {units}, more than the {epochs} "
            f"asked for; ask for at least {done} {units}"
        )
    task.model.load_state_dict(state["model"])
    if task.optimizer is not None:
        task.optimizer.load_state_dict(state["optimizer"])
    task.load_state_dict(state.get("task") or {}, path)
    return state
