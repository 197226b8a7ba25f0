"""Stratified k-fold splits of the citation sentences, and leakage-proof fold views.

Every model sees the same seeded folds. The study's default (:func:`citation_folds`) groups
the sentences by their normalised text (:func:`text_groups`): a sentence that cites several
papers is one row per cited paper in the corpus (1,269 of the 8,736 rows share their text with
another row), and every copy goes into the same fold, so no test sentence is also a training
sentence. :func:`stratified_folds` without ``groups`` gives the plain stratified folds of
earlier versions, for comparison. A model never receives the
corpus itself: it gets a :class:`FoldView`, which holds the graph, every sentence's tokens and
the *training* labels only (the test labels are not in it), so nothing a model computes can
depend on them. Which paper cites which, and the text of every sentence, are visible; each
model builds its vocabulary from the training sentences alone.

:func:`inner_split` carves a validation part out of a training fold (early stopping);
:func:`gnnkit.citation.cv.cross_validate` runs the models over the folds.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split
from torch_geometric.data import Data

from gnnkit.citation.metrics import labels_array
from gnnkit.errors import InputError

__all__ = [
    "Fold",
    "FoldView",
    "check_indices",
    "citation_folds",
    "fold_view",
    "inner_split",
    "normalize_text",
    "stratified_folds",
    "text_groups",
]


@dataclass(frozen=True)
class Fold:
    """One split of the sentences: ``train`` and ``test`` are sorted sentence (edge) indices."""

    index: int
    train: np.ndarray
    test: np.ndarray

    def __repr__(self) -> str:
        return f"Fold({self.index}, train={self.train.size}, test={self.test.size})"


def _check_class_counts(
    y: np.ndarray, n_splits: int, class_names: Sequence[str] | None, what: str
) -> None:
    labels, counts = np.unique(y, return_counts=True)
    if labels.size < 2:
        raise InputError(f"{what} needs at least two classes, got {labels.size}")
    small = counts < n_splits
    if small.any():
        names = class_names or []
        worst = [
            f"{names[c] if c < len(names) else c} ({n})"
            for c, n in zip(labels[small], counts[small], strict=True)
        ]
        fewest = int(counts.min())
        hint = (
            f"use --folds {fewest} or fewer"
            if fewest >= 2
            else "a class with a single example cannot be cross-validated; remove it"
        )
        raise InputError(
            f"{what}: every class needs at least {n_splits} examples, but "
            f"{', '.join(worst)} {'has' if len(worst) == 1 else 'have'} fewer; {hint}"
        )


_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize_text(text: str) -> str:
    """A sentence's text for duplicate detection: NFKC, case-folded, every run of
    non-alphanumeric characters (punctuation, quotes, spaces) one space, stripped."""
    if not isinstance(text, str):
        raise InputError(f"normalize_text expects a str, got {type(text).__name__}")
    return " ".join(_NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


def text_groups(texts: Sequence[str]) -> np.ndarray:
    """(n,) int64 group ids: equal for sentences whose :func:`normalize_text` is equal.

    Ids follow the order in which each normalised text first appears.
    """
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(normalize_text(t), len(ids)) for t in texts], dtype=np.int64)


def stratified_folds(
    y: Any,
    n_folds: int = 10,
    *,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    groups: Any = None,
) -> list[Fold]:
    """Seeded stratified k-fold splits, optionally keeping groups of sentences together.

    Without ``groups``: scikit-learn's ``StratifiedKFold`` with shuffling; each test part
    holds every class in (almost) the same proportion as the whole corpus. With ``groups``:
    ``StratifiedGroupKFold`` with shuffling; every group lies in one test part, and the class
    proportions are kept as closely as whole groups allow. Either way the test parts
    partition the sentences, and the same arguments always give the same folds.

    Args:
        y (Tensor or array): (|E|,) class ids.
        n_folds (int, optional): :math:`k \\geq 2`. (default: ``10``)
        seed (int, optional): the shuffling seed. (default: ``0``)
        class_names (sequence of str, optional): names used in error messages.
        groups (array, optional): (|E|,) group ids, e.g. :func:`text_groups`; ``None`` for
            plain stratified folds. (default: ``None``)

    Raises:
        InputError: ``n_folds`` < 2, a class with fewer than ``n_folds`` examples (the
            message suggests a number of folds that works), ``groups`` of the wrong length or
            fewer groups than folds.
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise InputError(f"cross-validation needs at least 2 folds, got {n_folds!r}")
    y = labels_array(y)
    _check_class_counts(y, n_folds, class_names, f"{n_folds}-fold cross-validation")
    if groups is None:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(y.size), y)
    else:
        groups = np.asarray(groups)
        if groups.shape != y.shape:
            raise InputError(
                f"groups must hold one id per sentence ({y.size}), got shape {groups.shape}"
            )
        distinct = np.unique(groups).size
        if distinct < n_folds:
            raise InputError(
                f"{n_folds}-fold cross-validation needs {n_folds} groups, got {distinct}"
            )
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(y.size), y, groups)
    return [Fold(i, np.sort(train), np.sort(test)) for i, (train, test) in enumerate(splits)]


