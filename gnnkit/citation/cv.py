"""Cross-validation for citation sentiment: every model fitted and scored on every fold.

:func:`cross_validate` fits every model on every fold of :mod:`gnnkit.citation.folds` (in
worker processes with ``jobs``), each on the fold's :class:`~gnnkit.citation.folds.FoldView`
(no test label in it), and scores the predictions (:mod:`gnnkit.citation.metrics`). Fold
``k`` seeds its models with :func:`fold_seed`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

# Importable from here as well, for code written against gnnkit 0.2 (their home is folds).
from gnnkit.citation.folds import Fold, fold_view
from gnnkit.citation.folds import FoldView as FoldView
from gnnkit.citation.folds import check_indices as check_indices
from gnnkit.citation.folds import citation_folds as citation_folds
from gnnkit.citation.folds import inner_split as inner_split
from gnnkit.citation.folds import normalize_text as normalize_text
from gnnkit.citation.folds import stratified_folds as stratified_folds
from gnnkit.citation.folds import text_groups as text_groups
from gnnkit.citation.metrics import CVResult, evaluate, labels_array
from gnnkit.errors import InputError
from gnnkit.utils.checks import check_int, check_type
from gnnkit.utils.signals import signals_held

__all__ = ["cross_validate", "fold_seed", "set_threads"]

logger = logging.getLogger(__name__)


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


def _init_worker(payload: str, threads: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent alone handles Ctrl-C
    if threads is not None:
        set_threads(threads)
    with open(payload, "rb") as file:
        _WORKER["data"] = pickle.load(file)


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

    with tempfile.TemporaryDirectory(prefix="gnnkit-cv-") as folder:
        # The workers read the data from a file: sent with them, it would make starting each
        # one wait until it has imported its modules and read it all.
        payload = os.path.join(folder, "data.pickle")
        with open(payload, "wb") as file:
            # Plain pickle: multiprocessing's own pickler would move the caller's tensors
            # into shared memory (replacing their storage under any existing numpy views).
            pickle.dump(data, file)
        pool = ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(payload, threads),
        )
        try:
            # The workers start (on submit) with SIGINT blocked, and ignore it from their
            # initializer on: a terminal's Ctrl-C reaches the parent alone.
            with signals_held(signal.SIGINT):
                futures = {
                    pool.submit(
                        _fit_predict, None, fold, models[name], fold_seed(seed, fold.index)
                    ): (name, fold)
                    for name, fold in pairs
                }
            for future in as_completed(futures):
                yield *futures[future], *future.result()
        except BaseException:  # Ctrl-C, an error, or the caller stopped early
            with signals_held(signal.SIGINT):
                _stop(pool)
            raise
        finally:
            pool.shutdown(cancel_futures=True)


def _stop(pool: Any) -> None:
    """End ``pool``'s workers at once, running fits and all; its manager thread then finds
    them gone and fails the fits not started (``pool.shutdown`` waits for that)."""
    processes = list((pool._processes or {}).values())  # no public way before Python 3.14
    for process in processes:
        process.terminate()
    for process in processes:
        process.join()


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


def _check_plan(models: Any, folds: Any, jobs: Any) -> None:
    """Refuse what :func:`cross_validate` cannot run: no model, a factory that is not callable,
    no fold, something else than a :class:`Fold`, a ``jobs`` that is not a positive int."""
    check_int("jobs", jobs)
    check_type("models", models, Mapping, "a mapping name -> factory(seed=...)")
    if not models:
        raise InputError("cross_validate needs at least one model")
    for name, factory in models.items():
        if not callable(factory):
            raise InputError(
                f"models[{name!r}] must be callable as factory(seed=...) to make a fresh model, "
                f"got {type(factory).__name__}; pass a model class or "
                "functools.partial(make_model, 'svm'), not a model or a name"
            )
    check_type("folds", folds, Sequence, "a sequence of Fold (e.g. a list from citation_folds)")
    if not folds:
        raise InputError(
            "cross_validate needs at least one fold, got none; make them with "
            "citation_folds(data, k)"
        )
    for i, fold in enumerate(folds):
        check_type(f"folds[{i}]", fold, Fold, "a Fold (from citation_folds or stratified_folds)")


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

    Raises:
        InputError: no model, a factory that is not callable, no fold, a fold that is not a
            :class:`Fold`, ``jobs`` < 1.
    """
    _check_plan(models, folds, jobs)
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
