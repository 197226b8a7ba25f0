"""``gnnkit bench node``: node classification, gnnkit's model side by side with PyG's.

Both implementations go through the same harness (:func:`gnnkit.train.fit`) with the same
seeds, in the same process, interleaved run by run (even runs train gnnkit first, odd runs PyG
first, so neither always runs on a warmer machine). Before the timed runs each implementation
trains a few untimed warm-up epochs.

What the table reports, per implementation:

- test accuracy: mean +- sample standard deviation over the runs of the test accuracy at the
  epoch with the best validation accuracy (see :mod:`gnnkit.train.loop`);
- run time: the median over runs of one whole run's time (every epoch's training step plus
  its evaluation of all splits; data preparation, checkpoint writes excluded);
- epoch time: the median over all epochs of all runs;
- peak memory: the largest rise of the process's resident memory during a run (model
  construction and training; the prepared inputs, built once beforehand, are not counted and
  are reported separately as ``inputs_mb`` in the JSON).

The speed ratio is PyG's median run time divided by gnnkit's.

Two other modes train through other harnesses. Everything else stays the same: seeds,
interleaving, the table and the JSON, which gains ``"mode"``.

- **Mini-batch** (``--mini-batch``): :func:`gnnkit.train.minibatch.fit_minibatch`. It trains
  on sampled neighbourhoods (fan-outs ``--fanouts``, ``--batch-size`` seeds per shard,
  ``--accumulate`` shards per step) and evaluates on the whole graph, for graphs whose
  training does not fit in memory.
- **Multi-process** (``--mini-batch --distributed``, started by
  ``torchrun --nproc_per_node=N``): :func:`gnnkit.train.distributed.fit_distributed`.
  ``DistributedDataParallel`` runs over gloo on CPU and nccl on CUDA. Rank 0 prints and
  writes the results; its peak memory is the one reported.

On ogbn-arxiv, ``--model gcn`` is OGB's arxiv recipe (:data:`gnnkit.recipes.DATASET_RECIPES`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gnnkit.bench import common
from gnnkit.cli.common import data_options, format_table, positive_int
from gnnkit.errors import GnnkitError, InputError

__all__ = ["NodeBenchResult", "RunRecord", "register", "run", "run_node_benchmark"]

logger = logging.getLogger(__name__)

COLORS = common.COLORS  # the figures' colours (kept importable from here)

IMPLEMENTATIONS = ("gnnkit", "pyg")
_MB = 1024.0 * 1024.0


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
class NodeBenchResult:
    """Everything ``gnnkit bench node`` measured; :meth:`to_json` is the ``--json`` payload."""

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

    @property
    def compared(self) -> bool:
        return "pyg" in self.records

    def summary(self, impl: str) -> dict[str, Any]:
        """The JSON block of one implementation (the five required keys first)."""
        records = self.records[impl]
        accs = [r.test_acc for r in records]
        epoch_times = [t for r in records for t in r.epoch_times_s]
        peaks = [r.peak_rss_mb for r in records if r.peak_rss_mb is not None]
        device_peaks = [r.peak_device_mb for r in records if r.peak_device_mb is not None]
        test_acc_mean, test_acc_std = common.mean_std(accs)
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

    @property
    def speedup(self) -> float | None:
        return common.speed_ratio(self, "run_time_s_median")

    def to_json(self, env: dict[str, Any], options: dict[str, Any] | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "dataset": self.dataset,
            "model": self.model,
            "runs": self.runs,
            "epochs": self.epochs,
            **common.summaries(self),
        }
        payload["speedup"] = self.speedup
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
            rows.append(
                (
                    impl,
                    f"{100 * s['test_acc_mean']:.1f} +- {100 * s['test_acc_std']:.1f} %",
                    _seconds(s["run_time_s_median"]),
                    f"{s['epoch_ms_median']:.2f} ms",
                    peak,
                )
            )
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


def _peak_mb(usage: Any) -> float | None:
    """The rise of resident memory in MiB; ``None`` where only the process-lifetime peak exists."""
    if usage is None or not usage.method.startswith("VmHWM"):
        return None
    return usage.increase_bytes / _MB


def _tensor_mb(t: torch.Tensor) -> float:
    if t.layout == torch.sparse_csr:
        parts = (t.crow_indices(), t.col_indices(), t.values())
    elif t.layout == torch.sparse_coo:
        t = t.coalesce()
        parts = (t.indices(), t.values())
    else:
        parts = (t,)
    return sum(p.numel() * p.element_size() for p in parts) / _MB


def _describe_features(x: torch.Tensor) -> str:
    if x.layout == torch.strided:
        return f"dense {tuple(x.shape)}"
    nnz = x._nnz() if x.layout == torch.sparse_coo else x.values().numel()
    layout = "csr" if x.layout == torch.sparse_csr else "coo"
    return f"sparse {layout} {tuple(x.shape)}, {nnz} non-zeros"


def run_node_benchmark(
    data: Any,
    *,
    dataset: str,
    model: str,
    compare: str | None = None,
    runs: int = 10,
    epochs: int | None = None,
    seed: int = 0,
    patience: int | None = None,
    device: str | torch.device = "cpu",
    warmup_epochs: int = 5,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 10,
    resume: bool = False,
    progress: bool = False,
    sampling: Any = None,
    distributed: bool = False,
) -> NodeBenchResult:
    """Train ``model`` (and PyG's reference with ``compare="pyg"``) ``runs`` times on ``data``.

    Run ``r`` uses seed ``seed + r`` for both implementations. See the module docstring for
    what is measured.

    Args:
        data (torch_geometric.data.Data): a node dataset (:func:`gnnkit.data.load`).
        dataset (str): its name (labels and checkpoint names).
        model (str): a key of :data:`gnnkit.recipes.NODE_RECIPES`.
        compare (str, optional): ``"pyg"`` also trains the reference ``pyg-<model>``.
        runs (int, optional): seeds per implementation. (default: ``10``)
        epochs (int, optional): epochs per run. (default: the model's, 200)
        seed (int, optional): seed of the first run. (default: ``0``)
        patience (int, optional): early-stopping patience. (default: none)
        device (str or torch.device, optional): where to train. (default: ``"cpu"``)
        warmup_epochs (int, optional): untimed epochs per implementation before the runs.
            (default: ``5``)
        checkpoint_dir (str or Path, optional): write each run's checkpoints here.
        checkpoint_every (int, optional): epochs between checkpoints. (default: ``10``)
        resume (bool, optional): continue runs from their checkpoints in ``checkpoint_dir``.
        progress (bool, optional): show a progress bar over the runs. (default: ``False``)
        sampling (SamplingConfig, optional): train on sampled mini-batches
            (:func:`gnnkit.train.minibatch.fit_minibatch`) instead of the whole graph.
            (default: full batch)
        distributed (bool, optional): train data-parallel over the initialised
            ``torch.distributed`` process group (mini-batch only; every rank calls this).
            (default: ``False``)
    """
    from gnnkit.recipes import get_recipe
    from gnnkit.train import TrainConfig, fit, round_order, seed_everything
    from gnnkit.utils.memory import release_free_memory
    from gnnkit.utils.timing import PeakRSS

    common.check_runs(runs)
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise InputError(f"warmup_epochs must be an integer >= 0, got {warmup_epochs!r}")
    spec = get_recipe("node", model, dataset)
    common.check_compare(compare)
    if distributed and sampling is None:
        raise InputError("--distributed trains on mini-batches: add --mini-batch")
    specs = common.implementations(spec, compare)
    common.check_resume(resume, checkpoint_dir)
    epochs = spec.epochs if epochs is None else epochs
    device = common.resolve_device(device)

    inputs = {impl: _prepare_inputs(data, s, device) for impl, s in specs.items()}
    num_features = inputs["gnnkit"].num_features
    num_classes = inputs["gnnkit"].num_classes

    def config(s, run_seed: int, n_epochs: int) -> TrainConfig:
        return TrainConfig(
            epochs=n_epochs,
            lr=s.lr,
            weight_decay=s.weight_decay,
            patience=patience,
            seed=run_seed,
            restore_best=False,
            checkpoint_every=checkpoint_every,
        )

    train = _trainer(sampling, distributed, fit)
    if warmup_epochs:
        for impl, s in specs.items():
            seed_everything(seed)
            train(
                s.build(num_features, num_classes).to(device),
                inputs[impl],
                config(s, seed, warmup_epochs),
            )

    seeds = [seed + r for r in range(runs)]
    records: dict[str, list[RunRecord]] = {impl: [] for impl in specs}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=runs * len(specs), desc=f"{model} on {dataset}", unit="run", leave=False)
    try:
        for r, run_seed in enumerate(seeds):
            for impl in round_order(specs, r):
                s = specs[impl]
                path = None
                if checkpoint_dir is not None:
                    mode = "" if sampling is None else "-minibatch"
                    name = f"{dataset}-{model}-{impl}-seed{run_seed}{mode}.pt"
                    path = Path(checkpoint_dir) / name
                seed_everything(run_seed)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                release_free_memory()
                with PeakRSS() as peak:
                    net = s.build(num_features, num_classes).to(device)
                    result = train(
                        net,
                        inputs[impl],
                        config(s, run_seed, epochs),
                        checkpoint=path,
                        resume=resume,
                    )
                device_peak = None
                if device.type == "cuda":
                    device_peak = torch.cuda.max_memory_allocated(device) / _MB
                del net
                records[impl].append(
                    RunRecord(
                        seed=run_seed,
                        test_acc=result.test_acc,
                        val_acc=result.val_acc,
                        best_epoch=result.best_epoch,
                        epochs_run=result.epochs_run,
                        run_time_s=result.run_time,
                        epoch_times_s=result.epoch_times,
                        peak_rss_mb=_peak_mb(peak.usage),
                        history=result.history,
                        resumed_from=result.resumed_from,
                        peak_device_mb=device_peak,
                    )
                )
                logger.debug(
                    "run %d/%d seed %d %s: test %.2f %% (epoch %d), %.3f s",
                    r + 1, runs, run_seed, impl, 100 * result.test_acc, result.best_epoch, result.run_time,
                )  # fmt: skip
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return NodeBenchResult(
        dataset=dataset,
        model=model,
        epochs=epochs,
        seeds=seeds,
        device=str(device),
        records=records,
        inputs_mb={impl: _tensor_mb(inp.x) for impl, inp in inputs.items()},
        features={impl: _describe_features(inp.x) for impl, inp in inputs.items()},
        label=_mode_label(sampling, distributed),
        recipe=spec.name,
        mode="full-batch" if sampling is None else "mini-batch",
        sampling=None if sampling is None else _sampling_json(sampling),
        world_size=_world_size() if distributed else 1,
    )


def _prepare_inputs(data: Any, spec: Any, device: torch.device) -> Any:
    """``node_inputs`` for one recipe, with its graph step (e.g. symmetrised edges) applied."""
    import dataclasses

    from gnnkit.train import node_inputs

    prepared = node_inputs(data, features=spec.features, device=device)
    if spec.graph is None:
        return prepared
    edge_index = spec.graph(prepared.edge_index, prepared.num_nodes)
    return dataclasses.replace(prepared, edge_index=edge_index)


def _trainer(sampling: Any, distributed: bool, fit: Any) -> Any:
    """``train(model, inputs, config, checkpoint=None, resume=False)`` for the chosen mode."""
    if sampling is None:
        return fit
    if distributed:
        from gnnkit.train.distributed import fit_distributed

        def train_distributed(model, inputs, config, checkpoint=None, resume=False):
            return fit_distributed(
                model, inputs, config, sampling, checkpoint=checkpoint, resume=resume
            )

        return train_distributed
    from gnnkit.train.minibatch import fit_minibatch

    def train_minibatch(model, inputs, config, checkpoint=None, resume=False):
        return fit_minibatch(model, inputs, config, sampling, checkpoint=checkpoint, resume=resume)

    return train_minibatch


def _sampling_json(sampling: Any) -> dict[str, Any]:
    return {
        "fanouts": list(sampling.fanouts),
        "batch_size": sampling.batch_size,
        "accumulate": sampling.accumulate,
        "replace": sampling.replace,
    }


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else 1


def _mode_label(sampling: Any, distributed: bool) -> str:
    if sampling is None:
        return ""
    fanouts = ",".join(map(str, sampling.fanouts))
    parts = [f"mini-batch, fan-outs {fanouts}, {sampling.batch_size} seeds per shard"]
    if sampling.accumulate > 1:
        parts.append(f"{sampling.accumulate} shards per step")
    if distributed:
        parts.append(f"{_world_size()} processes")
    return f" ({', '.join(parts)})"


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
    return common.plot_panels(result.records, panels, path, title=title, window=window)


# --------------------------------------------------------------------------- CLI


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "node",
        parents=[data_options()],
        help="node classification (Cora...): gnnkit's GCN/GAT against PyG's",
        description=(
            "Train a node classifier over several seeds and report test accuracy (at the best "
            "validation epoch), run and epoch time and peak memory; with --compare pyg, PyG's "
            "reference model trains through the same harness, interleaved run by run."
        ),
    )
    from gnnkit.data import DATASETS
    from gnnkit.recipes import NODE_RECIPES

    node_datasets = ", ".join(n for n, spec in DATASETS.items() if spec.kind == "node")
    parser.add_argument(
        "--dataset", default="cora", help=f"one of: {node_datasets} (default: cora)"
    )
    common.add_model_arguments(
        parser, NODE_RECIPES, runs=10, epochs_help="epochs per run (default: the paper's, 200)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the first run; run r uses SEED + r (default: 0)",
    )
    parser.add_argument(
        "--patience",
        type=positive_int,
        default=None,
        help="early-stopping patience in epochs (default: off)",
    )
    common.add_output_arguments(parser, plot_help="draw loss and accuracy curves (PNG, PDF or SVG)")
    parser.add_argument("--checkpoint-dir", metavar="DIR", help="write each run's checkpoints here")
    parser.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=10,
        metavar="N",
        help="epochs between checkpoints (default: 10)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue interrupted runs from --checkpoint-dir"
    )
    common.add_device_argument(parser)
    common.add_threads_argument(parser, default_help="torch's choice")
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        metavar="EPOCHS",
        help="untimed warm-up epochs per implementation (default: 5; 1 with --mini-batch)",
    )
    sampled = parser.add_argument_group(
        "mini-batch training (graphs whose full-batch training does not fit in memory)"
    )
    sampled.add_argument(
        "--mini-batch",
        action="store_true",
        help="train on sampled neighbourhoods of batches of training nodes; evaluate on the "
        "whole graph",
    )
    sampled.add_argument(
        "--fanouts",
        type=int,
        nargs="+",
        metavar="K",
        help="neighbours sampled per node at each hop, one per layer; -1 keeps all "
        "(default: the recipe's: 15 10 5 for ogbn-arxiv, 10 10 for the Cora models)",
    )
    sampled.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="N",
        help="training nodes per shard, i.e. per process and micro-batch (default: 1024)",
    )
    sampled.add_argument(
        "--accumulate",
        type=positive_int,
        metavar="N",
        help="shards whose gradients add up before each optimiser step (default: 1)",
    )
    sampled.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel over the processes that `torchrun --nproc_per_node=N` started "
        "(DistributedDataParallel: gloo on CPU, nccl on CUDA)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )
    parser.set_defaults(func=run)


def load_node_dataset(name: str, args: argparse.Namespace) -> Any:
    """Load a registered node dataset; other kinds are refused with the list of node datasets."""
    return common.load_dataset_of_kind(name, args, "node")


def sampling_config(args: argparse.Namespace, dataset: str) -> Any:
    """The :class:`~gnnkit.train.minibatch.SamplingConfig` of ``--mini-batch``, or ``None``."""
    from gnnkit.recipes import get_recipe
    from gnnkit.train.distributed import launched_by_torchrun
    from gnnkit.train.minibatch import SamplingConfig

    given = [
        flag
        for flag, value in (
            ("--fanouts", args.fanouts),
            ("--batch-size", args.batch_size),
            ("--accumulate", args.accumulate),
            ("--distributed", args.distributed or None),
        )
        if value is not None
    ]
    if not args.mini_batch:
        if given:
            raise InputError(f"{given[0]} is a mini-batch option: add --mini-batch")
        if launched_by_torchrun() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise InputError(
                "this is one of several processes started by torchrun: add --mini-batch "
                "--distributed to train data-parallel, or run without torchrun"
            )
        return None
    if (
        not args.distributed
        and launched_by_torchrun()
        and int(os.environ.get("WORLD_SIZE", "1")) > 1
    ):
        raise InputError(
            "this is one of several processes started by torchrun: add --distributed, or "
            "run without torchrun"
        )
    spec = get_recipe("node", args.model, dataset)
    return SamplingConfig(
        fanouts=tuple(args.fanouts) if args.fanouts is not None else spec.fanouts,
        batch_size=args.batch_size or 1024,
        accumulate=args.accumulate or 1,
    )


def _load_on_every_rank(args: argparse.Namespace, world: Any) -> Any:
    """Rank 0 loads (and processes) the dataset first, then the others; errors reach all."""
    failure: str | None = None
    data = None
    if world.rank == 0:
        try:
            data = load_node_dataset(args.dataset, args)
        except GnnkitError as exc:
            failure = str(exc)
    failure = world.broadcast([failure])[0]
    if failure is not None:
        raise GnnkitError(failure)
    if world.rank != 0:
        data = load_node_dataset(args.dataset, args)
    return data


def run(args: argparse.Namespace) -> int:
    from gnnkit.recipes import get_recipe
    from gnnkit.utils.env import environment

    get_recipe("node", args.model)  # unknown names fail before any data is loaded
    if args.warmup is None:
        args.warmup = 1 if args.mini_batch else 5
    if args.warmup < 0:
        raise InputError(f"--warmup must be >= 0, got {args.warmup}")
    common.check_resume(args.resume, args.checkpoint_dir or None)
    sampling = sampling_config(args, args.dataset)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.distributed:
        return _run(args, load_node_dataset(args.dataset, args), sampling, environment)

    from gnnkit.train.distributed import init_distributed, local_device, shutdown_distributed

    world = init_distributed(device=args.device)
    try:
        args.device = str(local_device(args.device))
        data = _load_on_every_rank(args, world)
        if world.rank != 0:  # rank 0 alone prints and writes files
            args.json = args.plot = None
            args.progress = False
            with contextlib.redirect_stdout(io.StringIO()):
                return _run(args, data, sampling, environment)
        return _run(args, data, sampling, environment)
    finally:
        shutdown_distributed()


def _run(args: argparse.Namespace, data: Any, sampling: Any, environment: Any) -> int:
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    result = run_node_benchmark(
        data,
        dataset=args.dataset,
        model=args.model,
        compare=args.compare,
        runs=args.runs,
        epochs=args.epochs,
        seed=args.seed,
        patience=args.patience,
        device=args.device,
        warmup_epochs=args.warmup,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        progress=progress,
        sampling=sampling,
        distributed=args.distributed,
    )
    options = {
        key: getattr(args, key)
        for key in (
            "dataset",
            "model",
            "runs",
            "epochs",
            "seed",
            "patience",
            "compare",
            "device",
            "threads",
            "warmup",
            "mini_batch",
            "fanouts",
            "batch_size",
            "accumulate",
            "distributed",
        )
    }
    return common.report_and_write(
        args, result, lambda: result.to_json(environment(args.device), options), plot_node_benchmark
    )
