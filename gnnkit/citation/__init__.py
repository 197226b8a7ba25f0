"""Citation sentiment on the Athar (2011) corpus: an RNN + GNN hybrid against four baselines.

The study asks whether a citation's sentiment, hard to read from its sentence alone, becomes
easier when a model also sees the citation graph: a BiLSTM over the sentence combined with a
GNN over who cites whom should then beat either alone. This package tests that claim (on this
corpus it does not hold: the graph carries almost no sentiment signal; see
``benchmarks/results/citation.md``):

>>> import functools
>>> from gnnkit.citation import load_citations, citation_folds, cross_validate, make_model
>>> data = load_citations()                      # papers as nodes, sentences as edges
>>> folds = citation_folds(data, 10, seed=0)     # stratified, copies of a sentence together
>>> result = cross_validate(data, {"svm": functools.partial(make_model, "svm")}, folds)
>>> result.summary("svm")["macro_f1_mean"]       # doctest: +SKIP

- :mod:`~gnnkit.citation.corpus`: the corpus reader, tokeniser, vocabulary and PyG graph;
- :mod:`~gnnkit.citation.folds`: seeded stratified folds grouped by sentence text (the
  default, :func:`citation_folds`; plain :func:`stratified_folds` for comparison) and
  leakage-proof fold views; :mod:`~gnnkit.citation.cv`: cross-validation;
  :mod:`~gnnkit.citation.metrics`: the scores;
- the models, one module each, behind one interface (:mod:`~gnnkit.citation.base`):
  :mod:`~gnnkit.citation.svm`, :mod:`~gnnkit.citation.text` (BiLSTM),
  :mod:`~gnnkit.citation.graph` (GCN/GAT over the papers), :mod:`~gnnkit.citation.hybrid`
  and :mod:`~gnnkit.citation.textgcn`; the neural ones train on gnnkit's engine
  (:mod:`~gnnkit.citation.training`);
- the models that read the *sentence* graph (issue 21):
  :mod:`~gnnkit.citation.labeltrick` (``labels``), :mod:`~gnnkit.citation.smoothing`
  (``cs``, Correct & Smooth) and :mod:`~gnnkit.citation.rgcn` (``rgcn``, a relational GCN
  over typed sentence edges), over :mod:`~gnnkit.citation.siblings`;
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
from gnnkit.citation.cv import cross_validate, set_threads
from gnnkit.citation.folds import (
    Fold,
    FoldView,
    citation_folds,
    fold_view,
    inner_split,
    normalize_text,
    stratified_folds,
    text_groups,
)
from gnnkit.citation.graph import GraphModel, PaperGNN, paper_features
from gnnkit.citation.hybrid import HybridModel
from gnnkit.citation.labeltrick import LabelTrickModel
from gnnkit.citation.metrics import CVResult, evaluate
from gnnkit.citation.registry import MODEL_NAMES, MODELS, SIBLING_MODELS, VARIANTS, make_model
from gnnkit.citation.rgcn import (
    RGCNModel,
    SentenceRGCN,
    SiblingMean,
    sibling_means,
    typed_sentence_edges,
)
from gnnkit.citation.siblings import normalized_adjacency, sibling_graph, sibling_label_features
from gnnkit.citation.smoothing import CorrectSmoothModel, correct_and_smooth
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
    "SIBLING_MODELS",
    "VARIANTS",
    "BiLSTMEncoder",
    "CVResult",
    "CitationCorpus",
    "CitationModel",
    "CitationRecord",
    "CitationTask",
    "CorrectSmoothModel",
    "Fold",
    "FoldView",
    "GraphModel",
    "HybridModel",
    "LabelTrickModel",
    "PaperGNN",
    "RGCNModel",
    "SVMModel",
    "SentenceRGCN",
    "SiblingMean",
    "TextGCNGraph",
    "TextGCNModel",
    "TextModel",
    "TrainingHistory",
    "Vocabulary",
    "citation_folds",
    "correct_and_smooth",
    "cross_validate",
    "evaluate",
    "fold_view",
    "inner_split",
    "label_homophily",
    "load_citations",
    "make_model",
    "normalize_text",
    "normalized_adjacency",
    "paper_features",
    "read_corpus",
    "set_threads",
    "sibling_graph",
    "sibling_label_features",
    "sibling_means",
    "stratified_folds",
    "text_groups",
    "textgcn_graph",
    "to_data",
    "tokenize",
    "typed_sentence_edges",
]
