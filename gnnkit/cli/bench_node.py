"""``gnnkit bench node``: node classification, gnnkit's GCN/GAT against PyG's.

Registered lazily by :mod:`gnnkit.cli.bench` (its :data:`~gnnkit.cli.bench.BENCHMARKS` table):
this module is imported only when ``gnnkit bench node`` runs. It adds its own options to the ones
every benchmark shares, checks them before any data is loaded, and runs
:func:`~gnnkit.bench.node.run_node_benchmark`.

``--protocol paper`` trains each model under its paper's own protocol
(the recipe's :attr:`~gnnkit.recipes.Recipe.protocol`, :mod:`gnnkit.train.protocols`: GCN
stops by Kipf & Welling's window rule within 200 epochs, GAT by Veličković et al.'s patience
of 100 within 100,000), PyG's reference too; ``--mini-batch`` trains on sampled neighbourhoods
(:class:`gnnkit.train.minibatch.SamplingConfig`); ``--mini-batch --distributed``, in each of
the processes that ``torchrun --nproc_per_node=N`` starts, trains data-parallel: rank 0 loads
(and processes) the dataset before the others, and alone prints and writes files.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from typing import Any

from gnnkit.cli import positive_int
from gnnkit.cli.bench import (
    add_benchmark_parser,
    add_checkpoint_arguments,
    load_dataset_of_kind,
    run_benchmark,
    set_threads,
)
from gnnkit.errors import GnnkitError, InputError

__all__ = ["OPTIONS", "register_node", "run_node", "sampling_config"]


#: The options recorded in the ``--json`` payload, as parsed (``warmup`` resolved).
OPTIONS = (
    "dataset", "model", "runs", "epochs", "seed", "patience", "compare", "device", "threads",
    "warmup", "mini_batch", "fanouts", "batch_size", "accumulate", "distributed", "protocol",
    "cuda_graph",
)  # fmt: skip


def register_node(subparsers: argparse._SubParsersAction) -> None:
    from gnnkit.bench.harness import REFERENCES
    from gnnkit.bench.node import WARMUP_EPOCHS
    from gnnkit.data import DATASETS

    node_datasets = ", ".join(n for n, spec in DATASETS.items() if spec.kind == "node")
    parser = add_benchmark_parser(
        subparsers,
        "node",
        "Train a node classifier over several seeds and report test accuracy (at the best "
        "validation epoch), run and epoch time and peak memory; with --compare pyg (the model "
        "of PyG's example), pyg-tuned (PyG's layers in their fastest configuration) or "
        "pyg,pyg-tuned, the references train through the same harness, interleaved run by run.",
        dataset="cora",
        dataset_help=f"one of: {node_datasets} (default: cora)",
        runs=10,
        plot_help="draw loss and accuracy curves (PNG, PDF or SVG)",
        references=REFERENCES,
    )
    parser.add_argument(
        "--patience",
        type=positive_int,
        default=None,
        help="early-stopping patience in epochs (default: off)",
    )
    parser.add_argument(
        "--protocol",
        choices=["default", "paper"],
        default="default",
        help="default: --epochs epochs, test accuracy at the best validation accuracy; paper: "
        "the model's paper protocol (GCN: Kipf & Welling's stopping window of 10 within 200 "
        "epochs, final model; GAT: Velickovic et al.'s patience of 100 on validation loss and "
        "accuracy within 100,000 epochs, the model where both were best); --epochs caps it",
    )
    add_checkpoint_arguments(parser)
    parser.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=None,
        metavar="N",
        help="epochs between checkpoints in --checkpoint-dir (default: 10)",
    )
    full, mini = WARMUP_EPOCHS["full-batch"], WARMUP_EPOCHS["mini-batch"]
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        metavar="EPOCHS",
        help=f"untimed warm-up epochs per implementation (default: {full}; {mini} with "
        "--mini-batch)",
    )
    _add_sampling_arguments(parser)
    parser.add_argument(
        "--cuda-graph",
        action="store_true",
        help="gnnkit's runs capture their training step as a CUDA graph after 3 eager steps "
        "and replay it (--device cuda, full batch; the references train eagerly)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )
    parser.set_defaults(func=run_node)


def _add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
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


def _one_of_several_torchrun_processes() -> bool:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    from gnnkit.train.distributed import launched_by_torchrun

    return launched_by_torchrun()


def sampling_config(args: argparse.Namespace, dataset: str) -> Any:
    """The :class:`~gnnkit.train.minibatch.SamplingConfig` of ``--mini-batch``, or ``None``."""
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
        if _one_of_several_torchrun_processes():
            raise InputError(
                "this is one of several processes started by torchrun: add --mini-batch "
                "--distributed to train data-parallel, or run without torchrun"
            )
        return None
    if not args.distributed and _one_of_several_torchrun_processes():
        raise InputError(
            "this is one of several processes started by torchrun: add --distributed, or "
            "run without torchrun"
        )
    from gnnkit.recipes import get_recipe
    from gnnkit.train.minibatch import SamplingConfig, check_fanouts_fit

    recipe = get_recipe("node", args.model, dataset)
    sampling = SamplingConfig(
        fanouts=tuple(args.fanouts) if args.fanouts is not None else recipe.fanouts,
        batch_size=args.batch_size or 1024,
        accumulate=args.accumulate or 1,
    )
    model = recipe.build(1, 2)  # a throwaway copy counts its layers before any data is loaded
    check_fanouts_fit(model, sampling.fanouts, option="--fanouts", hint=recipe.fanouts)
    return sampling


def _paper_protocol(args: argparse.Namespace, sampling: Any) -> str | None:
    """The protocol of ``--protocol paper`` (a key of :data:`gnnkit.train.protocols.PROTOCOLS`),
    or ``None`` for the default; refuses the options a paper's protocol does not take."""
    if args.protocol != "paper":
        return None
    from gnnkit.recipes import NODE_RECIPES, get_recipe

    recipe = get_recipe("node", args.model, args.dataset)
    if recipe.protocol is None:
        covered = ", ".join(name for name, r in NODE_RECIPES.items() if r.protocol)
        raise InputError(
            f"--protocol paper: the {recipe.name} recipe has no paper protocol (models with one: "
            f"{covered})"
        )
    if sampling is not None:
        raise InputError("--protocol paper trains full-batch, as the papers do: drop --mini-batch")
    if args.patience is not None:
        raise InputError("--protocol paper stops by the paper's own rule: drop --patience")
    return recipe.protocol


