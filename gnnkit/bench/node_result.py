"""The result of a node benchmark (:func:`gnnkit.bench.node.run_node_benchmark`): one
:class:`RunRecord` per run and implementation, and the table, JSON and figure of
:class:`NodeBenchResult`.

The table has one row per implementation (test accuracy, run time, epoch time, peak memory)
and, when references were trained (``"pyg"``, ``"pyg-tuned"``), a column of gnnkit's speed-up
over each reference: that reference's median run time over gnnkit's. The JSON gives each
implementation's statistics, ``speedup`` (over PyG's examples, ``"pyg"``) and ``speedups``
(over every reference).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gnnkit.bench.harness import (
    REFERENCE_LABELS,
    Comparison,
    machine,
    mean_std,
    mean_std_text,
    plot_training_curves,
    speed_text,
)

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
    """Everything a node benchmark measured; :meth:`to_json` is the ``--json`` payload.

    Besides :class:`~gnnkit.bench.harness.Comparison`'s fields: the ``device``, each
    implementation's prepared features (``inputs_mb``, ``features``: :func:`tensor_mib`,
    :func:`describe_layout`), the mode's ``label`` for the title, the ``recipe``'s name, the
    ``mode``, and with mini-batches the ``sampling`` settings and the ``world_size``.
    """

    speed_key = "run_time_s_median"
    align = "lrrrrr"

    device: str
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
            "epochs_run_median": statistics.median(r.epochs_run for r in records),
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
        head = dict(dataset=self.dataset, model=self.model, runs=self.runs, epochs=self.epochs)
        tail: dict[str, Any] = {"recipe": self.recipe or self.model, "mode": self.mode}
        if self.sampling is not None:
            tail.update(sampling=self.sampling, world_size=self.world_size)
        tail.update(env=env, seeds=self.seeds)
        if options:
            tail["options"] = options
        return self.payload(head, tail)

    def title(self) -> str:
        model = self.model.upper()
        if self.recipe and self.recipe != self.model:
            model = f"{model} ({self.recipe})"
        return (
            f"{model} on {self.dataset}{self.label}: {self.runs} run(s) x {self.epochs} epochs, "
            f"seeds {_seed_range(self.seeds)}, {machine(self.device)}"
        )

    def header(self) -> tuple[str, ...]:
        columns = ("implementation", "test accuracy", "run time", "epoch time", "peak memory")
        return (*columns, "gnnkit speed-up") if self.compared else columns

    def row(self, impl: str, s: Mapping[str, Any]) -> tuple[str, ...]:
        peak = "n/a" if s["peak_rss_mb"] is None else f"{s['peak_rss_mb']:.1f} MiB"
        runs = len(self.records.get(impl, ()))
        accuracy = mean_std_text(
            100 * s["test_acc_mean"], 100 * s["test_acc_std"], runs, ".1f", " %"
        )
        epoch = f"{s['epoch_ms_median']:.2f} ms"
        cells = (impl, accuracy, _seconds(s["run_time_s_median"]), epoch, peak)
        if not self.compared:
            return cells
        ratio = self.speedup_over(impl) if impl != "gnnkit" else None
        return (*cells, "" if ratio is None else f"{ratio:.2f}x")

    def notes(self) -> list[str]:
        """One line per reference: gnnkit's speed-up over it per run."""
        g = self.summary("gnnkit")["run_time_s_median"]
        lines = []
        for impl in self.references:
            p = self.summary(impl)["run_time_s_median"]
            lines.append(
                f"speedup: gnnkit is {speed_text(p / g)} than "
                f"{REFERENCE_LABELS.get(impl, impl)} per run "
                f"(median run {_seconds(g)} vs {_seconds(p)})"
            )
        return lines


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
    panels = (("val_acc", "validation accuracy"), ("test_acc", "test accuracy"))
    return plot_training_curves(result, path, panels, max_window=10, label=result.label)
