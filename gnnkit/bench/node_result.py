"""A node benchmark's result: its records, ``--json`` payload, table and figure.

:func:`gnnkit.bench.node.run_node_benchmark` returns a :class:`NodeBenchResult`.

What the table reports, per implementation:

- test accuracy: mean +- sample standard deviation over the runs of the test accuracy at the
  epoch with the best validation accuracy (see :mod:`gnnkit.train.node`);
- run time: the median over runs of one whole run's time (every epoch's training step plus
  its evaluation of all splits; data preparation, checkpoint writes excluded);
- epoch time: the median over all epochs of all runs;
- peak memory: the largest rise of the process's resident memory during a run (model
  construction and training; the prepared inputs, built once beforehand, are not counted and
  are reported separately as ``inputs_mb`` in the JSON).

The speed ratio is PyG's median run time divided by gnnkit's.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gnnkit.bench.harness import Comparison, mean_std, plot_panels
from gnnkit.utils.table import format_table

__all__ = ["NodeBenchResult", "RunRecord", "plot_node_benchmark"]


@dataclass
class RunRecord:
    """One training run of one implementation."""

    seed: int
    test_acc: float
    val_acc: float
    best_epoch: int
    epochs_run: int
    run_time_s: float
    epoch_times_s: list[float] = field(repr=False)
    peak_rss_mb: float | None
    history: dict[str, list[float]] = field(repr=False)
    resumed_from: int = 0
    peak_device_mb: float | None = None


@dataclass
class NodeBenchResult(Comparison):
    """Everything a node benchmark measured; :meth:`to_json` is the ``--json`` payload."""

    speed_key = "run_time_s_median"

    dataset: str
    model: str
    epochs: int
    seeds: list[int]
    device: str
    records: dict[str, list[RunRecord]]
    inputs_mb: dict[str, float]
    features: dict[str, str]
    label: str = ""
    recipe: str = ""
    mode: str = "full-batch"
    sampling: dict[str, Any] | None = None
    world_size: int = 1

    @property
    def runs(self) -> int:
        return len(self.seeds)

    def summary(self, impl: str) -> dict[str, Any]:
        """The JSON block of one implementation (the five required keys first)."""
        records = self.records[impl]
        accs = [r.test_acc for r in records]
        epoch_times = [t for r in records for t in r.epoch_times_s]
        peaks = [r.peak_rss_mb for r in records if r.peak_rss_mb is not None]
        device_peaks = [r.peak_device_mb for r in records if r.peak_device_mb is not None]
        test_acc_mean, test_acc_std = mean_std(accs)
        block: dict[str, Any] = {
            "test_acc_mean": test_acc_mean,
            "test_acc_std": test_acc_std,
            "run_time_s_median": statistics.median(r.run_time_s for r in records),
            "epoch_ms_median": statistics.median(epoch_times) * 1000.0,
            "peak_rss_mb": max(peaks) if peaks else None,
            "val_acc_mean": statistics.fmean(r.val_acc for r in records),
            "best_epoch_median": statistics.median(r.best_epoch for r in records),
            "inputs_mb": self.inputs_mb[impl],
            "features": self.features[impl],
            "test_acc": accs,
            "run_time_s": [r.run_time_s for r in records],
        }
        if device_peaks:
            block["peak_device_mb"] = max(device_peaks)
        resumed = sum(1 for r in records if r.resumed_from)
        if resumed:
            block["resumed_runs"] = resumed
        return block

    def to_json(self, env: dict[str, Any], options: dict[str, Any] | None = None) -> dict[str, Any]:
        payload = self.payload(
            dataset=self.dataset, model=self.model, runs=self.runs, epochs=self.epochs
        )
        payload["recipe"] = self.recipe or self.model
        payload["mode"] = self.mode
        if self.sampling is not None:
            payload["sampling"] = self.sampling
            payload["world_size"] = self.world_size
        payload["env"] = env
        payload["seeds"] = self.seeds
        if options:
            payload["options"] = options
        return payload

    def table(self) -> str:
        rows = []
        for impl in self.records:
            s = self.summary(impl)
            peak = "n/a" if s["peak_rss_mb"] is None else f"{s['peak_rss_mb']:.1f} MiB"
            accuracy = f"{100 * s['test_acc_mean']:.1f} +- {100 * s['test_acc_std']:.1f} %"
            epoch = f"{s['epoch_ms_median']:.2f} ms"
            rows.append((impl, accuracy, _seconds(s["run_time_s_median"]), epoch, peak))
        header = ("implementation", "test accuracy", "run time", "epoch time", "peak memory")
        return format_table(header, rows, "lrrrr")

    def speed_line(self) -> str | None:
        if not self.compared:
            return None
        g = self.summary("gnnkit")["run_time_s_median"]
        p = self.summary("pyg")["run_time_s_median"]
        return (
            f"speedup: gnnkit is {p / g:.1f}x faster than PyG per run "
            f"(median run {_seconds(g)} vs {_seconds(p)})"
        )

    def report(self) -> str:
        model = self.model.upper()
        if self.recipe and self.recipe != self.model:
            model = f"{model} ({self.recipe})"
        title = (
            f"{model} on {self.dataset}{self.label}: {self.runs} run(s) x "
            f"{self.epochs} epochs, seeds {_seed_range(self.seeds)}, {self.device}, "
            f"{torch.get_num_threads()} thread(s)"
        )
        lines = [title, self.table()]
        speed = self.speed_line()
        if speed:
            lines.append(speed)
        return "\n".join(lines)


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def _seed_range(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return str(seeds[0])
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def plot_node_benchmark(result: NodeBenchResult, path: str | Path) -> Path:
    """Training loss, validation and test accuracy per epoch: each seed light, the mean dark."""
    panels = (
        ("loss", "training loss"),
        ("val_acc", "validation accuracy"),
        ("test_acc", "test accuracy"),
    )
    window = max(1, min(10, result.epochs // 20))
    title = (
        f"{result.model.upper()} on {result.dataset}{result.label}: {result.runs} seed(s), "
        f"mean (dark, smoothed over {window}) and each seed (light)"
    )
    return plot_panels(result.records, panels, path, title=title, window=window)
