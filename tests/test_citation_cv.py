"""Cross-validation and its scores for citation sentiment (gnnkit.citation.folds, .cv, .metrics)."""

from __future__ import annotations

import functools
from typing import ClassVar

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from gnnkit.citation import (
    CitationRecord,
    Fold,
    FoldView,
    cross_validate,
    evaluate,
    fold_view,
    inner_split,
    make_model,
    stratified_folds,
    to_data,
)
from gnnkit.citation.cv import fold_seed
from gnnkit.citation.metrics import macro_f1
from gnnkit.errors import InputError


def labels(counts, seed=0):
    rng = np.random.default_rng(seed)
    return rng.permutation(np.repeat(np.arange(len(counts)), counts))


class Recorder:
    """A model that remembers the fold it saw and predicts the majority training class."""

    seen: ClassVar[dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]] = {}

    def __init__(self, tag: str, seed: int) -> None:
        self.tag, self.seed = tag, seed

    def fit(self, view: FoldView):
        assert "y" not in view.data, "a model must not see the labels of the test part"
        Recorder.seen[self.tag, self.seed] = (view.train.copy(), view.test.copy())
        self.majority = int(np.bincount(view.y_train).argmax())
        return self

    def predict(self, view: FoldView):
        return np.full(view.test.size, self.majority)


def recorder(tag: str, *, seed: int) -> Recorder:
    return Recorder(tag, seed)


def corpus(counts=(30, 12, 6), seed=0):
    y = labels(counts, seed)
    records = [
        CitationRecord(f"S{i % 7}", f"T{i % 5}", "opn"[c], f"word{c} filler {i}.", i + 1)
        for i, c in enumerate(y)
    ]
    return to_data(records)


# -- folds -------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 5, 10])
def test_folds_partition_and_are_stratified(k):
    y = labels((500, 60, 23))
    folds = stratified_folds(y, k, seed=1)
    assert len(folds) == k
    tests = np.concatenate([f.test for f in folds])
    assert np.array_equal(np.sort(tests), np.arange(y.size))  # each sentence tested once
    for fold in folds:
        assert np.intersect1d(fold.train, fold.test).size == 0
        assert fold.train.size + fold.test.size == y.size
        # Stratified: each class's test count is within one of its share.
        counts = np.bincount(y[fold.test], minlength=3)
        expected = np.bincount(y) / k
        assert np.all(np.abs(counts - expected) <= 1)


def test_folds_are_seeded():
    y = labels((100, 20, 12))
    a, b = stratified_folds(y, 4, seed=7), stratified_folds(torch.as_tensor(y), 4, seed=7)
    assert all(np.array_equal(f.test, g.test) for f, g in zip(a, b, strict=True))
    c = stratified_folds(y, 4, seed=8)
    assert not all(np.array_equal(f.test, g.test) for f, g in zip(a, c, strict=True))


def test_every_model_sees_the_same_folds():
    data = corpus()
    folds = stratified_folds(data.y, 3, seed=0)
    Recorder.seen.clear()
    models = {tag: functools.partial(recorder, tag) for tag in ("a", "b")}
    result = cross_validate(data, models, folds, seed=10)
    for fold in folds:
        train_a, test_a = Recorder.seen["a", 10 + fold.index]
        train_b, test_b = Recorder.seen["b", 10 + fold.index]
        assert np.array_equal(test_a, fold.test) and np.array_equal(test_b, fold.test)
        assert np.array_equal(train_a, train_b)
    assert result.summary("a")["macro_f1"] == result.summary("b")["macro_f1"]


def test_fold_seeds_wrap_into_scikit_learns_range():
    # fold k seeds with seed + k; past 2**32 - 1 (the largest --seed) it wraps to 0, 1...,
    # which scikit-learn's random_state takes (seed + k itself was refused)
    data = corpus()
    folds = stratified_folds(data.y, 3, seed=0)
    Recorder.seen.clear()
    cross_validate(data, {"a": functools.partial(recorder, "a")}, folds, seed=2**32 - 2)
    assert sorted(seed for _, seed in Recorder.seen) == [0, 2**32 - 2, 2**32 - 1]
    assert [fold_seed(2**32 - 1, k) for k in range(3)] == [2**32 - 1, 0, 1]
    assert [fold_seed(10, k) for k in range(3)] == [10, 11, 12]  # unchanged below the wrap


