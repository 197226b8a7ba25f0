r"""``textgcn``: TextGCN, a two-layer GCN over a document-word graph.

L. Yao, C. Mao and Y. Luo, "Graph Convolutional Networks for Text Classification", AAAI 2019,
arXiv 1809.05679. Every sentence (document) and every training word is a node; documents link
to their words by TF-IDF, words to words by positive pointwise mutual information over sliding
windows (:func:`textgcn_graph`); a GCN (Kipf & Welling, arXiv 1609.02907) with one-hot node
features classifies the document nodes (:class:`TextGCNModel`).

The graph is built in named steps that tests check by hand: :func:`sliding_windows` (which
words each window holds) and :func:`pmi_edges` (the word-word edges).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from sklearn.feature_extraction.text import TfidfVectorizer
from torch import Tensor, nn

from gnnkit.citation.base import tfidf_vectorizer
from gnnkit.citation.folds import FoldView, check_indices
from gnnkit.citation.training import NeuralModel
from gnnkit.errors import InputError
from gnnkit.nn import GCNConv, sparse_dropout
from gnnkit.utils.checks import check_ints
from gnnkit.utils.fields import POSITIVE_INT

__all__ = ["TextGCNGraph", "TextGCNModel", "pmi_edges", "sliding_windows", "textgcn_graph"]


@dataclass
class TextGCNGraph:
    """The document-word graph of TextGCN: documents ``0..D-1``, then words ``D..D+V-1``."""

    edge_index: Tensor  # (2, |E|), both directions
    edge_weight: Tensor  # (|E|,)
    num_docs: int
    vocabulary: list[str]
    num_doc_word: int  # undirected document-word edges
    num_word_word: int  # undirected word-word edges

    @property
    def num_nodes(self) -> int:
        return self.num_docs + len(self.vocabulary)


def sliding_windows(
    documents: Iterable[Sequence[int]], num_words: int, window: int
) -> sp.csr_matrix:
    """Which words each sliding window holds: a (#W, V) 0/1 matrix.

    A document of :math:`n \\ge` ``window`` word ids has :math:`n - \\text{window} + 1`
    windows, a shorter one is a single window, an empty one has none. With no window at all
    the matrix has one empty row.
    """
    rows, cols, n_windows = [], [], 0
    for ids in documents:
        if not ids:
            continue
        for start in range(max(1, len(ids) - window + 1)):
            members = set(ids[start : start + window])
            rows.extend([n_windows] * len(members))
            cols.extend(members)
            n_windows += 1
    return sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(max(n_windows, 1), num_words)
    )


def pmi_edges(
    windows: sp.csr_matrix, *, min_cooccurrence: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The word-word edges of TextGCN: word pairs with a positive PMI.

    .. math::
        \operatorname{PMI}(w, w') = \log \frac{p(w, w')}{p(w)\, p(w')}, \qquad
        p(w) = \frac{\#W(w)}{\#W}, \quad p(w, w') = \frac{\#W(w, w')}{\#W}

    with :math:`\#W` the number of windows (rows of ``windows``), :math:`\#W(w)` those holding
    :math:`w` and :math:`\#W(w, w')` those holding both.

    Returns:
        (array, array, array): the words :math:`w < w'` of each pair seen together in at least
        ``min_cooccurrence`` windows whose PMI is positive, and that PMI.
    """
    co = (windows.T @ windows).tocoo()  # (V, V) windows holding both
    single = np.asarray(windows.sum(axis=0)).ravel()  # (V,) windows holding each word
    keep = (co.row < co.col) & (co.data >= min_cooccurrence)
    r, c, n = co.row[keep], co.col[keep], co.data[keep]
    pmi = np.log(n * windows.shape[0] / (single[r] * single[c]))
    positive = pmi > 0
    return r[positive], c[positive], pmi[positive]


def _training_vocabulary(
    tokens: Sequence[Sequence[str]], train: np.ndarray, min_df: int
) -> TfidfVectorizer:
    """The TF-IDF (raw term counts times smoothed IDF) fitted on the training documents."""
    vectorizer = tfidf_vectorizer(min_df=min_df, norm=None)
    try:
        vectorizer.fit([tokens[i] for i in train])
    except ValueError:
        raise InputError(
            f"no word occurs in {min_df} or more training documents; lower min_df"
        ) from None
    return vectorizer


def textgcn_graph(
    tokens: Sequence[Sequence[str]],
    train: np.ndarray,
    *,
    min_df: int = 2,
    window: int = 20,
    min_cooccurrence: int = 2,
) -> TextGCNGraph:
    r"""Build TextGCN's heterogeneous graph (Yao et al., AAAI 2019, arXiv 1809.05679).

    Nodes are all documents (training and test) and the words of the *training* documents.
    Edge weights (Yao's eq. 1):

    .. math::
        A_{dw} = \operatorname{tf}(d, w) \cdot \operatorname{idf}(w), \qquad
        A_{ww'} = \operatorname{PMI}(w, w') = \log \frac{p(w, w')}{p(w)\, p(w')}
        \ \text{(kept when positive)}

    with :math:`p(w) = \#W(w) / \#W` and :math:`p(w, w') = \#W(w, w') / \#W` counted over
    sliding windows of ``window`` tokens (a shorter document is one window):
    :func:`sliding_windows`, then :func:`pmi_edges`.

    NOTE: departures from the paper, to keep test folds out of everything fitted: the
    vocabulary, the IDF and the PMI statistics come from the training documents only (Yao
    counts all documents); test documents are linked to training-vocabulary words by their
    TF-IDF. The IDF is scikit-learn's smoothed :math:`\log\frac{1 + n}{1 + df} + 1`, and
    word pairs seen together in fewer than ``min_cooccurrence`` windows get no edge (a bound on
    the graph's size). Self-loops (Yao's :math:`A_{ii} = 1`) are added by the GCN layer.

    Args:
        tokens (sequence of token lists): every document.
        train (array): indices of the training documents.
        min_df (int, optional): a word needs this many training documents. (default: ``2``)
        window (int, optional): the sliding window size. (default: ``20``)
        min_cooccurrence (int, optional): see the note. (default: ``2``)

    Returns:
        TextGCNGraph: ``edge_index`` and ``edge_weight`` hold each edge in both directions.

    Raises:
        InputError: no training document, a ``train`` index outside ``tokens``, or a
            non-positive ``min_df``, ``window`` or ``min_cooccurrence``.
    """
    check_ints(min_df=min_df, window=window, min_cooccurrence=min_cooccurrence)
    train = check_indices("train", train, len(tokens), "document")
    if train.size == 0:
        raise InputError("textgcn_graph needs at least one training document")
    vectorizer = _training_vocabulary(tokens, train, min_df)
    tfidf = vectorizer.transform(tokens).tocoo()  # (D, V)
    num_docs, num_words = tfidf.shape
    word_id = vectorizer.vocabulary_
    documents = ([word_id[t] for t in tokens[i] if t in word_id] for i in train)
    windows = sliding_windows(documents, num_words, window)
    r, c, pmi = pmi_edges(windows, min_cooccurrence=min_cooccurrence)

    nonzero = tfidf.data > 0
    doc, word, tfidf_w = tfidf.row[nonzero], tfidf.col[nonzero] + num_docs, tfidf.data[nonzero]
    src = np.concatenate([doc, r + num_docs])
    dst = np.concatenate([word, c + num_docs])
    weight = np.concatenate([tfidf_w, pmi])
    edge_index = np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])])
    return TextGCNGraph(
        edge_index=torch.as_tensor(edge_index).long(),
        edge_weight=torch.as_tensor(np.concatenate([weight, weight]), dtype=torch.float32),
        num_docs=num_docs,
        vocabulary=vectorizer.get_feature_names_out().tolist(),
        num_doc_word=int(doc.size),
        num_word_word=int(r.size),
    )


