"""Sphinx configuration of gnnkit's documentation site (``make docs``).

Sphinx with PyData's theme: gnnkit's docstrings are reStructuredText in PyG's style
(``.. math::`` blocks, ``:math:`` roles, ``Args:`` / ``Shapes:`` sections), which Sphinx's
autodoc and napoleon render as they are. The guide pages are Markdown (MyST), so they read the
same on GitHub. The build is strict: ``make docs`` passes ``-W --keep-going -n -E``, so a warning
or a broken cross-reference fails it.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
import sys
from importlib.metadata import version as installed_version
from pathlib import Path

from sphinx.util import logging as sphinx_logging

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))

import apigen  # noqa: E402  (docs/apigen.py, found through the path above)

apigen.write_pages(DOCS / "api")
_logger = sphinx_logging.getLogger("gnnkit.docs")

project = "gnnkit"
author = "gnnkit developers"
copyright = "2026, gnnkit developers"
release = installed_version("gnnkit")
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "README.md"]
root_doc = "index"

# gnnkit's docstrings write sizes as |V|, |E|, |V_out| (STYLE.md's ``Shapes:`` sections). In
# reStructuredText those are substitution references: each one the library uses is defined here
# to print as written (math and literals are not affected).
_SIZES = sorted(
    {
        match
        for path in (DOCS.parent / "gnnkit").rglob("*.py")
        for match in re.findall(r"(?<![|\w`])\|([A-Za-z][\w']*)\|(?![|\w`])", path.read_text())
    }
)
rst_prolog = "\n".join(f".. |{name}| replace:: \\|{name}\\|" for name in _SIZES) + "\n"

# -- MyST (the Markdown pages) ------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# -- autodoc / napoleon (the API reference) ------------------------------------------------------
autodoc_default_options = {
    "undoc-members": True,
    "show-inheritance": True,
    "member-order": "bysource",
    "no-value": True,
}
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_class_signature = "separated"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False
# The library imports torch and PyG; the reference is built from the installed packages.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = [("Shapes", "params_style"), ("Notes", "notes_style")]
# Dataclass fields are documented by autodoc; an ``Attributes:`` section renders as a field list
# beside them instead of declaring every field a second time.
napoleon_use_ivar = True

# Nitpicky mode (``-n``) reports every unresolved reference. Types from other projects are not
# linked (the build runs offline, without intersphinx), so references into them are expected.
_EXTERNAL = (
    r"(torch|torch_geometric|numpy|np|scipy|sklearn|matplotlib|ogb|argparse|pathlib|typing"
    r"|collections|dataclasses|enum|abc|os|io|json|logging|contextlib|threading|multiprocessing"
    r"|concurrent|types|pickle|builtins|random|datetime|re|functools|itertools|subprocess|tqdm|_io)(\..*)?"
)
nitpick_ignore_regex = [
    (r"py:.*", _EXTERNAL),
    # Builtins and typing names as annotations render them.
    (r"py:.*", r"(Tensor|Parameter|Module|Data|Batch|Dataset|Generator|Path|Figure|Axes)"),
    (r"py:.*", r"(Any|Callable|Iterator|Iterable|Sequence|Mapping|Literal|Optional|Union)"),
    (r"py:.*", r"(ClassVar|Self|TypeVar|NamedTuple|Protocol|IO|TextIO|BinaryIO)"),
    (r"py:.*", r"(T|_T|optional|callable|iterable|sequence|array-like|dtype|device)"),
    (r"py:.*", r"(int|float|str|bytes|bool|list|dict|tuple|set|frozenset|object|type|None)"),
    (r"py:.*", r"(np\.ndarray|ndarray|LongTensor|SparseTensor|OptTensor|Adj|PairTensor|EdgeIndex)"),
    (r"py:.*", r"(PathLike|Other|open|print|len|repr|isinstance)"),
    # Private names are not documented, by design; a public signature may still mention one.
    (r"py:.*", r"(.*\.)?_\w+(\.\w+)?"),
    # Napoleon reads the words before a colon in ``Returns:`` / ``Attributes:`` as a type:
    # plain words and phrases ("array", "node datasets") are prose, not references.
    (r"py:class", r"[a-z][\w-]*|.* .*"),
]


# -- Known problems in docstrings of modules other engineers own --------------------------------
# Found by this strict build when it was set up. Each is the owner's to fix in the docstring;
# then delete its line here. Anything not listed still fails the build.
nitpick_ignore = [
    ("py:class", "gnnkit.data.store.VerifyReport"),  # data/store.py: returned, not exported
    ("py:func", "sddmm_kernel"),  # ops/backend.py: no such function
    ("py:func", "gnnkit.ops.hadamard_mlp"),  # ops/random.py: gnnkit.ops.hadamard.hadamard_mlp
    ("py:meth", "forward"),  # seq/classifiers.py: SequenceClassifier.forward has no docstring
    ("py:attr", "TrainResult.report_rule_batch"),  # seq/memory.py: a field, not an attribute
    ("py:data", "Callback"),  # train/engine.py: a private alias
    ("py:func", "graph_result"),  # train/graph.py: not exported
]
# (docstring, message) pairs of reStructuredText errors: ``*`` read as emphasis in ops/scatter.py.
KNOWN_DOCUTILS = {
    ("gnnkit.ops.scatter.scatter_sum", "Inline emphasis start-string without end-string."),
    ("gnnkit.ops.scatter.segment_sum", "Inline emphasis start-string without end-string."),
}


class _KnownDocutilsProblems(logging.Filter):
    """Drop the docutils warnings listed in ``KNOWN_DOCUTILS`` (and nothing else)."""

    def filter(self, record: logging.LogRecord) -> bool:
        location = str(getattr(record, "location", "") or "")
        message = record.getMessage()
        return not any(
            f"docstring of {where}:" in location and message.startswith(text)
            for where, text in KNOWN_DOCUTILS
        )


# -- HTML ----------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"gnnkit {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
}
html_show_sourcelink = False


# Three classes are named ``TrainConfig`` (train, seq.memory, seq.charlm) and two ``Run``: a
# short name in a signature links to the first match and Sphinx warns that it had a choice.
# ARCHITECTURE.md's future work renames them; until then the choice is not a broken reference.
suppress_warnings = ["ref.python"]


def _lookup(path: str):
    """The object a dotted path names (``gnnkit.nn.functional.dropout``), or None.

    Attributes win over submodules, as in Python: ``gnnkit.graph.adjacency`` is the function
    the package exports, not the module of the same name.
    """
    parts = path.split(".")
    try:
        obj = importlib.import_module(parts[0])
    except ImportError:
        return None
    for depth, attr in enumerate(parts[1:], start=2):
        if hasattr(obj, attr):
            obj = getattr(obj, attr)
            continue
        try:
            obj = importlib.import_module(".".join(parts[:depth]))
        except ImportError:
            return None
    return obj


def _resolve_alias(app, env, node, contnode):
    """Resolve a reference to an object documented under another of its names.

    autodoc documents each object where a package exports it (``gnnkit.nn.dropout``), while
    a docstring may name it where it is defined (``gnnkit.nn.functional.dropout``), by its
    short name from another module of the package (``summarize`` inside ``gnnkit.seq.sweep``),
    or at the top level (``gnnkit.adjacency``). The reference is looked up in Python from the
    docstring's own module and class, and linked to the documented name of the *same object*;
    when there is none, it stays unresolved and nitpicky mode reports it. A name that cannot be
    looked up (an annotation) is linked when exactly one documented object carries it.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    module, cls = node.get("py:module"), node.get("py:class")
    # Scopes to look in, innermost first: the class and module the docstring was written in
    # (autodoc names it in the node's source), then where the page documents it.
    scopes = []
    written_in = re.search(r"docstring of ([\w.]+)", node.source or "")
    if written_in:
        parts = written_in.group(1).split(".")
        scopes += [".".join(parts[:cut]) for cut in range(len(parts), 0, -1)]
    scopes += [f"{module}.{cls}" if module and cls else None, module]
    paths = [f"{scope}.{target}" for scope in scopes if scope] + [target]
    sentinel = object()
    obj = sentinel
    for path in paths:
        if path.startswith("gnnkit"):
            found = _lookup(path)
            if found is not None:
                obj = found
                break
    domain = env.get_domain("py")
    objtypes = set(domain.objtypes_for_role(node["reftype"]) or [])
    if node["reftype"] == "class":
        objtypes.add("data")  # a type alias in an annotation (``Column = tuple[...]``)
    short = target.rsplit(".", 1)[-1]
    candidates = [
        name
        for name, entry in domain.objects.items()
        if entry.objtype in objtypes and name.rsplit(".", 1)[-1] == short and not entry.aliased
    ]
    if obj is sentinel:
        # Not reachable from the docstring's scope (an annotation in a signature has none):
        # link only when gnnkit documents exactly one object of that name and kind.
        objects = {id(_lookup(name)) for name in candidates}
        names = sorted(candidates, key=lambda name: (name.count("."), name))
        if len(objects) != 1:
            return None
    else:
        names = sorted(
            (name for name in candidates if _lookup(name) is obj),
            key=lambda name: (name.count("."), name),
        )
    if not names:
        return None
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], names[0], node, contnode
    )


def _drop_inherited_docstring(app, what, name, obj, options, lines):
    """A constant has no docstring of its own: autodoc would show its type's (``dict``'s)."""
    inherited = inspect.cleandoc(type(obj).__doc__ or "")
    if what == "data" and lines and "\n".join(lines).strip() == inherited:
        lines.clear()


def _check_every_export_documented(app, env):
    """Every name apigen put on a page must have become a target (an import that autodoc could
    not resolve would otherwise vanish from the reference without a word)."""
    objects = env.get_domain("py").objects
    for package in apigen.PACKAGES:
        for module, names in apigen.documented_names(package).items():
            for name in names:
                if f"{module}.{name}" not in objects:
                    _logger.warning("%s.%s is exported but not in the API reference", module, name)


def setup(app):
    app.connect("env-check-consistency", _check_every_export_documented)
    for handler in logging.getLogger("sphinx").handlers:
        if type(handler).__name__ == "WarningStreamHandler":
            handler.filters.insert(0, _KnownDocutilsProblems())
    app.connect("missing-reference", _resolve_alias)
    app.connect("autodoc-process-docstring", _drop_inherited_docstring)