def _load_on_every_rank(args: argparse.Namespace, world: Any) -> Any:
    """Rank 0 loads (and processes) the dataset first, then the others; errors reach all."""
    failure: str | None = None
    data = None
    if world.rank == 0:
        try:
            data = load_dataset_of_kind(args.dataset, args, "node")
        except GnnkitError as exc:
            failure = str(exc)
    failure = world.broadcast([failure])[0]
    if failure is not None:
        raise GnnkitError(failure)
    if world.rank != 0:
        data = load_dataset_of_kind(args.dataset, args, "node")
    return data


def run_node(args: argparse.Namespace) -> int:
    from gnnkit.bench.harness import check_resume
    from gnnkit.bench.node import default_warmup_epochs
    from gnnkit.recipes import get_recipe

    get_recipe("node", args.model)  # unknown names fail before any data is loaded
    if args.warmup is not None and args.warmup < 0:
        raise InputError(f"--warmup must be >= 0, got {args.warmup}")
    check_resume(args.resume, args.checkpoint_dir or None)
    if args.checkpoint_every is not None and args.checkpoint_dir is None:
        raise InputError(
            "--checkpoint-every needs --checkpoint-dir (the folder the checkpoints go to)"
        )
    sampling = sampling_config(args, args.dataset)
    _paper_protocol(args, sampling)  # refused before any data is loaded
    if args.cuda_graph and not str(args.device).startswith("cuda"):
        raise InputError(f"--cuda-graph captures CUDA work: add --device cuda (got {args.device})")
    if args.warmup is None:
        args.warmup = default_warmup_epochs(sampling)
    set_threads(args)
    if not args.distributed:
        return _run(args, load_dataset_of_kind(args.dataset, args, "node"), sampling)

    from gnnkit.train.distributed import init_distributed, local_device, shutdown_distributed

    world = init_distributed(device=args.device)
    try:
        args.device = str(local_device(args.device))
        data = _load_on_every_rank(args, world)
        if world.rank != 0:  # rank 0 alone prints and writes files
            args.json = args.plot = None
            args.progress = False
            with contextlib.redirect_stdout(io.StringIO()):
                return _run(args, data, sampling)
        return _run(args, data, sampling)
    finally:
        shutdown_distributed()


def _run(args: argparse.Namespace, data: Any, sampling: Any) -> int:
    from gnnkit.bench.node import run_node_benchmark
    from gnnkit.bench.node_result import plot_node_benchmark

    protocol = _paper_protocol(args, sampling)
    return run_benchmark(
        args,
        run_node_benchmark,
        plot_node_benchmark,
        data,
        json_options={**{key: getattr(args, key) for key in OPTIONS}, "paper_protocol": protocol},
        patience=args.patience,
        warmup_epochs=args.warmup,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every or 10,
        resume=args.resume,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
        sampling=sampling,
        distributed=args.distributed,
        protocol=protocol,
        cuda_graph=args.cuda_graph,
    )
