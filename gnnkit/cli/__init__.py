"""The ``gnnkit`` command line: one entry point, one subcommand module per feature.

Every subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func``. User errors (:class:`gnnkit.errors.GnnkitError`) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from gnnkit import __version__
from gnnkit.errors import GnnkitError

#: Subcommand modules, in the order ``gnnkit --help`` lists them.
COMMAND_MODULES = (
    "gnnkit.cli.demo",
    "gnnkit.cli.data",
    "gnnkit.cli.hops",
    "gnnkit.cli.seq",
    "gnnkit.cli.text",
    "gnnkit.cli.citation",
    "gnnkit.bench",
)


def build_parser() -> argparse.ArgumentParser:
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
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
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
