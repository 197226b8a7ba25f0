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

Importing this package imports none of its modules: each name below is imported from its
module on first use, so ``gnnkit.citation.names`` (all the command line needs to build its
parser) comes without scikit-learn or the models.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Where each public name lives.
_MODULES: dict[str, tuple[str, ...]] = {
    "corpus": (
        "CITATION_TOKEN",
        "CLASS_NAMES",
        "LABELS",
        "CitationCorpus",
        "CitationRecord",
        "Vocabulary",
        "label_homophily",
        "load_citations",
        "read_corpus",
        "to_data",
        "tokenize",
    ),
    "cv": (
        "Fold",
        "FoldView",
        "cross_validate",
        "fold_view",
        "inner_split",
        "set_threads",
        "stratified_folds",
    ),
    "metrics": ("CVResult", "evaluate"),
    "base": ("CitationModel",),
    "svm": ("SVMModel",),
    "text": ("BiLSTMEncoder", "TextModel"),
    "graph": ("GraphModel", "PaperGNN", "paper_features"),
    "hybrid": ("HybridModel",),
    "textgcn": ("TextGCNGraph", "TextGCNModel", "textgcn_graph"),
    "training": ("CitationTask", "TrainingHistory"),
    "names": ("MODEL_NAMES", "VARIANTS"),
    "registry": ("MODELS", "make_model"),
}
_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
