r"""``labels``: the label trick: n-grams plus the training labels of sibling sentences.

Y. Wang, J. Jin, W. Zhang, Y. Yu, Z. Zhang and D. Wipf, "Bag of Tricks for Node Classification
with Graph Neural Networks", arXiv 2103.13355, 2021 (the label trick), after the label
features of label propagation. The text side is the ``svm`` model's (TF-IDF word 1-3-grams, a
linear SVM with balanced class weights); beside it each sentence gets the class distribution
of its siblings' training labels, per relation (same (citing, cited) pair, same citing paper:
:func:`~gnnkit.citation.siblings.sibling_label_features`), and the SVM learns how much to trust
them.

NOTE: the paper's label trick hides a random part of the training labels at each step so that
a training node's own label never enters its input; here the sibling graph has no self-loops
and no links between copies of one sentence, which gives the same guarantee in one pass (a
linear model has no training steps to randomise over).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from gnnkit.citation.base import NGRAM_RANGE, CitationModel, tfidf_vectorizer
from gnnkit.citation.folds import FoldView
from gnnkit.citation.siblings import RELATIONS, sibling_label_features
from gnnkit.errors import InputError
from gnnkit.utils.fields import POSITIVE_NUMBER, validate_fields

__all__ = ["LabelTrickModel"]


@dataclass
class LabelTrickModel(CitationModel):
    """TF-IDF n-grams and sibling-label features, a linear SVM with balanced class weights.

    Args:
        relations (tuple of str, optional): the sibling relations whose labels become
            features. (default: ``("pair", "source")``)
        label_weight (float, optional): the label features' scale against the unit-norm
            TF-IDF row (a larger weight is a weaker penalty on their coefficients).
            (default: ``1.0``)
        ngram_range, C, sublinear_tf, seed: as in :class:`~gnnkit.citation.SVMModel`.
            (default: ``(1, 3)``, ``0.5``, ``True``, ``0``)
    """

    name: ClassVar[str] = "labels"
    relations: tuple[str, ...] = ("pair", "source")
    label_weight: float = field(default=1.0, metadata=POSITIVE_NUMBER)
    ngram_range: tuple[int, int] = field(default=(1, 3), metadata=NGRAM_RANGE)
    C: float = field(default=0.5, metadata=POSITIVE_NUMBER)
    sublinear_tf: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        validate_fields(self)
        self.relations = tuple(self.relations)
        unknown = [r for r in self.relations if r not in RELATIONS]
        if not self.relations or unknown:
            raise InputError(
                f"relations must be a non-empty subset of {', '.join(RELATIONS)}, got "
                f"{self.relations!r}"
            )
        self.vectorizer_: TfidfVectorizer | None = None
        self.svm_: LinearSVC | None = None
        self.labels_: np.ndarray | None = None

    def _features(self, view: FoldView, index: np.ndarray) -> sp.csr_matrix:
        text = self.vectorizer_.transform([view.tokens[i] for i in index])
        labels = sp.csr_matrix(self.label_weight * self.labels_[index])
        return sp.hstack([text, labels]).tocsr()

    def fit(self, view: FoldView) -> LabelTrickModel:
        self._check_view(view)
        self.vectorizer_ = tfidf_vectorizer(
            ngram_range=tuple(self.ngram_range), sublinear_tf=self.sublinear_tf
        )
        self.vectorizer_.fit(view.train_tokens)
        self.labels_ = sibling_label_features(view, self.relations)  # (|E|, R (C + 1))
        self.svm_ = LinearSVC(
            C=self.C, class_weight="balanced", max_iter=5000, random_state=self.seed
        )
        self.svm_.fit(self._features(view, view.train), view.y_train)
        return self

    def predict(self, view: FoldView, index: np.ndarray | None = None) -> np.ndarray:
        self._check_fitted("svm_")
        index = view.test if index is None else np.asarray(index)
        return self.svm_.predict(self._features(view, index)).astype(np.int64)
