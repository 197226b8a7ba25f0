"""Write the API reference pages (``docs/api/*.rst``) from the packages' ``__all__``.

Run by ``conf.py`` before every build, so the reference always lists exactly what the library
exports: a new name in an ``__all__`` appears in the docs without anyone editing a page.

Each page documents one package: first the names its ``__init__`` exports, then, module by
module, the names a submodule exports that the package does not re-export. ``gnnkit`` itself
(the promised API) gets its own page.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing
from pathlib import Path

# The packages with a page, in the order of ARCHITECTURE.md's table (lowest first).
PACKAGES = [
    "gnnkit.errors",
    "gnnkit.utils",
    "gnnkit.ops",
    "gnnkit.nn",
    "gnnkit.graph",
    "gnnkit.transforms",
    "gnnkit.data",
    "gnnkit.sampling",
    "gnnkit.models",
    "gnnkit.recipes",
    "gnnkit.train",
    "gnnkit.distributed",
    "gnnkit.seq",
    "gnnkit.seq.charlm",
    "gnnkit.citation",
    "gnnkit.bench",
    "gnnkit.cli",
]


def exported(module_name: str) -> list[str]:
    """The names ``module_name`` lists in ``__all__`` (none when it has no ``__all__``)."""
    module = importlib.import_module(module_name)
    return [name for name in getattr(module, "__all__", []) if name != "__version__"]


def submodules(package: str) -> list[str]:
    """Public modules directly inside ``package`` (not ``_private`` ones, not subpackages
    that have a page of their own)."""
    module = importlib.import_module(package)
    if not hasattr(module, "__path__"):
        return []
    names = []
    for info in pkgutil.iter_modules(module.__path__):
        name = f"{package}.{info.name}"
        if info.name.startswith("_") or name in PACKAGES:
            continue
        names.append(name)
    return sorted(names)


def documented_names(package: str) -> dict[str, list[str]]:
    """Module -> the names its section documents, for the page of ``package``."""
    sections = {package: exported(package)}
    seen = set(sections[package])
    for sub in submodules(package):
        extra = [name for name in exported(sub) if name not in seen]
        seen.update(extra)
        sections[sub] = extra  # a module without new names still gets its docstring and target
    return sections


def _entry(module: str, name: str) -> list[str]:
    """The autodoc directive of one exported name, by what the object is."""
    obj = getattr(importlib.import_module(module), name)
    alias = typing.get_origin(obj) is not None  # ``Column = tuple[...]`` is callable, not a class
    if inspect.isclass(obj) and not alias:
        return [f".. autoclass:: {module}.{name}", "   :members:", ""]
    if callable(obj) and not alias:
        return [f".. autofunction:: {module}.{name}", ""]
    # A constant: its value is shown when it fits on a line (a format tag, a tuple of names),
    # not when it is a table (the dataset registry, the recipes).
    lines = [f".. autodata:: {module}.{name}"]
    if len(repr(obj)) > 70:
        lines.append("   :no-value:")
    return [*lines, ""]


def _section(module: str, names: list[str], *, heading: str, index: bool = True) -> str:
    lines = [heading, "-" * len(heading), "", f".. automodule:: {module}"]
    if not index:
        lines.append("   :no-index:")
    lines.append("")
    for name in names:
        lines += _entry(module, name)
    return "\n".join(lines) + "\n"


def package_page(package: str) -> str:
    title = f"``{package}``"
    text = [title, "=" * len(title), ""]
    sections = documented_names(package)
    for module, names in sections.items():
        if module == package:
            text.append(_section(module, names, heading="Exported by the package"))
        else:
            # A module named like a function its package exports (``gnnkit.graph.adjacency``)
            # would take the function's cross-reference target: it is shown, not indexed.
            clash = module.rsplit(".", 1)[1] in sections[package]
            text.append(_section(module, names, heading=f"``{module}``", index=not clash))
    return "\n".join(text)


def top_page() -> str:
    title = "``gnnkit``: the promised API"
    lines = [
        title,
        "=" * len(title),
        "",
        ".. automodule:: gnnkit",
        "   :no-index:",
        "",
        "Everything ``gnnkit/__init__.py`` lists in ``__all__``; other names are importable but",
        "not promised. Each is documented again, and linked to, on its package's page.",
        "",
        ".. autodata:: gnnkit.__version__",
        "",
    ]
    for name in exported("gnnkit"):
        entry = _entry("gnnkit", name)
        lines += [entry[0], "   :no-index:", *entry[1:]]
    return "\n".join(lines)


def index_page() -> str:
    lines = [
        "API reference",
        "=============",
        "",
        "Generated from the docstrings by ``docs/apigen.py``: every name a package lists in",
        "``__all__``. The table of packages and what each may import is in",
        "``ARCHITECTURE.md``.",
        "",
        ".. toctree::",
        "   :maxdepth: 1",
        "",
        "   gnnkit",
    ]
    lines += [f"   {package}" for package in PACKAGES]
    return "\n".join(lines) + "\n"


def write_pages(out_dir: Path) -> list[Path]:
    """Write every page into ``out_dir``; rewrite a file only when its text changed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pages = {"index": index_page(), "gnnkit": top_page()}
    pages.update({package: package_page(package) for package in PACKAGES})
    written = []
    for name, text in pages.items():
        path = out_dir / f"{name}.rst"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for page in write_pages(Path(__file__).parent / "api"):
        print(page)
