"""Link prediction on ogbl-ddi, gnnkit's model side by side with PyG's (``gnnkit bench link``).

The protocol is OGB's ddi example (``examples/linkproppred/ddi/gnn.py``; Hu et al., "Open
Graph Benchmark", arXiv 2005.00687), trained by :mod:`gnnkit.train.link`: batches of 64 x
1024 training edges with as many negatives from PyG's ``negative_sampling``, Adam 0.005, 200
epochs, Hits@20 from ``ogb.linkproppred.Evaluator`` every ``eval_every`` epochs; the reported
test Hits@20 is the one at the evaluation with the best validation Hits@20.

With ``compare="pyg"`` both implementations train the same seeds through the same loop,
stepped in turn epoch by epoch (:func:`gnnkit.bench.harness.interleave_seeds`), so both see
the same machine load; each keeps its own random state. Epoch time is the training part of an
epoch (evaluation is timed separately); the speed ratio is PyG's median epoch time over
gnnkit's.

Long runs: ``checkpoint_dir`` receives a checkpoint after every evaluation (atomically),
``time_budget_s`` stops cleanly (with a checkpoint and a partial result) before an epoch that
would end past the budget, and ``resume`` continues from the checkpoints.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping, Sequence
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
    plot_panels,
    speed_text,
)
from gnnkit.train.link import DEFAULT_NEGATIVES

__all__ = ["LinkBenchResult", "plot_link_benchmark", "run_link_benchmark"]


@dataclass
class LinkBenchResult(Comparison):
    """Everything a link benchmark measured; :meth:`to_json` is the ``--json`` payload.

    Besides :class:`~gnnkit.bench.harness.Comparison`'s fields (``records``: one
    :class:`~gnnkit.train.link.LinkTrainResult` per seed): the ``device``, the ``k`` of
    Hits@K and the ``options`` the benchmark ran with.
    """

    speed_key = "epoch_s_median"
    align = "lrrrrrl"

    device: str
    k: int
    options: dict[str, Any]

    @property
    def metric(self) -> str:
        return f"hits@{self.k}"

    def summary(self, impl: str) -> dict[str, Any]:
        """The JSON block of one implementation (the four required keys first)."""
        records = self.records[impl]
        tests = [r.test_hits for r in records]
        epoch_times = [t for r in records for t in r.epoch_times]
        eval_times = [t for r in records for t in r.eval_times]
        test_mean, test_std = mean_std(tests)
        return {
            "test_mean": test_mean,
            "test_std": test_std,
            "valid_mean": statistics.fmean(r.valid_hits for r in records),
            "epoch_s_median": statistics.median(epoch_times) if epoch_times else None,
            "eval_s_median": statistics.median(eval_times) if eval_times else None,
            "train_mean": statistics.fmean(r.train_hits for r in records),
            "best_epoch": [r.best_epoch for r in records],
            "epochs_run": [r.epochs_run for r in records],
            "finished": [r.finished for r in records],
            "wall_s": [r.wall_time for r in records],
            "test": tests,
            "history": [r.history for r in records],
        }

    def to_json(self, env: dict[str, Any]) -> dict[str, Any]:
        head = dict(dataset=self.dataset, model=self.model, metric=self.metric)
        tail = dict(epochs=self.epochs, seeds=self.seeds, options=self.options, env=env)
        return self.payload(head, tail)

    def title(self) -> str:
        title = (
            f"{self.model.upper()} on {self.dataset}: {len(self.seeds)} run(s), "
            f"seeds {','.join(map(str, self.seeds))}, {machine(self.device)}"
        )
        if self.options.get("negatives", DEFAULT_NEGATIVES) != DEFAULT_NEGATIVES:
            title += f", negatives drawn by {self.options['negatives']}"
        return title

    def header(self) -> tuple[str, ...]:
        return ("implementation", f"test Hits@{self.k}", "valid", "epoch time", "eval time",
                "wall time", "epochs")  # fmt: skip

    def row(self, impl: str, s: Mapping[str, Any]) -> tuple[str, ...]:
        done = ", ".join(
            f"{n}" + ("" if f == "epochs" else f" ({f})")
            for n, f in zip(s["epochs_run"], s["finished"], strict=True)
        )
        test = mean_std_text(s["test_mean"], s["test_std"], len(self.records.get(impl, ())))
        times = map(_seconds, (s["epoch_s_median"], s["eval_s_median"], sum(s["wall_s"])))
        return (impl, test, f"{s['valid_mean']:.4f}", *times, done)

    def notes(self) -> list[str]:
        lines = []
        if self.speedup is not None:
            lines.append(
                f"speedup: gnnkit's training epoch is {speed_text(self.speedup, '.2f')} than PyG's"
            )
        partial = [r for rs in self.records.values() for r in rs if r.finished != "epochs"]
        if partial:
            lines.append(
                "partial: stopped by the time budget; continue with --resume and the same "
                "--checkpoint-dir"
            )
        return lines


def _seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f} s" if value < 100 else f"{value / 60:.1f} min"


def run_link_benchmark(
    dataset_obj: Any,
    *,
    dataset: str,
    model: str,
    compare: str | None = None,
    runs: int = 1,
    epochs: int | None = None,
    eval_every: int = 5,
    seed: int = 0,
    batch_size: int = 64 * 1024,
    hidden_channels: int = 256,
    time_budget_s: float | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    negatives: str = DEFAULT_NEGATIVES,
) -> LinkBenchResult:
    """Train ``model`` (and PyG's ``pyg-<model>`` with ``compare="pyg"``) on a link dataset.

    Run ``r`` uses seed ``seed + r`` for both implementations. See the module docstring.

    Args:
        dataset_obj: an OGB link dataset (:func:`gnnkit.data.load`), or a
            :class:`~gnnkit.train.link.LinkData`.
        dataset (str): its name (labels and checkpoint names).
        model (str): a key of :data:`gnnkit.recipes.LINK_RECIPES`.
        compare (str, optional): ``"pyg"`` also trains PyG's reference.
        runs (int, optional): seeds per implementation. (default: ``1``)
        epochs (int, optional): epochs per run. (default: the recipe's, 200)
        eval_every (int, optional): evaluate every this many epochs. (default: ``5``)
        seed (int, optional): seed of the first run. (default: ``0``)
        batch_size (int, optional): positive edges per step. (default: ``65536``)
        hidden_channels (int, optional): embedding and layer width. (default: ``256``)
        time_budget_s (float, optional): stop every run cleanly (with its checkpoint) before
            an epoch round that would end past this many seconds. (default: none)
        checkpoint_dir (str or Path, optional): write each run's checkpoints here.
        resume (bool, optional): continue runs from their checkpoints in ``checkpoint_dir``.
        device (str or torch.device, optional): where to train. (default: ``"cpu"``)
        negatives (str, optional): ``"pyg"`` (PyG's ``negative_sampling``, OGB's) or
            ``"device"`` (:class:`gnnkit.sampling.NegativeSampler`), for both
            implementations. (default: ``"pyg"``)
    """
    from gnnkit.recipes import get_recipe
    from gnnkit.train.link import LinkData, LinkTrainConfig, link_data, link_result, link_run

    harness.check_runs(runs)
    recipe = get_recipe("link", model)
    recipes = harness.implementations(recipe, compare)
    harness.check_resume(resume, checkpoint_dir)
    epochs = recipe.epochs if epochs is None else epochs
    device = harness.resolve_device(device)
    config = LinkTrainConfig(
        epochs=epochs, lr=recipe.lr, batch_size=batch_size, eval_every=eval_every,
        time_budget_s=time_budget_s, negatives=negatives,
    )  # fmt: skip
    data = (dataset_obj if isinstance(dataset_obj, LinkData) else link_data(dataset_obj)).to(device)

    def start(impl: str, recipe: Any, run_seed: int) -> Any:
        net = recipe.build(data.num_nodes, hidden_channels).to(device)
        path = harness.checkpoint_path(checkpoint_dir, f"{dataset}-{model}", impl, run_seed)
        run_config = dataclasses.replace(config, seed=run_seed)
        return link_run(net, data, run_config, checkpoint=path, resume=resume)

    def finish(impl: str, run_seed: int, run_result: Any) -> Any:
        return link_result(run_result, config.k)

    seeds = harness.seeds(seed, runs)
    records = harness.interleave_seeds(recipes, seeds, start, finish, time_budget_s=time_budget_s)
    options = {
        "runs": runs, "epochs": epochs, "eval_every": eval_every, "seed": seed,
        "batch_size": batch_size, "hidden_channels": hidden_channels, "lr": recipe.lr,
        "time_budget_s": time_budget_s, "compare": compare, "negatives": negatives,
    }  # fmt: skip
    return LinkBenchResult(
        dataset=dataset, model=model, epochs=epochs, seeds=seeds[: len(records["gnnkit"])],
        device=str(device), k=config.k, records=records, options=options,
    )  # fmt: skip


def plot_link_benchmark(result: LinkBenchResult, path: str | Path) -> Path:
    """Training loss per epoch and validation / test Hits@K per evaluation."""
    k = result.k
    panels: tuple[tuple[str, str], ...] = (
        ("loss", "training loss"),
        (f"valid_hits@{k}", f"validation Hits@{k}"),
        (f"test_hits@{k}", f"test Hits@{k}"),
    )

    def x(key: str, records: Sequence[Any]) -> list[int] | None:
        if key == "loss":
            return None
        return max(records, key=lambda r: len(r.history["eval_epoch"])).history["eval_epoch"]

    title = f"{result.model.upper()} on {result.dataset}: {len(result.seeds)} seed(s)"
    return plot_panels(result.records, panels, path, title=title, x=x)
