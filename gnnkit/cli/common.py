"""Helpers shared by the ``gnnkit`` subcommands (argument groups, tables, JSON output).

:func:`format_table` is :func:`gnnkit.utils.table.format_table`, re-exported for them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gnnkit.errors import InputError
from gnnkit.utils.io import atomic_write_json
from gnnkit.utils.table import format_table

__all__ = [
    "LazySubParsers",
    "data_kwargs",
    "data_options",
    "format_table",
    "positive_int",
    "write_json",
]


class LazySubParsers(argparse._SubParsersAction):
    """Subcommands listed by name and help line, whose parsers are built only when chosen.

    ``add_lazy(name, help, register)`` lists ``name`` in the parent's ``--help`` at the cost
    of a string. When the command line chooses it, ``register(subparsers)`` adds the real
    parser (importing what that command needs, and nothing that the others need), and parsing
    goes on there: ``gnnkit COMMAND --help`` shows the command's full help.

    Use it as ``parser.add_subparsers(action=LazySubParsers, ...)``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._registers: dict[str, Callable[[argparse._SubParsersAction], None]] = {}

    def add_lazy(
        self, name: str, help: str, register: Callable[[argparse._SubParsersAction], None]
    ) -> None:
        """List ``name`` with ``help``; ``register(self)`` adds its parser once it is chosen."""
        self.add_parser(name, help=help, add_help=False)  # a placeholder, for --help and choices
        self._registers[name] = register

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        register = self._registers.pop(values[0], None)
        if register is not None:
            # Drop the placeholder (argparse refuses a second parser of the same name).
            del self._name_parser_map[values[0]]
            self._choices_actions[:] = [a for a in self._choices_actions if a.dest != values[0]]
            register(self)
        super().__call__(parser, namespace, values, option_string)


def data_options() -> argparse.ArgumentParser:
    """A parent parser with ``--data-root``, ``--mirror`` and ``--offline``."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data-root",
        metavar="DIR",
        default=None,
        help="writable folder for datasets (default: $GNNKIT_DATA or ./datasets)",
    )
    group.add_argument(
        "--mirror",
        metavar="DIR",
        default=None,
        help="read-only local mirror laid out like the data root (default: $GNNKIT_MIRROR)",
    )
    group.add_argument(
        "--offline",
        action="store_true",
        help="never try the upstream download (also: GNNKIT_OFFLINE=1)",
    )
    return parser


def data_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``root``, ``mirror`` and ``download`` for :func:`gnnkit.data.load` from parsed options."""
    return {
        "root": args.data_root,
        "mirror": args.mirror,
        "download": False if args.offline else None,
    }


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (>= 1), got {value}")
    return value


def write_json(path: str | Path, payload: Any) -> Path:
    """Write a result atomically; a folder or unwritable path becomes a clear error."""
    target = Path(path)
    if target.is_dir():
        raise InputError(
            f"--json {path} is a folder; give a file name such as {target / 'result.json'}"
        )
    try:
        return atomic_write_json(target, payload)
    except OSError as exc:
        raise InputError(f"cannot write --json {path}: {exc.strerror or exc}") from exc
