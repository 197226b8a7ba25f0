"""``--compare`` of ``gnnkit bench``: the references a benchmark trains beside gnnkit.

One reference, a comma list (``--compare pyg,pyg-tuned``) or the option repeated (``--compare
pyg --compare pyg-tuned``); :class:`CompareAction` keeps them as one comma list without
repeats, the form :func:`gnnkit.bench.harness.parse_compare` takes.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["CompareAction", "add_compare"]

#: How ``--help`` describes each reference.
DESCRIPTIONS = {
    "pyg": "pyg (the model of PyG's example)",
    "pyg-tuned": "pyg-tuned (PyG's layers in their fastest configuration)",
}


def add_compare(parser: argparse.ArgumentParser, references: tuple[str, ...]) -> None:
    """``--compare REF``: one of ``references`` (:data:`gnnkit.bench.harness.REFERENCES`),
    a comma list or the option repeated; ``args.compare`` is ``None`` or a comma list."""
    parser.add_argument(
        "--compare",
        action=CompareAction,
        choices=references,
        metavar="REF",
        default=None,
        help=f"also train a reference model: {', '.join(DESCRIPTIONS[r] for r in references)}; "
        "a comma list or the option repeated trains several (default: none)",
    )


class CompareAction(argparse.Action):
    """The ``--compare`` action: each value (one name or a comma list) joins the names given
    before, once each, as one comma list (``args.compare``: ``"pyg,pyg-tuned"``). A name
    outside ``choices`` is refused by argparse as an ``invalid choice``."""

    def __init__(self, *args: Any, choices: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.references = tuple(choices)  # checked here: argparse would test the whole list

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        names = (
            []
            if getattr(namespace, self.dest) is None
            else getattr(namespace, self.dest).split(",")
        )
        for name in (part.strip() for part in str(values).split(",")):
            if name not in self.references:
                choices = ", ".join(map(repr, self.references))
                raise argparse.ArgumentError(
                    self, f"invalid choice: {name!r} (choose from {choices})"
                )
            if name not in names:
                names.append(name)
        setattr(namespace, self.dest, ",".join(names))