class _TextGCNNet(nn.Module):
    """Two :class:`gnnkit.nn.GCNConv` layers with ReLU and dropout (on the sparse input too).

    Shapes:
        - **input:** ``x`` (N, N) sparse identity, ``edge_index`` (2, |E|), ``edge_weight`` (|E|,)
        - **output:** (N, C)
    """

    def __init__(self, num_nodes: int, hidden: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = GCNConv(num_nodes, hidden, cached=True)
        self.conv2 = GCNConv(hidden, num_classes, cached=True)
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
        x = sparse_dropout(x, self.dropout, self.training)
        h = F.relu(self.conv1(x, edge_index, edge_weight))  # (N, hidden)
        h = F.dropout(h, self.dropout, self.training)
        return self.conv2(h, edge_index, edge_weight)  # (N, C)


@dataclass
class TextGCNModel(NeuralModel):
    r"""TextGCN (Yao et al., AAAI 2019): a two-layer GCN over the document-word graph.

    .. math::
        Z = \operatorname{softmax}\big(\hat{A}\, \operatorname{ReLU}(\hat{A} X W_0)\, W_1\big)

    with :math:`\hat{A}` the symmetrically normalised adjacency (self-loops of weight 1) of
    :func:`textgcn_graph`, :math:`X = I` one-hot node features (a sparse identity, so
    :math:`X W_0 = W_0`) and two gnnkit :class:`~gnnkit.nn.GCNConv` layers (Kipf & Welling,
    arXiv 1609.02907). Training is transductive and full-batch: all documents are nodes, only
    training documents' labels enter the loss.

    NOTE: the paper uses 200 hidden units, learning rate 0.02, dropout 0.5, up to 200 epochs
    and stops when the validation loss has not improved for 10 epochs. Here the first layer is
    smaller (128), training runs at most 100 epochs, the loss is class-weighted and early
    stopping follows the validation macro-F1 (patience 10), like the other models. See
    :func:`textgcn_graph` for the graph's departures.

    Args:
        hidden (int, optional): the first layer's width. (default: ``128``)
        min_df, window, min_cooccurrence: see :func:`textgcn_graph`.
        epochs, patience, lr, weight_decay, dropout, val_fraction, seed: as in
            :class:`~gnnkit.citation.GraphModel`. (default: ``100``, ``10``, ``0.02``, ``0``,
            ``0.5``, ``0.1``, ``0``)
    """

    name: ClassVar[str] = "textgcn"
    hidden: int = field(default=128, metadata=POSITIVE_INT)
    # The rule of textgcn_graph's check_ints, checked at construction rather than in fit.
    min_df: int = field(default=2, metadata=POSITIVE_INT)
    window: int = field(default=20, metadata=POSITIVE_INT)
    min_cooccurrence: int = field(default=2, metadata=POSITIVE_INT)
    epochs: int = 100
    patience: int = 10
    lr: float = 0.02
    dropout: float = 0.5

    def fit(self, view: FoldView) -> TextGCNModel:
        split = self._split(view)
        self.graph_ = textgcn_graph(
            view.tokens,
            view.train,
            min_df=self.min_df,
            window=self.window,
            min_cooccurrence=self.min_cooccurrence,
        )
        n = self.graph_.num_nodes
        eye = torch.arange(n)
        self.x_ = torch.sparse_coo_tensor(
            torch.stack([eye, eye]),
            torch.ones(n),
            (n, n),
            is_coalesced=True,
            check_invariants=False,
        )
        self.module_ = _TextGCNNet(n, self.hidden, view.num_classes, self.dropout)
        self._train(view, split)
        return self

    def _all_logits(self, index: np.ndarray) -> Tensor:
        """The logits of the documents ``index`` (one forward pass over the whole graph)."""
        out = self.module_(self.x_, self.graph_.edge_index, self.graph_.edge_weight)  # (N, C)
        return out[torch.as_tensor(index)]
