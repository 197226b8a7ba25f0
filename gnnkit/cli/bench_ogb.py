"""``gnnkit bench graph|link``: the OGB graph-property and link-prediction benchmarks.

The options every benchmark shares are in :mod:`gnnkit.cli.bench`; the node benchmark is
:mod:`gnnkit.cli.bench_node`.
"""

from __future__ import annotations

import argparse
from typing import Any

from gnnkit.cli import positive_int
from gnnkit.cli.bench import (
    add_benchmark_parser,
    add_checkpoint_arguments,
    load_dataset_of_kind,
    run_benchmark,
    set_threads,
)
from gnnkit.errors import InputError

__all__ = ["register_graph", "register_link", "run_graph", "run_link"]


# --------------------------------------------------------------------------- bench graph


def register_graph(subparsers: argparse._SubParsersAction) -> None:
    parser = add_benchmark_parser(
        subparsers,
        "graph",
        "Train OGB's molecule GNN (5 layers, 300 hidden, mean pooling) over several seeds and "
        "report the OGB metric on the test graphs at the best validation epoch and the epoch "
        "time; with --compare pyg (and/or pyg-tuned), PyG's layers in the same architecture "
        "train through the same loop, epoch by epoch in turn.",
        dataset="ogbg-molbace",
        dataset_help="any OGB molecule dataset (ogbg-mol*; gnnkit data list shows them): "
        "ogbg-molbace (default), ogbg-molesol, ogbg-molfreesolv, ogbg-moltox21...",
        runs=10,
        plot_help="draw loss and score curves",
        references=("pyg", "pyg-tuned"),
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=32, help="graphs per batch (default: 32)"
    )
    parser.set_defaults(func=run_graph)


def load_graph_dataset(name: str, args: argparse.Namespace) -> Any:
    """Load a registered graph dataset; other kinds are refused with the list of graph datasets."""
    return load_dataset_of_kind(name, args, "graph")


def run_graph(args: argparse.Namespace) -> int:
    from gnnkit.bench.graph import plot_graph_benchmark, run_graph_benchmark
    from gnnkit.bench.harness import resolve_device
    from gnnkit.recipes import get_recipe

    get_recipe("graph", args.model)  # unknown names and devices fail before any data is loaded
    resolve_device(args.device)
    set_threads(args)
    data = load_graph_dataset(args.dataset, args)
    return run_benchmark(
        args, run_graph_benchmark, plot_graph_benchmark, data, batch_size=args.batch_size
    )


# --------------------------------------------------------------------------- bench link


def register_link(subparsers: argparse._SubParsersAction) -> None:
    from gnnkit.train.link import DEFAULT_NEGATIVES, NEGATIVES

    parser = add_benchmark_parser(
        subparsers,
        "link",
        "Train OGB's ddi link predictor (learned node embeddings, two graph layers, an MLP on "
        "the Hadamard product, sampled negatives) and report test Hits@20 at the best "
        "validation evaluation and the training epoch time; with --compare pyg, PyG's "
        "reference trains through the same loop, epoch by epoch in turn.",
        dataset="ogbl-ddi",
        dataset_help="an OGB link dataset: ogbl-ddi (default)",
        runs=1,
        plot_help="draw loss and Hits@K curves",
    )
    parser.add_argument(
        "--eval-every",
        type=positive_int,
        default=5,
        metavar="K",
        help="evaluate every K epochs and after the last (default: 5, OGB's)",
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
    add_checkpoint_arguments(parser)
    parser.set_defaults(func=run_link)


def load_link_dataset(name: str, args: argparse.Namespace) -> Any:
    """Load a registered link dataset; other kinds are refused with the list of link datasets."""
    return load_dataset_of_kind(name, args, "link")


def run_link(args: argparse.Namespace) -> int:
    from gnnkit.bench.harness import check_resume
    from gnnkit.bench.link import plot_link_benchmark, run_link_benchmark
    from gnnkit.recipes import get_recipe

    get_recipe("link", args.model)  # unknown names fail before any data is loaded
    budget = args.time_budget
    if budget is not None and not budget > 0:
        raise InputError(f"--time-budget must be a positive number of minutes, got {budget}")
    check_resume(args.resume, args.checkpoint_dir or None)
    set_threads(args)
    data = load_link_dataset(args.dataset, args)
    return run_benchmark(
        args,
        run_link_benchmark,
        plot_link_benchmark,
        data,
        eval_every=args.eval_every,
        batch_size=args.batch_size,
        time_budget_s=None if budget is None else 60.0 * budget,
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
        negatives=args.negatives,
    )
