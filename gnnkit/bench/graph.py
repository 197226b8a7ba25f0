"""``gnnkit bench graph``: molecular property prediction (OGB ``ogbg-mol*``), gnnkit vs PyG.

The protocol is OGB's mol example (:mod:`gnnkit.train.graph`): 5 layers of 300, dropout
0.5, batches of 32 molecules, Adam 1e-3, 100 epochs; the metric comes from
:class:`ogb.graphproppred.Evaluator` (ROC-AUC for ogbg-molbace, RMSE for ogbg-molesol and
ogbg-molfreesolv) and the reported test score is the one at the best validation epoch.

With ``--compare pyg`` PyG's reference (``torch_geometric.nn.GCNConv``/``GATConv`` in the same
architecture, ``benchmarks/references_ogb.py``) trains the same seeds through the same loop;
the two are stepped in turn epoch by epoch (gnnkit first on even epochs, PyG first on odd
ones), so both see the same machine load, and each keeps its own random state.

What the table reports, per implementation: the test score as mean +- sample standard
deviation over the runs, the mean validation score at the selected epochs, and the median
epoch time over all epochs of all runs (training pass plus evaluation of the validation and
test graphs). The speed ratio is PyG's median epoch time over gnnkit's.
"""

from __future__ import annotations

import argparse
import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gnnkit.bench import common
from gnnkit.cli.common import data_options, format_table, positive_int

__all__ = [
    "GraphBenchResult",
    "register",
    "run",
    "run_graph_benchmark",
    "summarize",
    "within_one_std",
]

logger = logging.getLogger(__name__)

COLORS = common.COLORS  # the figures' colours (kept importable from here)


