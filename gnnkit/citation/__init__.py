"""Citation sentiment on the Athar corpus: an RNN + GNN hybrid against four baselines.

The reference report's Question 3.5(b) argues that a citation's sentiment is hard to read from
its sentence alone and that an RNN over the text combined with a GNN over the citation graph
should do better than either. This package tests that claim (on this corpus it does not
hold: the graph carries almost no sentiment signal; see ``benchmarks/results/citation.md``):

>>> import functools
>>> from gnnkit.citation import load_citations, stratified_folds, cross_validate, make_model
>>> data = load_citations()                      # papers as nodes, sentences as edges
>>> folds = stratified_folds(data.y, 10, seed=0)
>>> result = cross_validate(data, {"svm": functools.partial(make_model, "svm")}, folds)
>>> result.summary("svm")["macro_f1_mean"]       # doctest: +SKIP

- :mod:`gnnkit.citation.corpus`: the corpus reader, tokeniser, vocabulary and PyG graph;
- :mod:`gnnkit.citation.cv`: seeded stratified folds, leakage-proof fold views, metrics;
- :mod:`gnnkit.citation.models`: ``svm``, ``text``, ``graph``, ``hybrid`` and ``textgcn``;
- :mod:`gnnkit.cli.citation`: ``gnnkit citation info`` and ``gnnkit citation bench``.
"""

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
    CVResult,
    Fold,
    FoldView,
    cross_validate,
    evaluate,
    fold_view,
    inner_split,
    set_threads,
    stratified_folds,
)
from gnnkit.citation.models import (
    MODEL_NAMES,
    MODELS,
    VARIANTS,
    BiLSTMEncoder,
    CitationModel,
    GraphModel,
    HybridModel,
    PaperGNN,
    SVMModel,
    TextGCNGraph,
    TextGCNModel,
    TextModel,
    make_model,
    paper_features,
    textgcn_graph,
)

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
    "Fold",
    "FoldView",
    "GraphModel",
    "HybridModel",
    "PaperGNN",
    "SVMModel",
    "TextGCNGraph",
    "TextGCNModel",
    "TextModel",
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
