r"""``cs``: Correct & Smooth over the sentence graph, on a linear n-gram classifier.

Q. Huang, H. He, A. Singh, S.-N. Lim and A. R. Benson, "Combining Label Propagation and Simple
Models Out-performs Graph Neural Networks", ICLR 2021, arXiv 2010.13993. A base classifier
gives soft predictions :math:`Z` (|E|, C) for every sentence; with :math:`S = D^{-1/2} A
D^{-1/2}` the normalised sentence graph (:func:`~gnnkit.citation.siblings.normalized_adjacency`
of :func:`~gnnkit.citation.siblings.sibling_graph`) and :math:`T` the training sentences:

.. math::
    E^{(0)} = \begin{cases} Y_T - Z_T & \text{on } T \\ 0 & \text{else} \end{cases}, \quad
    E^{(\ell)} = \alpha_1 S E^{(\ell-1)} + (1 - \alpha_1) E^{(0)}, \quad
    \hat Z = Z + \gamma \odot E^{(L_1)}

(correct; :math:`\gamma` per row rescales the propagated error to the mean training error,
"autoscale"), then with :math:`G^{(0)} = \hat Z` except :math:`G^{(0)}_T = Y_T`,

.. math::
    G^{(\ell)} = \alpha_2 S G^{(\ell-1)} + (1 - \alpha_2) G^{(0)}

(smooth); a sentence's class is :math:`\arg\max_c G^{(L_2)}_{ec}`. Both steps are PyG's
:class:`torch_geometric.nn.models.CorrectAndSmooth`.

NOTE: the base classifier is a one-vs-rest logistic regression (liblinear) on TF-IDF word
1-3-grams with balanced class weights; its soft predictions for the *training* sentences are out-of-fold
(``inner_folds``-fold cross-fitting inside the training part, copies of a sentence kept in one
inner fold), so the residuals :math:`Y_T - Z_T` are honest rather than the near-zero
residuals of a model scored on its own training data. The graph links sentences of the same
citing paper, and those of the same (citing, cited) pair twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.multiclass import OneVsRestClassifier
from torch_geometric.nn.models import CorrectAndSmooth

from gnnkit.citation.base import NGRAM_RANGE, CitationModel, tfidf_vectorizer
from gnnkit.citation.folds import FoldView, check_indices, text_groups
from gnnkit.citation.metrics import check_labels, labels_array
from gnnkit.citation.siblings import normalized_adjacency, sibling_graph
from gnnkit.errors import InputError
from gnnkit.utils.fields import CHECK, POSITIVE_INT, POSITIVE_NUMBER, PROBABILITY, validate_fields

__all__ = ["CorrectSmoothModel", "correct_and_smooth"]


def _check_schedule(layers: Any, alpha: Any) -> None:
    """``layers`` and ``alpha`` by the rules of :class:`CorrectSmoothModel`'s fields
    (``correction_layers``, ``smoothing_alpha``...): PyG's ``CorrectAndSmooth`` checks none."""
    for name, pair in (("layers", layers), ("alpha", alpha)):
        if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
            raise InputError(f"{name} must be a pair (correction, smoothing), got {pair!r}")
    rules = {
        spec.name: spec.metadata[CHECK]
        for spec in fields(CorrectSmoothModel)
        if CHECK in spec.metadata
    }
    for position, step in enumerate(("correction", "smoothing")):
        rules[f"{step}_layers"](f"layers[{position}]", layers[position])
        rules[f"{step}_alpha"](f"alpha[{position}]", alpha[position])


def _check_inputs(z: Any, y_train: Any, train: Any, norm_adjacency: Any) -> np.ndarray:
    """Refuse mismatched shapes and out-of-range indices or classes, which PyG reports as an
    ``IndexError``, a bare ``AssertionError`` or a ``one_hot`` ``RuntimeError``; returns
    ``train`` as an index array."""
    shape = tuple(np.shape(z))
    if len(shape) != 2:
        raise InputError(f"z must be (n, C) soft predictions, got shape {shape}")
    n, num_classes = shape
    if not sp.issparse(norm_adjacency) or norm_adjacency.shape != (n, n):
        got = getattr(norm_adjacency, "shape", None)
        raise InputError(
            f"norm_adjacency must be a scipy sparse ({n}, {n}) matrix, one row per row of z, "
            f"got {type(norm_adjacency).__name__} of shape {got}"
        )
    train = check_indices("train", train, n, "node")
    y = labels_array(y_train)
    if y.shape != train.shape:
        raise InputError(
            f"y_train must hold one class per training node ({train.size}), got shape {y.shape}"
        )
    check_labels("y_train", y, num_classes)
    return train