@dataclass
class GraphBenchResult:
    """Everything ``gnnkit bench graph`` measured; :meth:`to_json` is the ``--json`` payload."""

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
        """The JSON block of one implementation (:func:`summarize` of its seeds)."""
        records = self.records[impl]
        return summarize(
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
        return common.speed_ratio(self, "epoch_s_median")

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
            **common.summaries(self),
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
            rows.append(
                (
                    impl,
                    f"{s['test_mean']:.4f} +- {s['test_std']:.4f}",
                    f"{s['valid_mean']:.4f}",
                    f"{1000 * s['epoch_s_median']:.0f} ms",
                )
            )
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


SEED_KEYS = ("test", "valid", "best_epoch", "epoch_s", "train_s")
"""The per-seed lists of a summary block, in seed order; the rest is computed from them."""


def summarize(seeds: dict[str, list[Any]]) -> dict[str, Any]:
    """An implementation's JSON block from its per-seed lists (:data:`SEED_KEYS`).

    ``epoch_s`` and ``train_s`` hold one list of per-epoch seconds per seed, so blocks of runs
    made apart (other seeds) can be joined and summarised again exactly
    (``benchmarks/ogbg_table.py``). The four keys of the issue come first: ``test_mean``,
    ``test_std`` (sample std), ``valid_mean`` and ``epoch_s_median`` (over all epochs of all
    seeds), then ``train_s_median`` and the per-seed lists.
    """
    test_mean, test_std = common.mean_std(seeds["test"])
    return {
        "test_mean": test_mean,
        "test_std": test_std,
        "valid_mean": statistics.fmean(seeds["valid"]),
        "epoch_s_median": statistics.median(t for run in seeds["epoch_s"] for t in run),
        "train_s_median": statistics.median(t for run in seeds["train_s"] for t in run),
        **{key: seeds[key] for key in SEED_KEYS},
    }


def within_one_std(gnnkit: dict[str, Any], pyg: dict[str, Any], metric: str) -> bool:
    """gnnkit's mean test score is at most one PyG std worse than PyG's, or better.

    ``gnnkit`` and ``pyg`` are :func:`summarize` blocks; ``metric`` sets the direction.
    """
    from gnnkit.train.graph import metric_direction

    gap = gnnkit["test_mean"] - pyg["test_mean"]
    if metric_direction(metric) == "min":
        gap = -gap
    return gap >= -pyg["test_std"]


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
    """Train ``model`` (and PyG's ``pyg-ogbg-<model>`` with ``compare="pyg"``) ``runs`` times.

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
    from gnnkit.train.engine import interleave, seed_everything
    from gnnkit.train.graph import (
        GraphSplits,
        GraphTrainConfig,
        graph_result,
        graph_run,
        graph_splits,
    )

    common.check_runs(runs)
    device = common.resolve_device(device)
    spec = get_recipe("graph", model)
    specs = common.implementations(spec, compare)
    epochs = spec.epochs if epochs is None else epochs
    splits = (
        dataset_obj if isinstance(dataset_obj, GraphSplits) else graph_splits(dataset_obj, dataset)
    )
    seeds = [seed + r for r in range(runs)]
    records: dict[str, list[Any]] = {impl: [] for impl in specs}
    for run_seed in seeds:
        trainers = {}
        for impl, s in specs.items():
            seed_everything(run_seed)
            net = s.build(emb_dim, splits.num_tasks).to(device)
            config = GraphTrainConfig(epochs=epochs, lr=s.lr, batch_size=batch_size, seed=run_seed)
            trainers[impl] = graph_run(net, splits, config)
        interleave(trainers)
        for impl, trainer in trainers.items():
            result = graph_result(trainer.result(), splits.metric)
            records[impl].append(result)
            logger.info(
                "seed %d %s: test %s %.4f at epoch %d (valid %.4f), median epoch %.0f ms",
                run_seed, impl, splits.metric, result.test, result.best_epoch, result.valid,
                1000 * statistics.median(result.epoch_times),
            )  # fmt: skip
    return GraphBenchResult(
        dataset=dataset,
        model=model,
        metric=splits.metric,
        epochs=epochs,
        seeds=seeds,
        records=records,
        options={
            "runs": runs,
            "epochs": epochs,
            "seed": seed,
            "batch_size": batch_size,
            "emb_dim": emb_dim,
            "lr": spec.lr,
            "compare": compare,
            "device": str(device),
        },
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
    return common.plot_panels(result.records, panels, path, title=title, window=window)


# --------------------------------------------------------------------------- CLI


def register(subparsers: argparse._SubParsersAction) -> None:
    from gnnkit.recipes import GRAPH_RECIPES

    parser = subparsers.add_parser(
        "graph",
        parents=[data_options()],
        help="molecular property prediction (ogbg-mol*): gnnkit's GCN/GAT against PyG's",
        description=(
            "Train OGB's molecule GNN (5 layers, 300 hidden, mean pooling) over several seeds "
            "and report the OGB metric on the test graphs at the best validation epoch and the "
            "epoch time; with --compare pyg, PyG's layers in the same architecture train "
            "through the same loop, epoch by epoch in turn."
        ),
    )
    parser.add_argument(
        "--dataset",
        default="ogbg-molbace",
        help="any OGB molecule dataset (ogbg-mol*; gnnkit data list shows them): ogbg-molbace "
        "(default), ogbg-molesol, ogbg-molfreesolv, ogbg-moltox21...",
    )
    common.add_model_arguments(
        parser, GRAPH_RECIPES, runs=10, epochs_help="epochs per run (default: 100, OGB's)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the first run; run r uses SEED + r"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=32, help="graphs per batch (default: 32)"
    )
    common.add_device_argument(parser)
    common.add_output_arguments(parser, plot_help="draw loss and score curves")
    common.add_threads_argument(parser, default_help="torch's")
    parser.set_defaults(func=run)


def load_graph_dataset(name: str, args: argparse.Namespace) -> Any:
    """Load a registered graph dataset; other kinds are refused with the list of graph datasets."""
    return common.load_dataset_of_kind(name, args, "graph")


def run(args: argparse.Namespace) -> int:
    from gnnkit.recipes import get_recipe
    from gnnkit.utils.env import environment

    get_recipe("graph", args.model)  # unknown names and devices fail before any data is loaded
    device = common.resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = load_graph_dataset(args.dataset, args)
    result = run_graph_benchmark(
        dataset,
        dataset=args.dataset,
        model=args.model,
        compare=args.compare,
        runs=args.runs,
        epochs=args.epochs,
        seed=args.seed,
        batch_size=args.batch_size,
        device=device,
    )
    return common.report_and_write(
        args, result, lambda: result.to_json(environment(device)), plot_graph_benchmark
    )
