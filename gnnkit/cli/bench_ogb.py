"""``gnnkit bench graph|link``: the OGB graph-property and link-prediction benchmarks.

The options every benchmark shares and the node benchmark are in :mod:`gnnkit.cli.bench`.
"""

from __future__ import annotations

import argparse
from typing import Any

from gnnkit.cli import data_options, positive_int
from gnnkit.cli.bench import (
    add_checkpoint_arguments,
    add_machine_arguments,
    add_model_arguments,
    add_output_arguments,
    help_line,
    load_dataset_of_kind,
    report_and_write,
    set_threads,
)
from gnnkit.errors import InputError

__all__ = ["register_graph", "register_link", "run_graph", "run_link"]


# --------------------------------------------------------------------------- bench graph


def register_graph(subparsers: argparse._SubParsersAction) -> None:
    from gnnkit.recipes import GRAPH_RECIPES

    parser = subparsers.add_parser(
        "graph",
        parents=[data_options()],
        help=help_line("graph"),
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
    add_model_arguments(
        parser, GRAPH_RECIPES, runs=10, epochs_help="epochs per run (default: 100, OGB's)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the first run; run r uses SEED + r"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=32, help="graphs per batch (default: 32)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    add_output_arguments(parser, plot_help="draw loss and score curves")
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.set_defaults(func=run_graph)


def load_graph_dataset(name: str, args: argparse.Namespace) -> Any:
    """Load a registered graph dataset; other kinds are refused with the list of graph datasets."""
    return load_dataset_of_kind(name, args, "graph")


def run_graph(args: argparse.Namespace) -> int:
    from gnnkit.bench.graph import plot_graph_benchmark, run_graph_benchmark
    from gnnkit.bench.harness import resolve_device
    from gnnkit.recipes import get_recipe
    from gnnkit.utils.env import environment

    get_recipe("graph", args.model)  # unknown names and devices fail before any data is loaded
    device = resolve_device(args.device)
    set_threads(args)
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
    return report_and_write(
        args, result, lambda: result.to_json(environment(device)), plot_graph_benchmark
    )


# --------------------------------------------------------------------------- bench link


def register_link(subparsers: argparse._SubParsersAction) -> None:
    from gnnkit.recipes import LINK_RECIPES
    from gnnkit.train.link import DEFAULT_NEGATIVES, NEGATIVES

    parser = subparsers.add_parser(
        "link",
        parents=[data_options()],
        help=help_line("link"),
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
    add_model_arguments(
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
    add_output_arguments(parser, plot_help="draw loss and Hits@K curves")
    add_checkpoint_arguments(parser)
    add_machine_arguments(parser, threads_help="torch's")
    parser.set_defaults(func=run_link)


def load_link_dataset(name: str, args: argparse.Namespace) -> Any:
    """Load a registered link dataset; other kinds are refused with the list of link datasets."""
    return load_dataset_of_kind(name, args, "link")


def run_link(args: argparse.Namespace) -> int:
    from gnnkit.bench.harness import check_resume
    from gnnkit.bench.link import plot_link_benchmark, run_link_benchmark
    from gnnkit.recipes import get_recipe
    from gnnkit.utils.env import environment

    get_recipe("link", args.model)  # unknown names fail before any data is loaded
    if args.time_budget is not None and not args.time_budget > 0:
        raise InputError(
            f"--time-budget must be a positive number of minutes, got {args.time_budget}"
        )
    check_resume(args.resume, args.checkpoint_dir or None)
    set_threads(args)
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
    return report_and_write(
        args, result, lambda: result.to_json(environment(args.device)), plot_link_benchmark
    )
