"""The results API of the benchmark harness: summaries of seeds, comparisons and figures.

A benchmark result (:class:`~gnnkit.bench.node.NodeBenchResult`,
:class:`~gnnkit.bench.graph.GraphBenchResult`, :class:`~gnnkit.bench.link.LinkBenchResult`)
holds one record per implementation and seed; its ``summary(impl)`` is one JSON block of
statistics over the seeds, and ``to_json`` the whole ``--json`` payload. This module holds
what those share and what the scripts that collect several runs into one table use
(``benchmarks/ogbg_table.py``, ``benchmarks/ddi_table.py``), so that no script depends on a
benchmark's internals:

- :func:`mean_std`: the mean and sample standard deviation reported for scores;
- :func:`graph_summary` and :func:`join_graph_summaries`: the block of a graph benchmark from
  its per-seed lists, and the block of the seeds of two runs made apart, summarised again
  exactly as one run of all the seeds would be;
- :func:`within_one_std`: the accuracy verdict of a comparison;
- :func:`plot_panels`: the figures (every seed light, the mean dark).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gnnkit.errors import InputError

__all__ = [
    "COLORS",
    "GRAPH_SEED_KEYS",
    "graph_summary",
    "join_graph_summaries",
    "mean_std",
    "plot_panels",
    "speed_ratio",
    "summaries",
    "within_one_std",
]

#: Line colour of each implementation in the figures.
COLORS = {"gnnkit": "C0", "pyg": "C1"}

#: The per-seed lists of a graph benchmark's summary block, in seed order; its statistics are
#: computed from them (:func:`graph_summary`).
GRAPH_SEED_KEYS = ("test", "valid", "best_epoch", "epoch_s", "train_s")


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


def graph_summary(seeds: Mapping[str, list[Any]]) -> dict[str, Any]:
    """A graph benchmark's JSON block of one implementation from its per-seed lists.

    Args:
        seeds (mapping): :data:`GRAPH_SEED_KEYS` -> one entry per seed: the test and
            validation scores, the best epoch, and ``epoch_s`` and ``train_s``, one list of
            per-epoch seconds per seed.

    Returns:
        dict: ``test_mean``, ``test_std`` (sample std), ``valid_mean`` and ``epoch_s_median``
        (over all epochs of all seeds) first, then ``train_s_median`` and the per-seed lists.
    """
    test_mean, test_std = mean_std(seeds["test"])
    return {
        "test_mean": test_mean,
        "test_std": test_std,
        "valid_mean": statistics.fmean(seeds["valid"]),
        "epoch_s_median": statistics.median(t for run in seeds["epoch_s"] for t in run),
        "train_s_median": statistics.median(t for run in seeds["train_s"] for t in run),
        **{key: list(seeds[key]) for key in GRAPH_SEED_KEYS},
    }


def join_graph_summaries(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """The block of ``first``'s seeds followed by ``second``'s (two :func:`graph_summary`).

    The result equals the block of one run of all the seeds, because every statistic is
    computed again from the per-seed lists.

    Raises:
        InputError: a block has no per-seed lists (written before they were recorded).
    """
    missing = [key for key in GRAPH_SEED_KEYS if key not in first or key not in second]
    if missing:
        raise InputError(f"a summary block has no per-seed {', '.join(missing)}; cannot join")
    return graph_summary({key: first[key] + second[key] for key in GRAPH_SEED_KEYS})


def within_one_std(gnnkit: Mapping[str, Any], pyg: Mapping[str, Any], metric: str) -> bool:
    """gnnkit's mean test score is at most one PyG std worse than PyG's, or better.

    ``gnnkit`` and ``pyg`` are summary blocks (``test_mean``, ``test_std``); ``metric`` (an
    OGB metric name) sets which direction is better.
    """
    from gnnkit.train.graph import metric_direction

    gap = gnnkit["test_mean"] - pyg["test_mean"]
    if metric_direction(metric) == "min":
        gap = -gap
    return gap >= -pyg["test_std"]


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
        records (mapping): a label (an implementation, or a setting) -> one result per seed,
            each with a ``history`` dict of per-epoch (or per-evaluation) series.
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
        for label, runs in records.items():
            plot_seed_curves(
                ax,
                [r.history[key] for r in runs],
                label=label,
                color=COLORS.get(label),
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
