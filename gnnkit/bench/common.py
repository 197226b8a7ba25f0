"""What the ``gnnkit bench`` modules share: checks, interleaving, summaries, outputs, arguments.

Every benchmark trains gnnkit's model and, with ``--compare pyg``, PyG's reference on the same
seeds, alternating between the two so that both see the same machine load; it then prints a
table and optionally writes the results as JSON and the training curves as a figure. The
pieces of that protocol that do not depend on the task live here, once.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from gnnkit.cli.common import data_kwargs, positive_int, write_json
from gnnkit.errors import InputError

__all__ = [
    "COLORS",
    "add_model_arguments",
    "add_output_arguments",
    "add_threads_argument",
    "check_compare",
    "check_resume",
    "check_runs",
    "implementations",
    "load_dataset_of_kind",
    "mean_std",
    "plot_panels",
    "report_and_write",
    "resolve_device",
    "speed_ratio",
    "summaries",
]

#: Line colour of each implementation in the figures.
COLORS = {"gnnkit": "C0", "pyg": "C1"}

_RESUME_NEEDS_DIR = "--resume needs --checkpoint-dir (where the interrupted runs wrote checkpoints)"


# --------------------------------------------------------------------------- checks


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


# --------------------------------------------------------------------------- summaries


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (``0.0`` for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summaries(result: Any) -> dict[str, dict[str, Any]]:
    """``result.summary(impl)`` for gnnkit and, when compared, PyG: the JSON's two blocks."""
    return {impl: result.summary(impl) for impl in ("gnnkit", "pyg") if impl in result.records}


def speed_ratio(result: Any, key: str) -> float | None:
    """PyG's ``key`` over gnnkit's (a speedup for times); ``None`` without PyG or a time."""
    if not result.compared:
        return None
    g, p = result.summary("gnnkit")[key], result.summary("pyg")[key]
    return p / g if g and p else None


# --------------------------------------------------------------------------- outputs


def plot_panels(
    records: Mapping[str, Sequence[Any]],
    panels: Sequence[tuple[str, str]],
    path: str | Path,
    *,
    title: str,
    window: int = 1,
    x: Callable[[str, Sequence[Any]], Sequence[float] | None] | None = None,
) -> Path:
    """One panel per ``(history key, panel title)``: every seed light, the mean dark.

    Args:
        records (mapping): implementation -> one result per seed, each with a ``history``
            dict of per-epoch (or per-evaluation) series.
        panels (sequence): ``(key, title)`` of each panel, left to right.
        path (str or Path): the figure file (PNG, PDF or SVG).
        title (str): the figure's title.
        window (int, optional): smoothing window of the mean. (default: ``1``)
        x (callable, optional): ``x(key, records)``, the x values of a panel's series
            (default: epochs 1, 2, ...).

    Raises:
        InputError: the figure cannot be written (named as ``--plot PATH``).
    """
    from gnnkit.utils.plotting import plot_seed_curves, save_figure, subplots

    fig, axes = subplots(1, len(panels), figsize=(5.0 * len(panels), 3.8), layout="constrained")
    for ax, (key, panel_title) in zip(axes, panels, strict=True):
        for impl, runs in records.items():
            plot_seed_curves(
                ax,
                [r.history[key] for r in runs],
                label=impl,
                color=COLORS.get(impl),
                window=window,
                x=None if x is None else x(key, runs),
            )
        ax.set_title(panel_title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    try:
        return save_figure(fig, path)
    except OSError as exc:
        raise InputError(f"cannot write --plot {path}: {exc.strerror or exc}") from exc


def report_and_write(
    args: argparse.Namespace,
    result: Any,
    payload: Callable[[], dict[str, Any]],
    plot: Callable[[Any, str], Path],
) -> int:
    """Print ``result.report()``, then write ``--json`` (``payload()``) and ``--plot``; ``0``."""
    print(result.report())
    if args.json:
        print(f"wrote {write_json(args.json, payload())}")
    if args.plot:
        print(f"wrote {plot(result, args.plot)}")
    return 0


def load_dataset_of_kind(name: str, args: argparse.Namespace, kind: str) -> Any:
    """Load a registered dataset of ``kind``; others are refused with the list of that kind."""
    from gnnkit.data import DATASETS, get_spec, load

    spec = get_spec(name)
    if spec.kind != kind:
        names = ", ".join(n for n, s in DATASETS.items() if s.kind == kind)
        raise InputError(
            f"dataset {name!r} is a {spec.kind} dataset; bench {kind} needs one of: {names}"
        )
    return load(name, **data_kwargs(args))


# --------------------------------------------------------------------------- arguments


def add_model_arguments(
    parser: argparse.ArgumentParser,
    models: Iterable[str],
    *,
    runs: int,
    epochs_help: str,
) -> None:
    """``--model`` (default ``gcn``), ``--runs`` and ``--epochs`` (default: the recipe's)."""
    parser.add_argument(
        "--model", default="gcn", help=f"one of: {', '.join(models)} (default: gcn)"
    )
    parser.add_argument(
        "--runs",
        type=positive_int,
        default=runs,
        help=f"seeds per implementation (default: {runs})",
    )
    parser.add_argument("--epochs", type=positive_int, default=None, help=epochs_help)


def add_output_arguments(parser: argparse.ArgumentParser, *, plot_help: str) -> None:
    """``--compare pyg``, ``--json PATH`` and ``--plot PATH``."""
    parser.add_argument(
        "--compare", choices=["pyg"], default=None, help="also train PyG's reference model"
    )
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--plot", metavar="PATH", help=plot_help)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device cpu|cuda[:N]`` (checked by :func:`resolve_device`)."""
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")


def add_threads_argument(parser: argparse.ArgumentParser, *, default_help: str) -> None:
    """``--threads N``: torch's CPU threads."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help=f"torch CPU threads (default: {default_help})",
    )
