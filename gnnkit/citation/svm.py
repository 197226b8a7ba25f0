"""``svm``: TF-IDF word n-grams and a linear SVM, the baseline family of Athar (2011).

A. Athar, `"Sentiment Analysis of Citations using Sentence Structure-Based Features"
<https://aclanthology.org/P11-3015>`_, ACL-HLT 2011 Student Session, classifies the corpus's
sentences with an SVM over word n-grams and compares added features (a science-specific
lexicon, dependency relations, sentence splitting, negation); 3-grams and dependency relations
did best.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from gnnkit.citation.base import NGRAM_RANGE, CitationModel, tfidf_vectorizer
from gnnkit.citation.folds import FoldView
from gnnkit.utils.fields import POSITIVE_INT, POSITIVE_NUMBER, validate_fields

__all__ = ["SVMModel"]


@dataclass
class SVMModel(CitationModel):
    """TF-IDF word n-grams and a linear SVM with balanced class weights (Athar, 2011).

    NOTE: n-grams only: Athar's best features add dependency relations to them. Terms are
    TF-IDF weighted (:math:`1 + \\log tf`) and the classes weighted ``"balanced"``
    (:math:`n / (C\\, n_c)`), as for every model of this study.

    Args:
        ngram_range (tuple of int, optional): the n-gram orders. (default: ``(1, 3)``)
        C (float, optional): the SVM's inverse regularisation strength. (default: ``0.5``)
        min_df (int, optional): keep n-grams seen in at least this many training sentences.
            (default: ``1``)
        sublinear_tf (bool, optional): :math:`1 + \\log tf` term weights. (default: ``True``)
        seed (int, optional): the solver's random state. (default: ``0``)
    """

    name: ClassVar[str] = "svm"
    ngram_range: tuple[int, int] = field(default=(1, 3), metadata=NGRAM_RANGE)
    C: float = field(default=0.5, metadata=POSITIVE_NUMBER)
    min_df: int = field(default=1, metadata=POSITIVE_INT)
    sublinear_tf: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        validate_fields(self)
        self.vectorizer_: TfidfVectorizer | None = None
        self.svm_: LinearSVC | None = None

    def fit(self, view: FoldView) -> SVMModel:
        self._check_view(view)
        self.vectorizer_ = tfidf_vectorizer(
            ngram_range=tuple(self.ngram_range),
            min_df=self.min_df,
            sublinear_tf=self.sublinear_tf,
        )
        x = self.vectorizer_.fit_transform(view.train_tokens)
        self.svm_ = LinearSVC(C=self.C, class_weight="balanced", random_state=self.seed)
        self.svm_.fit(x, view.y_train)
        return self

    def predict(self, view: FoldView, index: np.ndarray | None = None) -> np.ndarray:
        self._check_fitted("svm_")
        index = view.test if index is None else index
        x = self.vectorizer_.transform([view.tokens[i] for i in index])
        return self.svm_.predict(x).astype(np.int64)
