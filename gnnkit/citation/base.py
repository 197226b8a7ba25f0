"""What every citation model shares: the :class:`CitationModel` interface.

A model is fitted on one fold at a time: ``fit(view)`` trains on the training sentences of a
:class:`~gnnkit.citation.cv.FoldView` (which holds no test label), ``predict(view)`` returns
class ids for ``view.test``. Also here: the TF-IDF vectoriser of pre-tokenised sentences and
the MLP head that several models use.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from torch import nn

from gnnkit.citation.folds import FoldView
from gnnkit.errors import InputError
from gnnkit.utils.fields import rule

__all__ = ["NGRAM_RANGE", "CitationModel", "check_ngram_range", "mlp", "tfidf_vectorizer"]


class CitationModel(ABC):
    """A sentiment classifier for citation sentences (one fold at a time).

    Subclasses are dataclasses: their fields are the hyper-parameters, so
    ``replace(model, lr=...)`` and ``repr(model)`` show the whole configuration.
    """

    name: ClassVar[str]

    @abstractmethod
    def fit(self, view: FoldView) -> CitationModel:
        """Train on ``view.train`` (labels ``view.y_train``); returns ``self``."""

    @abstractmethod
    def predict(self, view: FoldView, index: np.ndarray | None = None) -> np.ndarray:
        """Class ids of the sentences ``index`` (default: ``view.test``)."""

    def _check_fitted(self, attribute: str) -> None:
        if getattr(self, attribute, None) is None:
            raise InputError(f"{type(self).__name__} is not fitted; call fit(view) first")

    def _check_view(self, view: FoldView) -> None:
        if not isinstance(view, FoldView):
            raise InputError(
                f"{type(self).__name__} expects a FoldView (gnnkit.citation.fold_view), got "
                f"{type(view).__name__}"
            )
        if view.train.size == 0:
            raise InputError("the fold has no training sentences")
        present = np.unique(view.y_train)
        if present.size < 2:
            raise InputError(
                f"the training part holds a single class ({int(present[0])}); a classifier "
                "needs at least two"
            )


def check_ngram_range(name: str, value: Any) -> None:
    """Raise unless ``value`` is a pair ``(min_n, max_n)`` of integers with
    ``1 <= min_n <= max_n`` (scikit-learn accepts an inverted range and finds no n-gram)."""
    pair = isinstance(value, (tuple, list)) and len(value) == 2
    if not (
        pair
        and all(isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in value)
        and 1 <= value[0] <= value[1]
    ):
        raise InputError(
            f"{name} must be a pair (min_n, max_n) of integers with 1 <= min_n <= max_n, "
            f"got {value!r}; for example (1, 3) for 1- to 3-grams"
        )


#: Field metadata: a valid n-gram range (:func:`check_ngram_range`).
NGRAM_RANGE = rule(check_ngram_range)


def _pretokenized(tokens: Any) -> Any:
    return tokens


def tfidf_vectorizer(**options: Any) -> TfidfVectorizer:
    """scikit-learn's ``TfidfVectorizer`` for sentences that are already token lists.

    ``options`` go to the vectoriser (``ngram_range``, ``min_df``, ``sublinear_tf``, ``norm``...);
    tokenising, preprocessing and lower-casing are left to :func:`~gnnkit.citation.tokenize`.
    """
    return TfidfVectorizer(
        tokenizer=_pretokenized,
        preprocessor=_pretokenized,
        token_pattern=None,
        lowercase=False,
        **options,
    )


def mlp(in_channels: int, hidden: int, out_channels: int, dropout: float) -> nn.Sequential:
    """Dropout, Linear, ReLU, dropout, Linear: the classification head of the neural models.

    Shapes:
        - **input:** (B, in_channels)
        - **output:** (B, out_channels)
    """
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(in_channels, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, out_channels),
    )
