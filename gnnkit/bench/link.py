"""``gnnkit bench link``: link prediction on ogbl-ddi, gnnkit's model side by side with PyG's.

The protocol is OGB's ddi example (:mod:`gnnkit.train.link`): batches of 64 x 1024
training edges with as many negatives from PyG's ``negative_sampling``, Adam 0.005, 200
epochs, Hits@20 from ``ogb.linkproppred.Evaluator`` every ``--eval-every`` epochs; the
reported test Hits@20 is the one at the evaluation with the best validation Hits@20.

With ``--compare pyg`` both implementations train the same seeds through the same loop,
stepped in turn epoch by epoch (gnnkit first on even epochs, PyG first on odd ones), so both
see the same machine load; each keeps its own random state. Epoch time is the training part of
an epoch (evaluation is timed separately); the speed ratio is PyG's median epoch time over
gnnkit's.

Long runs: ``--checkpoint-dir`` writes a checkpoint after every evaluation (atomically),
``--time-budget MIN`` stops cleanly (with a checkpoint and a partial result) before an epoch
that would end past the budget, and ``--resume`` continues from the checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gnnkit.bench import common
from gnnkit.cli.common import data_options, format_table, positive_int
from gnnkit.errors import InputError
from gnnkit.train.link import DEFAULT_NEGATIVES, NEGATIVES

__all__ = ["LinkBenchResult", "register", "run", "run_link_benchmark"]

logger = logging.getLogger(__name__)

COLORS = common.COLORS  # the figures' colours (kept importable from here)


@dataclass
class LinkBenchResult:
    """Everything ``gnnkit bench link`` measured; :meth:`to_json` is the ``--json`` payload."""

    dataset: str
    model: str
    epochs: int
    seeds: list[int]
    device: str
    k: int
    records: dict[str, list[Any]]  # impl -> LinkTrainResult per seed
    options: dict[str, Any]

    @property
    def compared(self) -> bool:
        return "pyg" in self.records

    @property
    def metric(self) -> str:
        return f"hits@{self.k}"

    def summary(self, impl: str) -> dict[str, Any]:
        """The JSON block of one implementation (the four required keys first)."""
        records = self.records[impl]
        tests = [r.test_hits for r in records]
        epoch_times = [t for r in records for t in r.epoch_times]
        eval_times = [t for r in records for t in r.eval_times]
        test_mean, test_std = common.mean_std(tests)
        block: dict[str, Any] = {
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
        return block

    @property
    def speedup(self) -> float | None:
        return common.speed_ratio(self, "epoch_s_median")

    def to_json(self, env: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "dataset": self.dataset,
            "model": self.model,
            "metric": self.metric,
            **common.summaries(self),
        }
        payload["speedup"] = self.speedup
        payload["epochs"] = self.epochs
        payload["seeds"] = self.seeds
        payload["options"] = self.options
        payload["env"] = env
        return payload

    def report(self) -> str:
        rows = []
        for impl in self.records:
            s = self.summary(impl)
            done = ", ".join(
                f"{n}" + ("" if f == "epochs" else f" ({f})")
                for n, f in zip(s["epochs_run"], s["finished"], strict=True)
            )
            rows.append(
                (
                    impl,
                    f"{s['test_mean']:.4f} +- {s['test_std']:.4f}",
                    f"{s['valid_mean']:.4f}",
                    _seconds(s["epoch_s_median"]),
                    _seconds(s["eval_s_median"]),
                    _seconds(sum(s["wall_s"])),
                    done,
                )
            )
        header = (
            "implementation",
            f"test Hits@{self.k}",
            "valid",
            "epoch time",
            "eval time",
            "wall time",
            "epochs",
        )
        title = (
            f"{self.model.upper()} on {self.dataset}: {len(self.seeds)} run(s), "
            f"seeds {','.join(map(str, self.seeds))}, {self.device}, "
            f"{torch.get_num_threads()} thread(s)"
        )
        if self.options.get("negatives", DEFAULT_NEGATIVES) != DEFAULT_NEGATIVES:
            title += f", negatives drawn by {self.options['negatives']}"
        lines = [title, format_table(header, rows, "lrrrrrl")]
        if self.speedup is not None:
            lines.append(
                f"speedup: gnnkit's training epoch is {self.speedup:.2f}x faster than PyG's"
            )
        partial = [r for rs in self.records.values() for r in rs if r.finished != "epochs"]
        if partial:
            lines.append(
                "partial: stopped by the time budget; continue with --resume and the same "
                "--checkpoint-dir"
            )
        return "\n".join(lines)


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
    """Train ``model`` (and PyG's ``pyg-ddi-<model>`` with ``compare="pyg"``) on a link dataset.

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
        time_budget_s (float, optional): stop every run cleanly before an epoch round that
            would end past this many seconds. (default: none)
        checkpoint_dir (str or Path, optional): write each run's checkpoints here.
        resume (bool, optional): continue runs from their checkpoints in ``checkpoint_dir``.
        device (str or torch.device, optional): where to train. (default: ``"cpu"``)
        negatives (str, optional): ``"pyg"`` (PyG's ``negative_sampling``, OGB's) or
            ``"device"`` (:class:`gnnkit.sampling.NegativeSampler`), for both
            implementations. (default: ``"pyg"``)
    """
    from gnnkit.recipes import get_recipe
    from gnnkit.train.engine import interleave, seed_everything
    from gnnkit.train.link import LinkData, LinkTrainConfig, link_data, link_result, link_run

    common.check_runs(runs)
    spec = get_recipe("link", model)
    specs = common.implementations(spec, compare)
    common.check_resume(resume, checkpoint_dir)
    epochs = spec.epochs if epochs is None else epochs
    device = common.resolve_device(device)
    config = LinkTrainConfig(
        epochs=epochs,
        lr=spec.lr,
        batch_size=batch_size,
        eval_every=eval_every,
        time_budget_s=time_budget_s,
        negatives=negatives,
    )
    data = dataset_obj if isinstance(dataset_obj, LinkData) else link_data(dataset_obj)
    data = data.to(device)

    seeds = [seed + r for r in range(runs)]
    records: dict[str, list[Any]] = {impl: [] for impl in specs}
    began = time.perf_counter()
    for run_seed in seeds:
        trainers = {}
        for impl, s in specs.items():
            seed_everything(run_seed)
            net = s.build(data.num_nodes, hidden_channels).to(device)
            path = None
            if checkpoint_dir is not None:
                path = Path(checkpoint_dir) / f"{dataset}-{model}-{impl}-seed{run_seed}.pt"
            trainers[impl] = link_run(
                net,
                data,
                dataclasses.replace(config, seed=run_seed),
                checkpoint=path,
                resume=resume,
            )
        left = None if time_budget_s is None else time_budget_s - (time.perf_counter() - began)
        finished = interleave(trainers, time_budget_s=left)
        for impl, trainer in trainers.items():
            records[impl].append(link_result(trainer.result(), config.k))
        if finished:
            logger.info("time budget reached; the runs stopped with a checkpoint")
            break
    return LinkBenchResult(
        dataset=dataset,
        model=model,
        epochs=epochs,
        seeds=seeds[: len(records["gnnkit"])],
        device=str(device),
        k=config.k,
        records=records,
        options={
            "runs": runs,
            "epochs": epochs,
            "eval_every": eval_every,
            "seed": seed,
            "batch_size": batch_size,
            "hidden_channels": hidden_channels,
            "lr": spec.lr,
            "time_budget_s": time_budget_s,
            "compare": compare,
            "negatives": negatives,
        },
    )


def plot_link_benchmark(result: LinkBenchResult, path: str | Path) -> Path:
    """Training loss per epoch and validation / test Hits@K per evaluation."""
    k = result.k
    panels = (("loss", "training loss"), (f"valid_hits@{k}", f"validation Hits@{k}"))
    panels += ((f"test_hits@{k}", f"test Hits@{k}"),)

    def x(key: str, records: list[Any]) -> list[int] | None:
        if key == "loss":
            return None
        return max(records, key=lambda r: len(r.history["eval_epoch"])).history["eval_epoch"]

    title = f"{result.model.upper()} on {result.dataset}: {len(result.seeds)} seed(s)"
    return common.plot_panels(result.records, panels, path, title=title, x=x)


# --------------------------------------------------------------------------- CLI


def register(subparsers: argparse._SubParsersAction) -> None:
    from gnnkit.recipes import LINK_RECIPES

    parser = subparsers.add_parser(
        "link",
        parents=[data_options()],
        help="link prediction (ogbl-ddi): gnnkit's GCN/GAT against PyG's, Hits@20",
        description=(
            "Train OGB's ddi link predictor (learned node embeddings, two graph layers, an MLP "
            "on the Hadamard product, sampled negatives) and report test Hits@20 at the best "
            "validation evaluation and the training epoch time; with --compare pyg, PyG's "
            "reference trains through the same loop, epoch by epoch in turn."
        ),
    )
    parser.add_argument(
        "--dataset", default="ogbl-ddi", help="an OGB link dataset: ogbl-ddi (default)"
    )
    common.add_model_arguments(
        parser, LINK_RECIPES, runs=1, epochs_help="epochs per run (default: 200, OGB's)"
    )
    parser.add_argument(
        "--eval-every",
        type=positive_int,
        default=5,
        metavar="K",
        help="evaluate every K epochs and after the last (default: 5, OGB's)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the first run; run r uses SEED + r"
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=64 * 1024,
        help="training edges per step (default: 65536, OGB's)",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="MIN",
        help="stop cleanly (checkpoint, partial result) before passing MIN minutes",
    )
    parser.add_argument(
        "--negatives",
        choices=NEGATIVES,
        default=DEFAULT_NEGATIVES,
        help="who draws the training negatives: pyg, PyG's negative_sampling (OGB's; it draws "
        "on the host), or device, gnnkit's NegativeSampler on the training device (same "
        "distribution, far faster on a GPU; another random stream) (default: pyg)",
    )
    common.add_output_arguments(parser, plot_help="draw loss and Hits@K curves")
    parser.add_argument("--checkpoint-dir", metavar="DIR", help="write each run's checkpoints here")
    parser.add_argument(
        "--resume", action="store_true", help="continue interrupted runs from --checkpoint-dir"
    )
    common.add_device_argument(parser)
    common.add_threads_argument(parser, default_help="torch's")
    parser.set_defaults(func=run)


def load_link_dataset(name: str, args: argparse.Namespace) -> Any:
    """Load a registered link dataset; other kinds are refused with the list of link datasets."""
    return common.load_dataset_of_kind(name, args, "link")


def run(args: argparse.Namespace) -> int:
    from gnnkit.recipes import get_recipe
    from gnnkit.utils.env import environment

    get_recipe("link", args.model)  # unknown names fail before any data is loaded
    if args.time_budget is not None and not args.time_budget > 0:
        raise InputError(
            f"--time-budget must be a positive number of minutes, got {args.time_budget}"
        )
    common.check_resume(args.resume, args.checkpoint_dir or None)
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = load_link_dataset(args.dataset, args)
    result = run_link_benchmark(
        dataset,
        dataset=args.dataset,
        model=args.model,
        compare=args.compare,
        runs=args.runs,
        epochs=args.epochs,
        eval_every=args.eval_every,
        seed=args.seed,
        batch_size=args.batch_size,
        time_budget_s=None if args.time_budget is None else 60.0 * args.time_budget,
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
        device=args.device,
        negatives=args.negatives,
    )
    return common.report_and_write(
        args, result, lambda: result.to_json(environment(args.device)), plot_link_benchmark
    )
