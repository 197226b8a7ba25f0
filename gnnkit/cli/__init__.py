"""The ``gnnkit`` command line: one entry point, one subcommand module per feature.

:data:`COMMANDS` lists every subcommand with its module and help line. ``gnnkit --help``
shows them without importing any of those modules; a module is imported only when its command
runs (:class:`gnnkit.cli.common.LazySubParsers`), and its ``register(subparsers)`` then adds
the command's parser and sets ``func``. User errors (:class:`gnnkit.errors.GnnkitError`)
print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from gnnkit import __version__
from gnnkit.cli.common import LazySubParsers
from gnnkit.errors import GnnkitError

#: ``(name, module, help line)`` of every subcommand, in the order ``gnnkit --help`` lists them.
#: The help line is the one the module's parser declares (a test checks that they agree).
COMMANDS = (
    (
        "demo",
        "gnnkit.cli.demo",
        "the newcomer's demo (what `make demo` runs): GCN and GAT on Cora against PyG",
    ),
    ("data", "gnnkit.cli.data", "list, fetch and verify datasets"),
    ("hops", "gnnkit.cli.hops", "adjacency matrix and hop distances of a labelled graph"),
    ("seq", "gnnkit.cli.seq", "RNN/LSTM/biLSTM/GRU on synthetic memory tasks"),
    ("text", "gnnkit.cli.text", "character-level LSTM: train, sample, tables"),
    (
        "citation",
        "gnnkit.cli.citation",
        "citation sentiment on the Athar corpus: does the citation graph help a BiLSTM read it? "
        "(RNN + GNN hybrid and baselines)",
    ),
    (
        "bench",
        "gnnkit.cli.bench",
        "benchmarks: gnnkit against PyG on the same data, seeds and harness",
    ),
)


def _importer(module: str):
    """``register(subparsers)`` of ``module``, imported when called."""

    def register(subparsers: argparse._SubParsersAction) -> None:
        importlib.import_module(module).register(subparsers)

    return register


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; a subcommand's own parser is built when the command is chosen."""
    parser = argparse.ArgumentParser(
        prog="gnnkit",
        description="gnnkit: graph-learning toolkit and benchmarks on PyTorch Geometric.",
    )
    parser.add_argument("--version", action="version", version=f"gnnkit {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="show debug messages")
    verbosity.add_argument(
        "-q", "--quiet", action="store_true", help="show only warnings and errors"
    )
    subparsers = parser.add_subparsers(
        action=LazySubParsers, dest="command", metavar="COMMAND", required=True
    )
    for name, module, help_line in COMMANDS:
        subparsers.add_lazy(name, help_line, _importer(module))
    return parser


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("gnnkit: %(message)s"))
    package_logger = logging.getLogger("gnnkit")
    package_logger.handlers[:] = [handler]
    package_logger.setLevel(level)
    package_logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 a failed check, 2 an error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except GnnkitError as exc:
        print(f"gnnkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gnnkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
