"""Stratified k-fold cross-validation for citation sentiment, with leakage-proof fold views.

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

:func:`cross_validate` fits every model on every fold (in worker processes with ``jobs``) and
scores the predictions (:mod:`gnnkit.citation.metrics`).
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import re
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split
from torch_geometric.data import Data

from gnnkit.citation.metrics import CVResult, evaluate, labels_array
from gnnkit.errors import InputError
from gnnkit.utils.checks import check_int

__all__ = [
    "Fold",
    "FoldView",
    "check_indices",
    "citation_folds",
    "cross_validate",
    "fold_seed",
    "fold_view",
    "inner_split",
    "normalize_text",
    "set_threads",
    "stratified_folds",
    "text_groups",
]

logger = logging.getLogger(__name__)


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
    """
    if not 0.0 < fraction < 1.0:
        raise InputError(f"the validation fraction must be in (0, 1), got {fraction!r}")
    index, labels = np.asarray(index), np.asarray(labels)
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


_WORKER: dict[str, Any] = {}


def set_threads(threads: int) -> None:
    """Use ``threads`` threads in torch and in the BLAS/OpenMP pools of numpy and scipy.

    The models here run many small operations (LSTM steps, sparse products, a truncated SVD)
    for which extra threads mostly add synchronisation; on a busy machine oversubscribed
    thread pools can make them many times slower.
    """
    from threadpoolctl import threadpool_limits

    check_int("threads", threads)
    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)


def _init_worker(payload: bytes, threads: int | None) -> None:
    if threads is not None:
        set_threads(threads)
    _WORKER["data"] = pickle.loads(payload)


#: Seeds scikit-learn's ``random_state`` takes (numpy's legacy generator): [0, 2**32).
SEED_MODULUS = 2**32


def fold_seed(seed: int, index: int) -> int:
    """The seed of fold ``index``: ``seed + index``, wrapped into [0, 2**32) so that every seed
    the command line takes (up to 2**32 - 1) gives scikit-learn a valid ``random_state``; below
    the wrap it is ``seed + index`` unchanged."""
    return (seed + index) % SEED_MODULUS


def _fit_predict(
    data: Data | None, fold: Fold, factory: Callable[..., Any], seed: int
) -> tuple[np.ndarray, float]:
    data = _WORKER["data"] if data is None else data
    view = fold_view(data, fold, seed=seed)
    start = time.perf_counter()
    model = factory(seed=seed)
    model.fit(view)
    pred = np.asarray(model.predict(view))
    return pred, time.perf_counter() - start


#: One fitted (model, fold) pair: the model's name, the fold, its predictions and seconds.
_Fitted = tuple[str, Fold, np.ndarray, float]


def _fit_here(
    data: Data, pairs: list[tuple[str, Fold]], models: Mapping[str, Callable[..., Any]], seed: int
) -> Iterator[_Fitted]:
    """Fit the (model, fold) pairs one after the other in this process."""
    for name, fold in pairs:
        yield name, fold, *_fit_predict(data, fold, models[name], fold_seed(seed, fold.index))


def _fit_in_workers(
    data: Data,
    pairs: list[tuple[str, Fold]],
    models: Mapping[str, Callable[..., Any]],
    seed: int,
    *,
    jobs: int,
    threads: int | None,
) -> Iterator[_Fitted]:
    """Fit the (model, fold) pairs in ``jobs`` spawned worker processes, in completion order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        # Plain pickle: multiprocessing's own pickler would move the caller's tensors
        # into shared memory (replacing their storage under any existing numpy views).
        initargs=(pickle.dumps(data), threads),
    ) as pool:
        futures = {
            pool.submit(_fit_predict, None, fold, models[name], fold_seed(seed, fold.index)): (
                name,
                fold,
            )
            for name, fold in pairs
        }
        try:
            for future in as_completed(futures):
                yield *futures[future], *future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _score(
    name: str, fold: Fold, pred: np.ndarray, y: np.ndarray, num_classes: int
) -> dict[str, Any]:
    """:func:`evaluate` one fit's predictions of ``fold.test`` (refusing a wrong count)."""
    if pred.shape != fold.test.shape:
        raise InputError(
            f"model {name!r} returned {pred.shape[0] if pred.ndim else 0} predictions "
            f"for {fold.test.size} test sentences"
        )
    return evaluate(y[fold.test], pred, num_classes)


def cross_validate(
    data: Data,
    models: Mapping[str, Callable[..., Any]],
    folds: Sequence[Fold],
    *,
    seed: int = 0,
    jobs: int = 1,
    threads: int | None = None,
    on_fold: Callable[[str, Fold, dict[str, Any], float], None] | None = None,
) -> CVResult:
    """Fit and score every model on every fold.

    Args:
        data (Data): the corpus graph with labels ``y`` (:func:`gnnkit.citation.to_data`).
        models (mapping): name -> ``factory(seed=...)`` returning a fresh model with
            ``fit(view)`` and ``predict(view)`` (predictions for ``view.test``), e.g.
            ``functools.partial(make_model, "svm")``.
        folds (sequence of Fold): the splits, e.g. :func:`stratified_folds`.
        seed (int, optional): base seed; fold ``k`` uses ``seed + k`` for every model,
            modulo 2**32 (:func:`fold_seed`). (default: ``0``)
        jobs (int, optional): fit this many (model, fold) pairs at once in worker processes;
            the factories must then be picklable (no lambdas), and a script must call this
            under ``if __name__ == "__main__":`` (the spawned workers re-import the main
            module). Results do not depend on ``jobs``. (default: ``1``, in this process)
        threads (int, optional): torch threads per worker process. (default: torch's default)
        on_fold (callable, optional): called as ``on_fold(name, fold, scores, seconds)`` after
            each fit, in completion order (progress bars, logging).

    Returns:
        CVResult: the scores in fold order for each model. A fold's time covers ``fit`` and
        ``predict`` (not the process start).
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InputError(f"jobs must be a positive integer, got {jobs!r}")
    if not models:
        raise InputError("cross_validate needs at least one model")
    y = labels_array(data.y)
    num_classes = int(data.num_classes)
    class_names = list(getattr(data, "class_names", None) or range(num_classes))
    pairs = [(name, fold) for fold in folds for name in models]
    if jobs == 1:
        fits = _fit_here(data, pairs, models, seed)
    else:
        fits = _fit_in_workers(data, pairs, models, seed, jobs=jobs, threads=threads)
    done: dict[tuple[str, int], tuple[dict[str, Any], float]] = {}
    with contextlib.closing(fits):  # an error here cancels the workers' pending fits
        for name, fold, pred, seconds in fits:
            scores = _score(name, fold, pred, y, num_classes)
            done[name, fold.index] = (scores, seconds)
            logger.debug(
                "fold %d %s: macro-F1 %.3f (%.1fs)", fold.index, name, scores["macro_f1"], seconds
            )
            if on_fold is not None:
                on_fold(name, fold, scores, seconds)
    result = CVResult(folds=len(folds), seed=seed, class_names=[str(c) for c in class_names])
    for name in models:  # fold order, whatever the completion order
        for fold in folds:
            scores, seconds = done[name, fold.index]
            result.scores.setdefault(name, []).append(scores)
            result.times.setdefault(name, []).append(seconds)
    return result
