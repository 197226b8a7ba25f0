"""Plain-text tables, for the benchmark reports and the command line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["format_table"]


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
