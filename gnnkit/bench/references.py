"""Find benchmark reference models (PyG's) through the ``gnnkit.references`` entry points.

The PyG reference models live in the source checkout's ``benchmarks/`` package, not in the
library; a source install declares them in ``pyproject.toml``::

    [project.entry-points."gnnkit.references"]
    pyg-gcn = "benchmarks.references:PYG_GCN"
    pyg-gat = "benchmarks.references:PYG_GAT"

Each entry point names a :class:`gnnkit.models.ModelSpec`.
"""

from __future__ import annotations

import importlib.metadata

from gnnkit.errors import InputError
from gnnkit.models.registry import ModelSpec

__all__ = ["ENTRY_POINT_GROUP", "available_references", "entry_points", "get_reference"]

#: The entry-point group that reference models are registered under.
ENTRY_POINT_GROUP = "gnnkit.references"

_INSTALL_HINT = (
    "the PyG reference models ship with gnnkit's source checkout (benchmarks/references.py), "
    "not with the library; install gnnkit from a source checkout with `pip install -e .` "
    "(or `make install`) to register them"
)


def entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """The registered references by name (a seam that tests replace)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_references() -> list[str]:
    """Names of the registered references, sorted."""
    return sorted(entry_points())


def get_reference(name: str) -> ModelSpec:
    """Load the reference model registered as ``name`` (``"pyg-gcn"``, ``"pyg-gat"``...).

    Raises:
        InputError: no such reference is registered (the message says how to install them),
            it cannot be imported, or it is not a :class:`~gnnkit.models.ModelSpec`.
    """
    found = entry_points()
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise InputError(
            f"no reference model {name!r} is registered (registered: {known}); {_INSTALL_HINT}"
        )
    try:
        spec = found[name].load()
    except ImportError as exc:
        raise InputError(
            f"reference model {name!r} could not be imported ({exc}); {_INSTALL_HINT}"
        ) from exc
    if not isinstance(spec, ModelSpec):
        raise InputError(
            f"reference {name!r} ({found[name].value}) is a {type(spec).__name__}, not a "
            "gnnkit.models.ModelSpec"
        )
    return spec
