"""What the result collectors (``ogbg_table.py``, ``ddi_table.py``) share."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def collection_parser(doc: str | None, command: str, stem: str) -> argparse.ArgumentParser:
    """Positional run files (``gnnkit bench COMMAND --json``), ``--json`` and ``--markdown``.

    The collection defaults to ``benchmarks/results/STEM.json`` and ``STEM.md``.
    """
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="*", type=Path, help=f"bench {command} --json files")
    parser.add_argument("--json", type=Path, default=RESULTS / f"{stem}.json")
    parser.add_argument("--markdown", type=Path, default=RESULTS / f"{stem}.md")
    return parser


def read_collection(path: Path) -> dict[str, Any]:
    """The collection in ``path`` (empty when the file does not exist yet)."""
    return json.loads(path.read_text()) if path.exists() else {}