def test_too_few_examples_for_the_folds_suggests_fewer_folds():
    y = labels((40, 9, 4))
    with pytest.raises(
        InputError, match=r"positive \(9\), negative \(4\) have fewer; use --folds 4 or fewer"
    ):
        stratified_folds(y, 10, class_names=["neutral", "positive", "negative"])
    with pytest.raises(InputError, match="single example cannot be cross-validated"):
        stratified_folds(labels((40, 9, 1)), 3)
    with pytest.raises(InputError, match="at least 2 folds"):
        stratified_folds(y, 1)
    with pytest.raises(InputError, match="at least two classes"):
        stratified_folds(np.zeros(10, dtype=int), 2)
    with pytest.raises(InputError, match="integer class ids"):
        stratified_folds(np.linspace(0, 1, 10), 2)


def test_inner_split_is_stratified_and_inside_the_training_part():
    y = labels((200, 40, 20))
    train = np.arange(0, 260, 1)
    fit, val = inner_split(train, y[train], fraction=0.25, seed=0)
    assert np.intersect1d(fit, val).size == 0
    assert np.array_equal(np.sort(np.concatenate([fit, val])), train)
    assert np.bincount(y[val], minlength=3).tolist() == [50, 10, 5]
    with pytest.raises(InputError, match=r"fraction must be in \(0, 1\)"):
        inner_split(train, y[train], fraction=1.0)


def test_fold_view_hides_test_labels_and_weights_classes():
    data = corpus()
    fold = stratified_folds(data.y, 3)[0]
    view = fold_view(data, fold)
    assert "y" not in view.data and "y" in data
    assert view.num_classes == 3
    counts = np.bincount(view.y_train, minlength=3)
    expected = counts.sum() / (3 * counts)
    torch.testing.assert_close(view.class_weights().double(), torch.tensor(expected))
    torch.testing.assert_close(view.class_weights(0.5).double(), torch.tensor(expected**0.5))


def test_fold_view_refuses_overlapping_and_out_of_range_folds():
    data = corpus()  # 48 sentences
    fold = stratified_folds(data.y, 3)[0]
    leaky = Fold(0, fold.train, np.union1d(fold.test, fold.train[:2]))
    shared = ", ".join(str(i) for i in fold.train[:2])
    with pytest.raises(InputError, match=rf"sentence\(s\) {shared} are in both fold.train"):
        fold_view(data, leaky)
    with pytest.raises(InputError, match=r"fold.train holds sentence index\(es\) 48 outside"):
        fold_view(data, Fold(0, np.append(fold.train, 48), fold.test))
    # A negative index would silently count from the end.
    with pytest.raises(InputError, match=r"fold.test holds sentence index\(es\) -1 outside"):
        fold_view(data, Fold(0, fold.train, np.append(fold.test, -1)))
    with pytest.raises(InputError, match="must be sorted and hold each sentence once"):
        fold_view(data, Fold(0, fold.train[::-1], fold.test))


# -- metrics -----------------------------------------------------------------------------------


