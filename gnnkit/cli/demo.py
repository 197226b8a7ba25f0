"""``gnnkit demo``: what ``make demo`` runs for a newcomer.

Node classification on Cora, the task GCN and GAT were introduced on (Kipf & Welling, arXiv
1609.02907; Velickovic et al., arXiv 1710.10903): gnnkit's GCN and GAT trained side by side
with PyG's reference implementations (the models of PyG's own examples) through the same
harness, with the same seeds, interleaved run by run, ending with one comparison table. It
is ``gnnkit bench node --compare pyg`` for both models, with a few runs each (about two
minutes on a 2-core CPU).

If Cora cannot be obtained (no data root, mirror or network) the demo says how to get it and
runs the same pipeline on the embedded karate club, clearly labelled.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from gnnkit.cli import add_command, add_threads, data_kwargs, data_options, positive_int
from gnnkit.data import load
from gnnkit.errors import DatasetError
from gnnkit.utils.table import format_table

logger = logging.getLogger(__name__)

MODELS = ("gcn", "gat")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "demo",
        "Train gnnkit's GCN and GAT on Cora next to PyG's reference models (same harness, same "
        "seeds) and compare accuracy and speed.",
        parents=[data_options()],
    )
    parser.add_argument("--runs", type=positive_int, default=3, help="seeds per model (default: 3)")
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="epochs per run (default: the papers' 200)",
    )
    add_threads(
        parser,
        "torch CPU threads (default: 1; on a busy machine more threads make Cora's small "
        "kernels wait for cores, up to 10x slower)",
        default=1,
    )
    parser.set_defaults(func=run)


def load_demo_data(args: argparse.Namespace) -> tuple[str, Any, str]:
    """Cora, or the embedded karate club (clearly labelled) when Cora cannot be obtained."""
    try:
        return "cora", load("cora", **data_kwargs(args)), ""
    except DatasetError as exc:
        print(f"Cora is not available here:\n{exc}\n")
        print(
            "To get Cora: allow network access (gnnkit downloads it on first use), or point "
            "GNNKIT_MIRROR (or --mirror) at a folder holding planetoid/Cora/raw/, then run "
            "the demo again.\n"
        )
        print(
            "Running the same pipeline on the embedded karate club instead (34 nodes, 4 "
            "classes; accuracies and timings are NOT Cora's).\n"
        )
        return "karate", load("karate"), " (FALLBACK: karate club, not Cora)"


def run(args: argparse.Namespace) -> int:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> int:
    from gnnkit.bench.harness import mean_std_text, speed_text
    from gnnkit.bench.node import run_node_benchmark

    name, data, label = load_demo_data(args)
    print(
        f"{name}{label}: {data.num_nodes:,} nodes, {data.edge_index.size(1):,} directed edges, "
        f"{data.num_classes} classes; {int(data.train_mask.sum())} training nodes.\n"
        "gnnkit's GCN and GAT and PyG's reference models train with "
        f"the same harness and seeds ({args.runs} run(s) each); test accuracy is read at the "
        "epoch with the best validation accuracy.\n"
    )
    progress = sys.stderr.isatty()
    results = []
    for model in MODELS:
        result = run_node_benchmark(
            data,
            dataset=name,
            model=model,
            compare="pyg",
            runs=args.runs,
            epochs=args.epochs,
            progress=progress,
        )
        result.label = label
        print(result.report() + "\n")
        results.append(result)

    rows = []
    for result in results:
        speedup = result.speedup
        for impl in result.records:
            s = result.summary(impl)
            rows.append(
                (
                    result.model.upper(),
                    impl,
                    mean_std_text(
                        100 * s["test_acc_mean"], 100 * s["test_acc_std"], args.runs, ".1f", " %"
                    ),
                    f"{s['run_time_s_median']:.2f} s",
                    f"{s['epoch_ms_median']:.2f} ms",
                    speed_text(speedup) if impl == "gnnkit" and speedup else "",
                )
            )
    print(f"Summary on {name}{label}: {args.runs} run(s) per model and implementation")
    print(
        format_table(
            ("model", "implementation", "test accuracy", "run time", "epoch time", "speedup"),
            rows,
            "llrrrr",
        )
    )
    print(
        "\nPapers (Cora, test accuracy): GCN 81.5 %, GAT 83.0 +- 0.7 %. More runs, plots and "
        "JSON: gnnkit bench node --dataset cora --model gat --runs 20 --compare pyg "
        "--plot gat.png --json gat.json"
    )
    return 0
