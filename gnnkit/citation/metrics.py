"""Scores of citation sentiment predictions: per fold (:func:`evaluate`) and over folds.

Macro-F1 is the headline: the unweighted mean of the per-class F1, so the 280 negative
sentences count as much as the 7,627 neutral ones. Also reported: micro-F1 (equal to accuracy
for single-label data), per-class F1 and the confusion matrix; :class:`CVResult` aggregates
them over folds as mean +- sample standard deviation.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score

from gnnkit.errors import InputError
from gnnkit.utils.checks import check_int, check_range

__all__ = ["CVResult", "check_labels", "evaluate", "labels_array", "macro_f1"]


def labels_array(y: Any) -> np.ndarray:
    """A numpy copy of the labels (never a view of a tensor's storage)."""
    array = y.detach().cpu().numpy().copy() if isinstance(y, torch.Tensor) else np.array(y)
    if array.ndim != 1:
        raise InputError(f"labels must be one-dimensional, got shape {tuple(array.shape)}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"labels must be integer class ids, got dtype {array.dtype}")
    return array


def check_labels(name: str, y: Any, num_classes: int) -> None:
    """Raise unless every class id in ``y`` lies in [0, ``num_classes``).

    scikit-learn's scores with ``labels=range(num_classes)`` silently drop the others, which
    would report a wrong score rather than fail.
    """
    fix = "pass the right num_classes or fix the labels"
    check_range(name, y, num_classes, fix, what="class id", unit="classes")


def evaluate(y_true: Any, y_pred: Any, num_classes: int) -> dict[str, Any]:
    """Macro-F1, micro-F1, per-class F1 and the confusion matrix (rows true, columns predicted).

    A class absent from both ``y_true`` and ``y_pred`` gets F1 0 (scikit-learn's
    ``zero_division=0``) and still counts in the macro average.

    Raises:
        InputError: labels that are not 1-D integer class ids in [0, ``num_classes``), of
            different shapes, or none at all.
    """
    check_int("num_classes", num_classes)
    y_true, y_pred = labels_array(y_true), labels_array(y_pred)
    if y_true.shape != y_pred.shape:
        raise InputError(
            f"y_true and y_pred must have the same shape, got {y_true.shape} and {y_pred.shape}"
        )
    if y_true.size == 0:
        raise InputError("evaluate needs at least one prediction, got empty y_true and y_pred")
    check_labels("y_true", y_true, num_classes)
    check_labels("y_pred", y_pred, num_classes)
    labels = list(range(num_classes))
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "macro_f1": float(np.mean(per_class)),
        "micro_f1": float(f1_score(y_true, y_pred, labels=labels, average="micro")),
        "per_class_f1": [float(v) for v in per_class],
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """The unweighted mean of the per-class F1 over ``num_classes`` classes (0 for a class
    absent from both ``y_true`` and ``y_pred``): the neural models' validation score."""
    check_labels("y_true", y_true, num_classes)
    check_labels("y_pred", y_pred, num_classes)
    return float(
        f1_score(y_true, y_pred, labels=list(range(num_classes)), average="macro", zero_division=0)
    )


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class CVResult:
    """Per-fold scores of every model; :meth:`summary` and :meth:`to_json` aggregate them."""

    folds: int
    seed: int
    class_names: list[str]
    scores: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)

    def summary(self, name: str) -> dict[str, Any]:
        """Mean +- sample std over folds, per-class F1 means, the summed confusion and time."""
        scores = self.scores[name]
        macro_mean, macro_std = _mean_std([s["macro_f1"] for s in scores])
        micro_mean, micro_std = _mean_std([s["micro_f1"] for s in scores])
        per_class = np.mean([s["per_class_f1"] for s in scores], axis=0)
        per_class_std = (
            np.std([s["per_class_f1"] for s in scores], axis=0, ddof=1)
            if len(scores) > 1
            else np.zeros(len(self.class_names))
        )
        confusion = np.sum([s["confusion"] for s in scores], axis=0)
        return {
            "macro_f1_mean": macro_mean,
            "macro_f1_std": macro_std,
            "micro_f1_mean": micro_mean,
            "micro_f1_std": micro_std,
            "per_class_f1": dict(zip(self.class_names, map(float, per_class), strict=True)),
            "per_class_f1_std": dict(zip(self.class_names, map(float, per_class_std), strict=True)),
            "time_s": float(sum(self.times[name])),
            "fold_time_s": [float(t) for t in self.times[name]],
            "macro_f1": [s["macro_f1"] for s in scores],
            "micro_f1": [s["micro_f1"] for s in scores],
            "confusion": confusion.tolist(),
        }

    def to_json(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "folds": self.folds,
            "seed": self.seed,
            "class_names": self.class_names,
            "models": {name: self.summary(name) for name in self.scores},
        }
        if extra:
            payload.update(extra)
        return payload
