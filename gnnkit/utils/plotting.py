"""Training curves over seeds: per-seed light lines under a dark smoothed mean.

matplotlib is imported lazily with the non-interactive Agg backend, so plotting works on
machines without a display and costs nothing for code that never plots.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gnnkit.utils.io import atomic_open

__all__ = ["plot_seed_curves", "save_figure", "smooth", "subplots"]


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (shorter at the start, same length)."""
    array = np.asarray(values, dtype=float)
    if window <= 1 or array.size == 0:
        return array
    cumulative = np.concatenate([[0.0], np.cumsum(array)])
    stop = np.arange(1, array.size + 1)
    begin = np.maximum(stop - window, 0)
    return (cumulative[stop] - cumulative[begin]) / (stop - begin)


def subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any):
    """``matplotlib.pyplot.subplots`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, **kwargs)


def plot_seed_curves(
    ax: Any,
    runs: Sequence[Sequence[float]],
    *,
    label: str,
    color: str | None = None,
    window: int = 1,
    x: Sequence[float] | None = None,
) -> None:
    """Draw each run (seed) as a light line and their mean, smoothed, as a dark line.

    Runs of different lengths (early stopping) are averaged over the runs still going at
    each step.

    Args:
        ax: a matplotlib Axes.
        runs (sequence of sequences): one curve per seed.
        label (str): legend label of the mean line.
        color (str, optional): colour of both lines. (default: the Axes' next colour)
        window (int, optional): moving-average window of the mean line. (default: 1)
        x (sequence, optional): x values for the longest run. (default: 1, 2, ...)
    """
    runs = [np.asarray(r, dtype=float) for r in runs if len(r)]
    if not runs:
        return
    longest = max(r.size for r in runs)
    xs = np.asarray(x, dtype=float) if x is not None else np.arange(1, longest + 1)
    color = color or ax._get_lines.get_next_color()
    for run in runs:
        ax.plot(xs[: run.size], run, color=color, alpha=0.25, linewidth=0.8)
    padded = np.full((len(runs), longest), np.nan)
    for i, run in enumerate(runs):
        padded[i, : run.size] = run
    mean = np.nanmean(padded, axis=0)
    ax.plot(xs, smooth(mean, window), color=color, linewidth=2.0, label=label)


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Save a figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    try:
        with atomic_open(path, "wb") as handle:
            fig.savefig(handle, format=fmt, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
