"""Helpers shared by the ``gnnkit`` subcommands (argument groups, tables, JSON output)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gnnkit.errors import InputError
from gnnkit.utils.io import atomic_write_json

__all__ = ["data_options", "format_table", "positive_int", "write_json"]


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


def format_table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    align: str | None = None,
    *,
    rule: bool = True,
) -> str:
    """A plain-text table; ``align`` has one ``l`` or ``r`` per column (default: all left).

    ``rule`` draws a line of dashes under the header.
    """
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    align = align or "l" * len(header)
    lines = []
    for n, row in enumerate(cells):
        parts = [
            c.rjust(w) if a == "r" else c.ljust(w)
            for c, w, a in zip(row, widths, align, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0 and rule:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


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