def test_evaluate_against_a_hand_count():
    y_true = [0, 0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 0, 1, 1, 0, 2, 1]
    scores = evaluate(y_true, y_pred, 3)
    # class 0: tp 3, fp 1, fn 1 -> 0.75; class 1: tp 1, fp 2, fn 1 -> 0.4; class 2: 2/3.
    assert scores["per_class_f1"] == pytest.approx([0.75, 0.4, 2 / 3])
    assert scores["macro_f1"] == pytest.approx((0.75 + 0.4 + 2 / 3) / 3)
    assert scores["micro_f1"] == pytest.approx(5 / 8)
    assert scores["confusion"] == [[3, 1, 0], [1, 1, 0], [0, 1, 1]]
    assert scores["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    with pytest.raises(InputError, match="same shape"):
        evaluate([0, 1], [0], 2)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        (
            [0, 1, 5],
            [0, 1, 2],
            r"y_true holds class id 5, out of range for 3 classes \(valid: 0 \.\. 2\)",
        ),
        ([0, -1, 2], [0, 1, 2], r"y_true holds class id -1, out of range for 3 classes"),
        ([0, 1, 2], [0, 3, 7], r"y_pred holds class id 7, out of range for 3 classes"),
    ],
)
def test_evaluate_refuses_class_ids_that_scikit_learn_would_drop(y_true, y_pred, message):
    # Before: labels outside [0, num_classes) were silently dropped (micro-F1 0.8, not 2/3).
    with pytest.raises(InputError, match=message):
        evaluate(y_true, y_pred, 3)
    with pytest.raises(InputError, match=message):
        macro_f1(np.array(y_true), np.array(y_pred), 3)


def test_evaluate_refuses_no_classes_and_no_predictions():
    with pytest.raises(InputError, match="num_classes must be an integer >= 1, got 0"):
        evaluate([0], [0], 0)
    with pytest.raises(InputError, match="at least one prediction"):
        evaluate([], [], 3)


def test_summary_aggregates_over_folds():
    data = corpus()
    folds = stratified_folds(data.y, 3)
    result = cross_validate(data, {"svm": functools.partial(make_model, "svm")}, folds)
    summary = result.summary("svm")
    per_fold = summary["macro_f1"]
    assert len(per_fold) == 3
    assert summary["macro_f1_mean"] == pytest.approx(np.mean(per_fold))
    assert summary["macro_f1_std"] == pytest.approx(np.std(per_fold, ddof=1))
    assert set(summary["per_class_f1"]) == {"neutral", "positive", "negative"}
    assert np.sum(summary["confusion"]) == data.y.numel()  # every sentence tested once
    payload = result.to_json({"extra": 1})
    assert payload["folds"] == 3 and payload["extra"] == 1
    for key in ("macro_f1_mean", "macro_f1_std", "micro_f1_mean", "per_class_f1", "time_s"):
        assert key in payload["models"]["svm"]


def test_worker_processes_give_the_same_scores_and_leave_the_data_alone():
    data = corpus()
    y_view = data.y.numpy()  # a view of the tensor's storage must stay valid
    before = y_view.copy()
    folds = stratified_folds(data.y, 3)
    models = {"svm": functools.partial(make_model, "svm", C=0.7)}
    serial = cross_validate(data, models, folds)
    parallel = cross_validate(data, models, folds, jobs=2, threads=1)
    assert serial.summary("svm")["macro_f1"] == parallel.summary("svm")["macro_f1"]
    assert np.array_equal(y_view, before)


def test_cross_validate_errors():
    data = corpus()
    folds = stratified_folds(data.y, 3)
    with pytest.raises(InputError, match=r"jobs must be an integer >= 1, got 0"):
        cross_validate(data, {"a": functools.partial(recorder, "a")}, folds, jobs=0)
    with pytest.raises(InputError, match="at least one model"):
        cross_validate(data, {}, folds)

    class Short(Recorder):
        def predict(self, view):
            return np.zeros(3, dtype=int)

    with pytest.raises(InputError, match="returned 3 predictions for"):
        cross_validate(data, {"short": lambda seed: Short("s", seed)}, folds)


@pytest.mark.parametrize("threads", [0, -1, "2", 1.5])
def test_set_threads_refuses_what_torch_cannot_use(threads):
    from gnnkit.citation.cv import set_threads

    before = torch.get_num_threads()
    with pytest.raises(InputError, match=r"threads must be an integer >= 1"):
        set_threads(threads)
    assert torch.get_num_threads() == before
