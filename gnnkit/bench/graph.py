"""Molecular property prediction (OGB ``ogbg-mol*``), gnnkit against PyG (``gnnkit bench graph``).

The protocol is OGB's mol example (``examples/graphproppred/mol``; Hu et al., "Open Graph
Benchmark", arXiv 2005.00687), trained by :mod:`gnnkit.train.graph`: 5 layers of 300, dropout
0.5, batches of 32 molecules, Adam 1e-3, 100 epochs; the metric comes from
:class:`ogb.graphproppred.Evaluator` (ROC-AUC for ogbg-molbace, RMSE for ogbg-molesol and
ogbg-molfreesolv) and the reported test score is the one at the best validation epoch.

With ``compare="pyg"`` PyG's reference (``torch_geometric.nn.GCNConv``/``GATConv`` in the same
architecture, :mod:`gnnkit.bench.pyg`) trains the same seeds through the same loop; the two
are stepped in turn epoch by epoch (:func:`gnnkit.bench.harness.interleave_seeds`), so both
see the same machine load, and each keeps its own random state.

What the table reports, per implementation: the test score as mean +- sample standard
deviation over the runs, the mean validation score at the selected epochs, and the median
epoch time over all epochs of all runs (training pass plus evaluation of the validation and
test graphs). The speed ratio is PyG's median epoch time over gnnkit's.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gnnkit.bench import harness
from gnnkit.bench.results import (
    graph_summary,
    plot_panels,
    speed_ratio,
    summaries,
    within_one_std,
)
from gnnkit.utils.table import format_table

__all__ = ["GraphBenchResult", "plot_graph_benchmark", "run_graph_benchmark"]

logger = logging.getLogger(__name__)


@dataclass
class GraphBenchResult:
    """Everything a graph benchmark measured; :meth:`to_json` is the ``--json`` payload."""

    dataset: str
    model: str
    metric: str
    epochs: int
    seeds: list[int]
    records: dict[str, list[Any]]  # impl -> GraphTrainResult per seed
    options: dict[str, Any]

    @property
    def compared(self) -> bool:
        return "pyg" in self.records

    def summary(self, impl: str) -> dict[str, Any]:
        """The JSON block of one implementation (:func:`~gnnkit.bench.results.graph_summary`)."""
        records = self.records[impl]
        return graph_summary(
            {
                "test": [r.test for r in records],
                "valid": [r.valid for r in records],
                "best_epoch": [r.best_epoch for r in records],
                "epoch_s": [list(r.epoch_times) for r in records],
                "train_s": [list(r.history["train_time"]) for r in records],
            }
        )

    @property
    def speedup(self) -> float | None:
        return speed_ratio(self, "epoch_s_median")

    def within_one_std(self) -> bool | None:
        """gnnkit's mean test score is at most one PyG std worse than PyG's, or better."""
        if not self.compared:
            return None
        return within_one_std(self.summary("gnnkit"), self.summary("pyg"), self.metric)

    def to_json(self, env: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "dataset": self.dataset,
            "model": self.model,
            "metric": self.metric,
            **summaries(self),
        }
        payload["speedup"] = self.speedup
        payload["within_one_std"] = self.within_one_std()
        payload["runs"] = len(self.seeds)
        payload["epochs"] = self.epochs
        payload["seeds"] = self.seeds
        payload["options"] = self.options
        payload["env"] = env
        return payload

    def report(self) -> str:
        rows = []
        for impl in self.records:
            s = self.summary(impl)
            test = f"{s['test_mean']:.4f} +- {s['test_std']:.4f}"
            epoch = f"{1000 * s['epoch_s_median']:.0f} ms"
            rows.append((impl, test, f"{s['valid_mean']:.4f}", epoch))
        header = ("implementation", f"test {self.metric}", f"valid {self.metric}", "epoch time")
        title = (
            f"{self.model.upper()} on {self.dataset}: {len(self.seeds)} run(s) x {self.epochs} "
            f"epochs, seeds {self.seeds[0]}-{self.seeds[-1]}, {self.options.get('device', 'cpu')}, "
            f"{torch.get_num_threads()} thread(s)"
        )
        lines = [title, format_table(header, rows, "lrrr")]
        if self.compared:
            verdict = "within one PyG std or better" if self.within_one_std() else "worse"
            lines.append(
                f"speedup: gnnkit's epoch is {self.speedup:.2f}x faster than PyG's; accuracy "
                f"{verdict}"
            )
        return "\n".join(lines)


def run_graph_benchmark(
    dataset_obj: Any,
    *,
    dataset: str,
    model: str,
    compare: str | None = None,
    runs: int = 10,
    epochs: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    emb_dim: int = 300,
    device: str | torch.device = "cpu",
) -> GraphBenchResult:
    """Train ``model`` (and PyG's ``pyg-<model>`` with ``compare="pyg"``) ``runs`` times.

    Run ``r`` uses seed ``seed + r`` for both implementations. See the module docstring.

    Args:
        dataset_obj: an OGB graph dataset (:func:`gnnkit.data.load`) or
            :class:`~gnnkit.train.graph.GraphSplits`.
        dataset (str): its name.
        model (str): a key of :data:`gnnkit.recipes.GRAPH_RECIPES`.
        compare (str, optional): ``"pyg"`` also trains PyG's reference.
        runs (int, optional): seeds per implementation. (default: ``10``)
        epochs (int, optional): epochs per run. (default: the recipe's, 100)
        seed (int, optional): seed of the first run. (default: ``0``)
        batch_size (int, optional): graphs per batch. (default: ``32``)
        emb_dim (int, optional): layer width. (default: ``300``)
        device (str or torch.device, optional): where to train; batches are moved there
            one at a time. (default: ``"cpu"``)
    """
    from gnnkit.recipes import get_recipe
    from gnnkit.train.graph import (
        GraphSplits,
        GraphTrainConfig,
        graph_result,
        graph_run,
        graph_splits,
    )

    harness.check_runs(runs)
    device = harness.resolve_device(device)
    recipe = get_recipe("graph", model)
    recipes = harness.implementations(recipe, compare)
    epochs = recipe.epochs if epochs is None else epochs
    splits = (
        dataset_obj if isinstance(dataset_obj, GraphSplits) else graph_splits(dataset_obj, dataset)
    )

    def start(impl: str, recipe: Any, run_seed: int) -> Any:
        net = recipe.build(emb_dim, splits.num_tasks).to(device)
        config = GraphTrainConfig(epochs=epochs, lr=recipe.lr, batch_size=batch_size, seed=run_seed)
        return graph_run(net, splits, config)

    def finish(impl: str, run_seed: int, run_result: Any) -> Any:
        result = graph_result(run_result, splits.metric)
        logger.info(
            "seed %d %s: test %s %.4f at epoch %d (valid %.4f), median epoch %.0f ms",
            run_seed, impl, splits.metric, result.test, result.best_epoch, result.valid,
            1000 * statistics.median(result.epoch_times),
        )  # fmt: skip
        return result

    seeds = harness.seeds(seed, runs)
    options = {
        "runs": runs, "epochs": epochs, "seed": seed, "batch_size": batch_size,
        "emb_dim": emb_dim, "lr": recipe.lr, "compare": compare, "device": str(device),
    }  # fmt: skip
    return GraphBenchResult(
        dataset=dataset,
        model=model,
        metric=splits.metric,
        epochs=epochs,
        seeds=seeds,
        records=harness.interleave_seeds(recipes, seeds, start, finish),
        options=options,
    )


def plot_graph_benchmark(result: GraphBenchResult, path: str | Path) -> Path:
    """Training loss and validation / test score per epoch: each seed light, the mean dark."""
    panels = (
        ("loss", "training loss"),
        ("valid", f"validation {result.metric}"),
        ("test", f"test {result.metric}"),
    )
    window = max(1, min(5, result.epochs // 20))
    title = (
        f"{result.model.upper()} on {result.dataset}: {len(result.seeds)} seed(s), mean (dark, "
        f"smoothed over {window}) and each seed (light)"
    )
    return plot_panels(result.records, panels, path, title=title, window=window)