def correct_and_smooth(
    z: np.ndarray,
    y_train: np.ndarray,
    train: np.ndarray,
    norm_adjacency,
    *,
    layers: tuple[int, int] = (50, 50),
    alpha: tuple[float, float] = (0.8, 0.8),
) -> np.ndarray:
    """PyG's Correct & Smooth of soft predictions ``z`` (|E|, C) over a normalised graph.

    Args:
        z (array): (n, C) soft predictions of every node.
        y_train (array): (len(train),) the training nodes' classes.
        train (array): the training nodes.
        norm_adjacency (scipy sparse): (n, n) :math:`S`, already normalised.
        layers, alpha: :math:`(L_1, L_2)` and :math:`(\\alpha_1, \\alpha_2)`.

    Returns:
        array: (n, C) the smoothed scores.

    Raises:
        InputError: shapes that do not match ``z``, a ``train`` index or ``y_train`` class
            out of range, or ``layers``/``alpha`` that :class:`CorrectSmoothModel` refuses.
    """
    _check_schedule(layers, alpha)
    train = _check_inputs(z, y_train, train, norm_adjacency)
    coo = norm_adjacency.tocoo()
    edge_index = torch.as_tensor(np.vstack([coo.row, coo.col]), dtype=torch.long)
    edge_weight = torch.as_tensor(coo.data, dtype=torch.float64)
    cs = CorrectAndSmooth(layers[0], alpha[0], layers[1], alpha[1], autoscale=True)
    y_soft = torch.as_tensor(z, dtype=torch.float64)
    mask = torch.as_tensor(train, dtype=torch.long)
    y_true = torch.as_tensor(y_train, dtype=torch.long)
    corrected = cs.correct(y_soft, y_true, mask, edge_index, edge_weight)
    return cs.smooth(corrected, y_true, mask, edge_index, edge_weight).numpy()


@dataclass
class CorrectSmoothModel(CitationModel):
    """A logistic regression on n-grams, corrected and smoothed over the sentence graph.

    Args:
        correction_layers, smoothing_layers (int, optional): :math:`L_1`, :math:`L_2`.
            (default: ``50``, ``50``)
        correction_alpha, smoothing_alpha (float, optional): :math:`\\alpha_1`,
            :math:`\\alpha_2`. (default: ``0.8``, ``0.8``)
        C (float, optional): the logistic regression's inverse regularisation. (default: ``10``)
        inner_folds (int, optional): cross-fitting folds for the training sentences' soft
            predictions. (default: ``5``)
        ngram_range, sublinear_tf, seed: as in :class:`~gnnkit.citation.SVMModel`.
    """

    name: ClassVar[str] = "cs"
    correction_layers: int = field(default=50, metadata=POSITIVE_INT)
    correction_alpha: float = field(default=0.8, metadata=PROBABILITY)
    smoothing_layers: int = field(default=50, metadata=POSITIVE_INT)
    smoothing_alpha: float = field(default=0.8, metadata=PROBABILITY)
    C: float = field(default=10.0, metadata=POSITIVE_NUMBER)
    inner_folds: int = field(default=5, metadata=POSITIVE_INT)
    ngram_range: tuple[int, int] = field(default=(1, 3), metadata=NGRAM_RANGE)
    sublinear_tf: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        validate_fields(self)
        self.scores_: np.ndarray | None = None

    def _base(self, view: FoldView, fit: np.ndarray, score: np.ndarray) -> np.ndarray:
        """Soft predictions (len(score), C) of a classifier fitted on ``fit`` only."""
        vectorizer = tfidf_vectorizer(
            ngram_range=tuple(self.ngram_range), sublinear_tf=self.sublinear_tf
        )
        x = vectorizer.fit_transform([view.tokens[i] for i in fit])
        y = view.labels_of(fit)
        model = OneVsRestClassifier(
            LogisticRegression(C=self.C, class_weight="balanced", solver="liblinear")
        )
        model.fit(x, y)
        proba = np.zeros((score.size, view.num_classes))
        proba[:, model.classes_] = model.predict_proba(
            vectorizer.transform([view.tokens[i] for i in score])
        )
        return proba

    def base_scores(self, view: FoldView) -> np.ndarray:
        """(|E|, C) base soft predictions: out-of-fold on the training part, else fitted on
        the whole training part."""
        z = np.zeros((len(view.tokens), view.num_classes))
        z[view.test] = self._base(view, view.train, view.test)
        groups = text_groups([view.data.text[i] for i in view.train])
        for inner_fit, inner_out in GroupKFold(self.inner_folds).split(view.train, groups=groups):
            z[view.train[inner_out]] = self._base(
                view, view.train[inner_fit], view.train[inner_out]
            )
        return z

    def fit(self, view: FoldView) -> CorrectSmoothModel:
        self._check_view(view)
        z = self.base_scores(view)
        adjacency = sibling_graph(view.data, "source") + sibling_graph(view.data, "pair")
        self.scores_ = correct_and_smooth(
            z,
            view.y_train,
            view.train,
            normalized_adjacency(adjacency),
            layers=(self.correction_layers, self.smoothing_layers),
            alpha=(self.correction_alpha, self.smoothing_alpha),
        )
        return self

    def predict(self, view: FoldView, index: np.ndarray | None = None) -> np.ndarray:
        self._check_fitted("scores_")
        index = view.test if index is None else np.asarray(index)
        return self.scores_[index].argmax(axis=1).astype(np.int64)