def citation_folds(
    data: Data, n_folds: int = 10, *, seed: int = 0, grouped: bool = True
) -> list[Fold]:
    """The citation study's folds of ``data``: stratified, grouped by normalised sentence text.

    ``grouped=False`` gives the plain stratified folds of earlier versions (copies of a
    sentence can then be in the training and the test part of a fold, which flatters every
    model that reads the text).

    Args:
        data (Data): the corpus graph (:func:`gnnkit.citation.to_data`) with ``y`` and
            ``text``.
        n_folds, seed: as in :func:`stratified_folds`.
        grouped (bool, optional): keep copies of a sentence in one fold. (default: ``True``)
    """
    groups = text_groups(data.text) if grouped else None
    names = getattr(data, "class_names", None)
    return stratified_folds(data.y, n_folds, seed=seed, class_names=names, groups=groups)


def inner_split(
    index: np.ndarray, labels: np.ndarray, *, fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split training sentences into a fitting part and a stratified validation part.

    Models choose epochs (early stopping) on this validation part, which comes from the
    training fold only.

    Args:
        index (array): (n,) sentence indices of the training fold.
        labels (array): (n,) their class ids.
        fraction (float, optional): the share held out for validation. (default: ``0.1``)
        seed (int, optional): the split's seed. (default: ``0``)

    Returns:
        (array, array): the fitting and the validation sentence indices (sorted).

    Raises:
        InputError: ``fraction`` outside (0, 1), ``index`` and ``labels`` of different shapes.
    """
    if not 0.0 < fraction < 1.0:
        raise InputError(f"the validation fraction must be in (0, 1), got {fraction!r}")
    index, labels = np.asarray(index), np.asarray(labels)
    if index.ndim != 1 or labels.shape != index.shape:
        raise InputError(
            f"inner_split needs one label per index (two 1-D arrays of equal length), got "
            f"index of shape {index.shape} and labels of shape {labels.shape}; pass "
            "labels=y[index]"
        )
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    fit, val = train_test_split(index, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(fit), np.sort(val)


@dataclass
class FoldView:
    """What a model may see of one fold: the graph and all text, but only the training labels.

    Attributes:
        data (Data): the corpus graph (:func:`gnnkit.citation.to_data`) *without* ``y``.
        train (array): (n_train,) training sentence indices, sorted.
        test (array): (n_test,) test sentence indices, sorted.
        y_train (array): (n_train,) the training labels, aligned with ``train``.
        num_classes (int): the number of classes.
        seed (int): the fold's seed for model initialisation and inner splits.
    """

    data: Data
    train: np.ndarray
    test: np.ndarray
    y_train: np.ndarray
    num_classes: int
    seed: int = 0

    @property
    def tokens(self) -> list[list[str]]:
        """Every sentence's tokens (training and test)."""
        return self.data.tokens

    @property
    def train_tokens(self) -> list[list[str]]:
        """The training sentences' tokens, aligned with :attr:`train`."""
        return [self.data.tokens[i] for i in self.train]

    def labels_of(self, index: np.ndarray) -> np.ndarray:
        """The training labels of the training sentences ``index`` (a test sentence raises)."""
        index = np.asarray(index, dtype=np.int64)
        position = np.searchsorted(self.train, index).clip(max=max(self.train.size - 1, 0))
        if index.size and not np.array_equal(self.train[position], index):
            raise InputError("labels_of takes training sentences only; test labels are hidden")
        return self.y_train[position]

    def class_weights(self, power: float = 1.0) -> torch.Tensor:
        """Class weights ``(n / (C * n_c)) ** power`` from the training labels (0 if absent).

        ``power=1`` is scikit-learn's ``"balanced"``; ``0.5`` a milder square-root weighting.
        """
        counts = np.bincount(self.y_train, minlength=self.num_classes).astype(np.float64)
        balanced = counts.sum() / (self.num_classes * np.maximum(counts, 1))
        weights = np.where(counts > 0, balanced**power, 0.0)
        return torch.tensor(weights, dtype=torch.float32)


def _listed(values: np.ndarray) -> str:
    """The first five ``values`` for a message: ``"3, 7"``, ``"1, 2, 3, 4, 5 ..."``."""
    return ", ".join(str(v) for v in values[:5]) + (" ..." if values.size > 5 else "")


def check_indices(name: str, index: Any, size: int, what: str) -> np.ndarray:
    """``index`` as a 1-D integer array, refused unless every entry lies in [0, ``size``).

    Negative entries are refused too: numpy and Python would silently count them from the end.
    ``what`` names the items in the message (``"sentence"``, ``"document"``...).
    """
    array = np.asarray(index)
    if array.size == 0:
        return array.astype(np.int64).reshape(0)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise InputError(
            f"{name} must be a 1-D array of {what} indices, got shape {array.shape} and "
            f"dtype {array.dtype}"
        )
    outside = (array < 0) | (array >= size)
    if outside.any():
        bad = _listed(np.unique(array[outside]))
        raise InputError(
            f"{name} holds {what} index(es) {bad} outside [0, {size}); there are {size} "
            f"{what}s, indexed 0 .. {size - 1}"
        )
    return array


def _check_fold(fold: Fold, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The fold's indices, refused when out of range, when ``train`` is not sorted and
    distinct (:meth:`FoldView.labels_of` relies on it) or when a sentence is in both parts."""
    train = check_indices("fold.train", fold.train, size, "sentence")
    test = check_indices("fold.test", fold.test, size, "sentence")
    if train.size > 1 and not (np.diff(train) > 0).all():
        raise InputError(
            f"fold {fold.index}: fold.train must be sorted and hold each sentence once; "
            "pass np.unique(train)"
        )
    shared = np.intersect1d(train, test)
    if shared.size:
        raise InputError(
            f"fold {fold.index}: sentence(s) {_listed(shared)} are in both fold.train and "
            f"fold.test ({shared.size} in all), so test labels would leak into training; a "
            "sentence belongs to one part only"
        )
    return train, test


def fold_view(data: Data, fold: Fold, *, seed: int = 0) -> FoldView:
    """The :class:`FoldView` of ``fold``: ``data`` stripped of its labels plus training labels.

    Raises:
        InputError: a fold index outside the sentences, or a sentence in both parts.
    """
    y = labels_array(data.y)
    train, test = _check_fold(fold, y.size)
    visible = Data(**{k: v for k, v in data.items() if k != "y"})
    return FoldView(
        data=visible,
        train=train,
        test=test,
        y_train=y[train].copy(),
        num_classes=int(data.num_classes),
        seed=seed,
    )
