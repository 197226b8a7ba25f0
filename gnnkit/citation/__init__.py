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
- :mod:`~gnnkit.citation.registry`: the models by name (:func:`make_model`); the names and
  the ablations are recipes (:data:`gnnkit.recipes.CITATION_VARIANTS`);
- :mod:`gnnkit.cli.citation`: ``gnnkit citation info`` and ``gnnkit citation bench``.
"""

from gnnkit.citation.base import CitationModel
from gnnkit.citation.corpus import (
    CITATION_TOKEN,
    CLASS_NAMES,
    LABELS,
    CitationCorpus,
    CitationRecord,
    Vocabulary,
    label_homophily,
    load_citations,
    read_corpus,
    to_data,
    tokenize,
)
from gnnkit.citation.cv import (
    Fold,
    FoldView,
    cross_validate,
    fold_view,
    inner_split,
    set_threads,
    stratified_folds,
)
from gnnkit.citation.graph import GraphModel, PaperGNN, paper_features
from gnnkit.citation.hybrid import HybridModel
from gnnkit.citation.metrics import CVResult, evaluate
from gnnkit.citation.registry import MODEL_NAMES, MODELS, VARIANTS, make_model
from gnnkit.citation.svm import SVMModel
from gnnkit.citation.text import BiLSTMEncoder, TextModel
from gnnkit.citation.textgcn import TextGCNGraph, TextGCNModel, textgcn_graph
from gnnkit.citation.training import CitationTask, TrainingHistory

__all__ = [
    "CITATION_TOKEN",
    "CLASS_NAMES",
    "LABELS",
    "MODELS",
    "MODEL_NAMES",
    "VARIANTS",
    "BiLSTMEncoder",
    "CVResult",
    "CitationCorpus",
    "CitationModel",
    "CitationRecord",
    "CitationTask",
    "Fold",
    "FoldView",
    "GraphModel",
    "HybridModel",
    "PaperGNN",
    "SVMModel",
    "TextGCNGraph",
    "TextGCNModel",
    "TextModel",
    "TrainingHistory",
    "Vocabulary",
    "cross_validate",
    "evaluate",
    "fold_view",
    "inner_split",
    "label_homophily",
    "load_citations",
    "make_model",
    "paper_features",
    "read_corpus",
    "set_threads",
    "stratified_folds",
    "textgcn_graph",
    "to_data",
    "tokenize",
]
