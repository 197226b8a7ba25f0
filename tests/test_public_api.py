"""The promised API of ``gnnkit/__init__.py``: every name resolves to the object its package
defines, on first use, and ``import gnnkit`` alone imports neither torch nor PyG."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest
from test_architecture import ALLOWED, LIBRARY

import gnnkit

#: Printed by a fresh interpreter: what ``import gnnkit`` (and then one public name) loaded.
_PROBE = """
import json, sys
import gnnkit
first = sorted(sys.modules)
gnnkit.GCNConv
print(json.dumps([first, sorted(sys.modules)]))
"""


def _type_checking_imports() -> dict[str, tuple[str, str]]:
    """``name -> (module, attribute)`` of the imports under ``if TYPE_CHECKING:`` in
    ``gnnkit/__init__.py``: what type checkers and editors believe each name is."""
    tree = ast.parse((LIBRARY / "__init__.py").read_text())
    (block,) = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
    ]
    names = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names:
            names[alias.asname or alias.name] = (node.module, alias.name)
    return names


def test_import_gnnkit_loads_neither_torch_nor_pyg_until_a_name_is_used():
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True,
        env={**os.environ, "GNNKIT_OFFLINE": "1"},
    )  # fmt: skip
    first, after = json.loads(done.stdout.splitlines()[-1])
    assert not [m for m in first if m.split(".")[0] in ("torch", "torch_geometric", "numpy")]
    assert [m for m in first if m.startswith("gnnkit")] == ["gnnkit", "gnnkit.errors"]
    assert {"torch", "torch_geometric", "gnnkit.nn"} <= set(after)


@pytest.mark.parametrize("name", sorted(set(gnnkit.__all__) - {"__version__"}))
def test_each_public_name_is_its_packages_object(name):
    lazy = _type_checking_imports()
    value = getattr(gnnkit, name)
    if name in lazy:
        module, attribute = lazy[name]
        assert gnnkit._LAZY[name] == (module, attribute)
        assert value is getattr(sys.modules[module], attribute)
    else:  # imported eagerly: the exceptions, which import nothing heavy
        assert value is getattr(gnnkit.errors, name)
    assert name in dir(gnnkit)


def test_the_lazy_table_and_the_type_checking_imports_agree():
    assert _type_checking_imports() == gnnkit._LAZY
    assert set(gnnkit._LAZY) < set(gnnkit.__all__)


def test_star_import_gives_every_public_name():
    namespace: dict[str, object] = {}
    exec("from gnnkit import *", namespace)
    assert set(gnnkit.__all__) <= set(namespace)
    assert namespace["GATConv"] is gnnkit.nn.GATConv


@pytest.mark.parametrize("name", sorted(gnnkit._SUBMODULES))
def test_subpackages_are_reached_as_attributes(name):
    assert getattr(gnnkit, name) is __import__(f"gnnkit.{name}", fromlist=["_"])
    assert name in ALLOWED["gnnkit"], f"ARCHITECTURE.md does not let gnnkit import {name}"
    assert name in dir(gnnkit)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match=r"module 'gnnkit' has no attribute 'GCNconv'"):
        gnnkit.GCNconv  # noqa: B018
    assert not hasattr(gnnkit, "seq_models")
