"""The comparison protocol every benchmark shares: implementations, checks, seeds, interleaving.

A benchmark trains gnnkit's recipe (:mod:`gnnkit.recipes`) and, with ``compare="pyg"``, PyG's
reference of it (:func:`gnnkit.bench.pyg.reference`: the same optimiser, epochs and data, only
the model differs) on the same seeds: run ``r`` of both uses seed ``seed + r``. The two
implementations alternate so that neither always trains on a warmer or busier machine, in one
of two ways:

- **epoch by epoch** (:func:`interleave_seeds`, graph and link benchmarks): for each seed, one
  :class:`gnnkit.train.Run` per implementation, stepped in turn by
  :func:`gnnkit.train.interleave` (gnnkit first on even epochs, PyG first on odd ones). Each
  run keeps its own random state, so each draws what it would draw alone.
- **run by run** (:func:`gnnkit.bench.node.run_node_benchmark`): each run trains to its end
  before the other implementation's starts (:func:`gnnkit.train.round_order`: gnnkit first on
  even runs, PyG first on odd ones), because the node benchmark measures each run's peak
  memory, which two runs alive at once would mix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from gnnkit.errors import InputError

__all__ = [
    "check_compare",
    "check_resume",
    "check_runs",
    "implementations",
    "interleave_seeds",
    "resolve_device",
    "seeds",
]

logger = logging.getLogger(__name__)

_RESUME_NEEDS_DIR = "--resume needs --checkpoint-dir (where the interrupted runs wrote checkpoints)"


def check_runs(runs: Any) -> None:
    """Refuse a number of runs that is not a positive ``int``."""
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise InputError(f"runs must be a positive integer, got {runs!r}")


def check_compare(compare: Any) -> None:
    """Refuse a ``compare`` other than ``None`` or ``"pyg"``."""
    if compare not in (None, "pyg"):
        raise InputError(f"--compare supports 'pyg' only, got {compare!r}")


def check_resume(resume: bool, checkpoint_dir: Any) -> None:
    """Refuse ``resume`` without a checkpoint folder (``None``) to resume from."""
    if resume and checkpoint_dir is None:
        raise InputError(_RESUME_NEEDS_DIR)


def resolve_device(device: Any) -> torch.device:
    """``device`` as a :class:`torch.device`; refused when malformed or when CUDA is missing."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"--device must be cpu, cuda or cuda:N, got {device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but CUDA is not available here")
    return device


def implementations(recipe: Any, compare: str | None) -> dict[str, Any]:
    """``{"gnnkit": recipe}``, plus ``"pyg"``: PyG's counterpart with ``compare="pyg"``.

    Args:
        recipe (Recipe): gnnkit's model and recipe (:mod:`gnnkit.recipes`).
        compare (str, optional): ``"pyg"`` or ``None``.
    """
    check_compare(compare)
    recipes = {"gnnkit": recipe}
    if compare == "pyg":
        from gnnkit.bench.pyg import reference

        recipes["pyg"] = reference(recipe)
    return recipes


def seeds(seed: int, runs: int) -> list[int]:
    """The seed of every run: ``seed``, ``seed + 1``, ..., ``seed + runs - 1``."""
    return [seed + r for r in range(runs)]


def interleave_seeds(
    recipes: Mapping[str, Any],
    run_seeds: list[int],
    start: Callable[[str, Any, int], Any],
    finish: Callable[[str, int, Any], Any],
    *,
    time_budget_s: float | None = None,
) -> dict[str, list[Any]]:
    """Train every implementation on every seed, stepping their runs in turn epoch by epoch.

    For each seed, and for each implementation in order, :func:`gnnkit.train.seed_everything`
    seeds the process and ``start(impl, recipe, seed)`` builds the model and returns its
    :class:`gnnkit.train.Run`; :func:`gnnkit.train.interleave` then steps the runs to their
    end and ``finish(impl, seed, run_result)`` makes each run's record.

    Args:
        recipes (mapping): implementation -> recipe (:func:`implementations`).
        run_seeds (list of int): the seeds, one run of each implementation per seed.
        start (callable): ``start(impl, recipe, seed)`` -> a fresh (or resumed) ``Run``.
        finish (callable): ``finish(impl, seed, run_result)`` -> the record kept.
        time_budget_s (float, optional): stop every run cleanly (with its checkpoint) before
            an epoch round that would end past this many seconds from now; the seeds after
            the one stopped are not started. (default: none)

    Returns:
        dict: implementation -> one record per seed trained, in seed order.
    """
    from gnnkit.train import interleave, seed_everything

    records: dict[str, list[Any]] = {impl: [] for impl in recipes}
    began = time.perf_counter()
    for seed in run_seeds:
        runs = {}
        for impl, recipe in recipes.items():
            seed_everything(seed)
            runs[impl] = start(impl, recipe, seed)
        left = None if time_budget_s is None else time_budget_s - (time.perf_counter() - began)
        stopped = interleave(runs, time_budget_s=left)
        for impl, run in runs.items():
            records[impl].append(finish(impl, seed, run.result()))
        if stopped:
            logger.info("time budget reached; the runs stopped with a checkpoint")
            break
    return records
