"""Molecular property prediction (OGB ``ogbg-mol*``), gnnkit against PyG (``gnnkit bench graph``).

The protocol is OGB's mol example (``examples/graphproppred/mol``; Hu et al., "Open Graph
Benchmark", arXiv 2005.00687), trained by :mod:`gnnkit.train.graph`: 5 layers of 300, dropout
0.5, batches of 32 molecules, Adam 1e-3, 100 epochs; the metric comes from
:class:`ogb.graphproppred.Evaluator` (ROC-AUC for ogbg-molbace, RMSE for ogbg-molesol and
ogbg-molfreesolv) and the reported test score is the one at the best validation epoch.

With ``compare="pyg"`` PyG's reference (``torch_geometric.nn.GCNConv``/``GATConv`` in the same
architecture, :mod:`gnnkit.bench.pyg`) trains the same seeds through the same loop; the two
are stepped in turn epoch by epoch (:func:`gnnkit.bench.harness.interleave_seeds`), so both
see the same machine load, and each keeps its own random state. ``compare="pyg-tuned"`` (or
``"pyg,pyg-tuned"``) adds the same PyG layers with each batch's graph prepared once for all
five layers (:class:`gnnkit.bench.pyg_tuned.PygTunedMolGNN`).

What the table reports, per implementation: the test score as mean +- sample standard
deviation over the runs, the mean validation score at the selected epochs, and the median
epoch time over all epochs of all runs (training pass plus evaluation of the validation and
test graphs). The speed ratio is PyG's median epoch time over gnnkit's.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gnnkit.bench import harness
from gnnkit.bench.harness import (
    Comparison,
    machine,
    mean_std,
    mean_std_text,
    plot_training_curves,
    speed_text,
)
from gnnkit.errors import InputError
from gnnkit.train.graph import metric_direction

__all__ = [
    "GRAPH_SEED_KEYS",
    "GraphBenchResult",
    "graph_summary",
    "join_graph_summaries",
    "plot_graph_benchmark",
    "run_graph_benchmark",
    "within_one_std",
]

logger = logging.getLogger(__name__)


#: The per-seed lists of a graph benchmark's summary block, in seed order; its statistics are
#: computed from them (:func:`graph_summary`), so the seeds of runs made apart can be joined.
GRAPH_SEED_KEYS = ("test", "valid", "best_epoch", "epoch_s", "train_s")


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
    gap = gnnkit["test_mean"] - pyg["test_mean"]
    if metric_direction(metric) == "min":
        gap = -gap
    return gap >= -pyg["test_std"]


@dataclass
class GraphBenchResult(Comparison):
    """Everything a graph benchmark measured; :meth:`to_json` is the ``--json`` payload.

    Besides :class:`~gnnkit.bench.harness.Comparison`'s fields (``records``: one
    :class:`~gnnkit.train.graph.GraphTrainResult` per seed): the OGB ``metric`` and the
    ``options`` the benchmark ran with.
    """

    speed_key = "epoch_s_median"
    align = "lrrr"

    metric: str
    options: dict[str, Any]

    def summary(self, impl: str) -> dict[str, Any]:
        """The JSON block of one implementation (:func:`graph_summary`)."""
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

    def within_one_std(self) -> bool | None:
        """gnnkit's mean test score is at most one PyG std worse than PyG's, or better."""
        if not self.compared:
            return None
        return within_one_std(self.summary("gnnkit"), self.summary("pyg"), self.metric)

    def to_json(self, env: dict[str, Any]) -> dict[str, Any]:
        head = dict(dataset=self.dataset, model=self.model, metric=self.metric)
        tail: dict[str, Any] = dict(
            within_one_std=self.within_one_std(), runs=len(self.seeds), epochs=self.epochs
        )
        tail.update(seeds=self.seeds, options=self.options, env=env)
        return self.payload(head, tail)

    def title(self) -> str:
        return (
            f"{self.model.upper()} on {self.dataset}: {len(self.seeds)} run(s) x {self.epochs} "
            f"epochs, seeds {self.seeds[0]}-{self.seeds[-1]}, "
            f"{machine(self.options.get('device', 'cpu'))}"
        )

    def header(self) -> tuple[str, ...]:
        return ("implementation", f"test {self.metric}", f"valid {self.metric}", "epoch time")

    def row(self, impl: str, s: Mapping[str, Any]) -> tuple[str, ...]:
        test = mean_std_text(s["test_mean"], s["test_std"], len(self.records.get(impl, ())))
        return (impl, test, f"{s['valid_mean']:.4f}", f"{1000 * s['epoch_s_median']:.0f} ms")

    def notes(self) -> list[str]:
        lines = []
        if self.speedup is not None:
            verdict = "within one PyG std or better" if self.within_one_std() else "worse"
            lines.append(
                f"speedup: gnnkit's epoch is {speed_text(self.speedup, '.2f')} than PyG's; "
                f"accuracy {verdict}"
            )
        tuned = self.speedup_over("pyg-tuned")
        if tuned is not None:
            lines.append(f"speedup: gnnkit's epoch is {speed_text(tuned, '.2f')} than tuned PyG's")
        return lines


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
    """Train ``model`` (and each reference of ``compare``) ``runs`` times.

    Run ``r`` uses seed ``seed + r`` for both implementations. See the module docstring.

    Args:
        dataset_obj: an OGB graph dataset (:func:`gnnkit.data.load`) or
            :class:`~gnnkit.train.graph.GraphSplits`.
        dataset (str): its name.
        model (str): a key of :data:`gnnkit.recipes.GRAPH_RECIPES`.
        compare (str, optional): the references to train too: ``"pyg"`` (OGB's example with
            PyG's layers), ``"pyg-tuned"`` (the same, each batch's graph prepared once), or a
            comma list of both.
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
    panels = (("valid", f"validation {result.metric}"), ("test", f"test {result.metric}"))
    return plot_training_curves(result, path, panels, max_window=5)
