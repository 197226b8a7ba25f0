"""Citation sentiment on the Athar (2011) corpus: an RNN + GNN hybrid against four baselines.

The study asks whether a citation's sentiment, hard to read from its sentence alone, becomes
easier when a model also sees the citation graph: a BiLSTM over the sentence combined with a
GNN over who cites whom should then beat either alone. This package tests that claim (on this
corpus it does not hold: the graph carries almost no sentiment signal; see
``benchmarks/results/citation.md``):

>>> import functools
>>> from gnnkit.citation import load_citations, stratified_folds, cross_validate, make_model
>>> data = load_citations()                      # papers as nodes, sentences as edges
>>> folds = stratified_folds(data.y, 10, seed=0)
>>> result = cross_validate(data, {"svm": functools.partial(make_model, "svm")}, folds)
>>> result.summary("svm")["macro_f1_mean"]       # doctest: +SKIP

- :mod:`~gnnkit.citation.corpus`: the corpus reader, tokeniser, vocabulary and PyG graph;
- :mod:`~gnnkit.citation.cv`: seeded stratified folds, leakage-proof fold views and
  cross-validation; :mod:`~gnnkit.citation.metrics`: the scores;
- the models, one module each, behind one interface (:mod:`~gnnkit.citation.base`):
  :mod:`~gnnkit.citation.svm`, :mod:`~gnnkit.citation.text` (BiLSTM),
  :mod:`~gnnkit.citation.graph` (GCN/GAT over the papers), :mod:`~gnnkit.citation.hybrid`
  and :mod:`~gnnkit.citation.textgcn`; the neural ones train on gnnkit's engine
  (:mod:`~gnnkit.citation.training`);
- :mod:`~gnnkit.citation.registry`: the models by name (:func:`make_model`), whose names
  alone are in :mod:`~gnnkit.citation.names`;
- :mod:`gnnkit.cli.citation`: ``gnnkit citation info`` and ``gnnkit citation bench``.

Importing this package imports none of its modules. A name is looked up on first use in the
modules' ``__all__``, importing them in the order of ``_MODULES`` until one has it, so
``gnnkit.citation.names`` (all the command line needs to build its parser) comes without
scikit-learn or the models.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

#: The modules whose ``__all__`` the package re-exports, in lookup order: each imports only
#: modules before it, so a lookup imports little that the name does not need.
_MODULES = (
    "names",
    "corpus",
    "metrics",
    "cv",
    "base",
    "training",
    "svm",
    "text",
    "graph",
    "hybrid",
    "textgcn",
    "registry",
)


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


def __getattr__(name: str) -> Any:
    if name == "__all__":
        value: Any = sorted({public for module in _MODULES for public in _module(module).__all__})
    else:
        found = None
        if not name.startswith("__"):  # never import the models to answer a probe
            found = next((m for m in map(_module, _MODULES) if name in m.__all__), None)
        if found is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(found, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__getattr__("__all__")})
