"""The package layout of ARCHITECTURE.md, enforced: who may import whom, and how big things get.

Every ``import`` in the library counts, including the ones inside functions (a lazy import is
still a dependency). The rules are the table in ARCHITECTURE.md; a new dependency between
packages is a design decision, made there first.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "gnnkit"

#: What the benchmark harness may import: every package listed before ``seq`` in the table.
_BELOW_BENCH = {
    "errors",
    "utils",
    "ops",
    "nn",
    "graph",
    "data",
    "sampling",
    "models",
    "recipes",
    "train",
}

#: package -> the gnnkit packages it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "utils": {"errors"},
    "ops": {"errors", "utils"},
    "nn": {"errors", "utils", "ops"},
    "graph": {"errors", "utils", "ops"},
    "data": {"errors", "utils"},
    "sampling": {"errors", "utils", "ops"},
    "models": {"errors", "utils", "ops", "nn", "graph"},
    "recipes": {"errors", "graph", "models"},
    "train": {"errors", "utils", "ops", "sampling"},
    "seq": {"errors", "utils", "data", "train"},
    "citation": {"errors", "utils", "ops", "nn", "graph", "data", "recipes", "train"},
    "bench": _BELOW_BENCH,
    "distributed": {"errors", "utils", "ops", "train"},
    "transforms": {"errors"},
    "cli": {"gnnkit", "seq", "citation", "bench", "distributed", *_BELOW_BENCH},
    "gnnkit": {
        "errors",
        "utils",
        "ops",
        "nn",
        "graph",
        "data",
        "recipes",
        "models",
        "train",
        "transforms",
    },
    "__main__": {"cli"},
}

#: Outside the library: nothing in it may import these.
OUTSIDE = ("benchmarks", "tests", "examples", "conftest", "ogb_format", "conv_checks")


def _package(path: Path) -> str:
    parts = path.relative_to(LIBRARY).with_suffix("").parts
    return "gnnkit" if parts == ("__init__",) else parts[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, imported gnnkit package or outside module)`` of every import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "gnnkit":  # from gnnkit import ops, __version__
                names = [
                    f"gnnkit.{alias.name}"
                    if (LIBRARY / alias.name).is_dir() or (LIBRARY / f"{alias.name}.py").exists()
                    else "gnnkit"
                    for alias in node.names
                ]
        else:
            continue
        for name in names:
            top, _, rest = name.partition(".")
            if top == "gnnkit":
                found.append((node.lineno, rest.partition(".")[0] or "gnnkit"))
            elif top in OUTSIDE or top.startswith("test_"):
                found.append((node.lineno, f"!{top}"))
    return found


def library_files() -> list[Path]:
    return sorted(LIBRARY.rglob("*.py"))


def violations() -> list[str]:
    found = []
    for path in library_files():
        package = _package(path)
        allowed = ALLOWED.get(package)
        if allowed is None:
            found.append(f"{path}: package {package!r} is not in ARCHITECTURE.md's table")
            continue
        for line, imported in _imports(path):
            if imported.startswith("!"):
                found.append(f"{path}:{line} imports {imported[1:]} (outside the library)")
            elif imported != package and imported not in allowed:
                found.append(f"{path}:{line}: {package} may not import {imported}")
    return found


def test_every_package_imports_only_what_architecture_md_allows():
    assert violations() == []


def test_the_rules_catch_a_forbidden_import(tmp_path, monkeypatch):
    fake = tmp_path / "gnnkit"
    (fake / "nn").mkdir(parents=True)
    (fake / "nn" / "layer.py").write_text(
        "def f():\n    from gnnkit.train import fit\n    import benchmarks.scale\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "LIBRARY", fake)
    assert violations() == [
        f"{fake / 'nn' / 'layer.py'}:2: nn may not import train",
        f"{fake / 'nn' / 'layer.py'}:3 imports benchmarks (outside the library)",
    ]


def test_the_table_has_no_cycles():
    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in ALLOWED.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert [p for p in ALLOWED if reaches(p, p, {p})] == []


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(LIBRARY)))
def test_no_library_file_over_500_lines_or_function_over_80(path):
    source = path.read_text()
    lines = source.count("\n")
    assert lines <= 500, f"{path} has {lines} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > 80
    ]
    assert long == []
