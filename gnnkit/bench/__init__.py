"""``gnnkit bench``: gnnkit side by side with PyG, one sub-subcommand per task.

Each module in :data:`BENCH_MODULES` exposes ``register(subparsers)``, which adds its parser
under ``gnnkit bench`` and sets ``func`` (the same protocol as :data:`gnnkit.cli.COMMAND_MODULES`).
"""

from __future__ import annotations

import argparse
import importlib

__all__ = ["BENCH_MODULES", "register"]

#: Benchmark modules, in the order ``gnnkit bench --help`` lists them.
BENCH_MODULES = ("gnnkit.bench.node", "gnnkit.bench.graph", "gnnkit.bench.link")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmarks: gnnkit against PyG on the same data, seeds and harness",
        description="Benchmarks: gnnkit against PyG on the same data, seeds and harness.",
    )
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for module in BENCH_MODULES:
        importlib.import_module(module).register(benchmarks)
