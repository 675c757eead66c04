"""Performance of one window, computed once per window from its buffered predictions and labels (numpy).

Definitions (``y`` true labels, ``ŷ`` predicted labels, ``p`` scores = probability of the positive class;
TP, FP, FN counted for the positive label). A metric that is undefined for the window is ``None``:

- accuracy = mean(y = ŷ); undefined with no labelled prediction.
- precision = TP / (TP + FP); undefined when nothing was predicted positive.
- recall = TP / (TP + FN); undefined when no label is positive.
- F1 = 2·TP / (2·TP + FP + FN); undefined when that denominator is 0. Multiclass: macro F1, the mean of the
  per-class F1 over the classes present in y or ŷ (scikit-learn's ``average="macro"``).
- ROC AUC = (R₊ − n₊(n₊+1)/2) / (n₊·n₋), R₊ the sum of the positives' ranks among all scores (ties get the
  average rank): the Mann–Whitney U statistic normalised; undefined with one class only.
- log loss = −mean(y·ln p + (1−y)·ln(1−p)), p clipped to [ε, 1−ε] with ε the float64 machine epsilon.
- Brier = mean((p − y)²).
- estimated accuracy (confidence-based, as NannyML's CBPE for binary models) = mean(p if ŷ positive else
  1 − p): the expected accuracy when scores are calibrated; needs no labels; blind to concept drift.
- MAE = mean|y − ŷ|, RMSE = √mean(y − ŷ)², R² = 1 − Σ(y − ŷ)² / Σ(y − ȳ)² (undefined when y is constant).

>>> binary_performance(np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1]), np.array([0.9, 0.2, 0.4, 0.8]))["accuracy"]
0.75
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata

Metrics = dict[str, float | None]
EPSILON = float(np.finfo(np.float64).eps)


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else float(numerator / denominator)


def estimated_accuracy(predicted_positive: NDArray[np.bool_], scores: NDArray[np.float64]) -> float | None:
    """Expected accuracy from calibrated scores: mean(p if ŷ positive else 1 − p); None when empty."""
    if len(scores) == 0:
        return None
    return float(np.mean(np.where(predicted_positive, scores, 1.0 - scores)))


def roc_auc(truth: NDArray[np.bool_], scores: NDArray[np.float64]) -> float | None:
    """Area under the ROC curve via ranks (Mann–Whitney U); None unless both classes occur."""
    positives = int(truth.sum())
    negatives = len(truth) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def binary_performance(
    truth: NDArray[np.bool_] | NDArray[np.int_],
    predicted: NDArray[np.bool_] | NDArray[np.int_],
    scores: NDArray[np.float64] | None,
) -> Metrics:
    """Binary metrics of labelled predictions; ``truth`` and ``predicted`` are positive-label indicators."""
    y = np.asarray(truth, dtype=bool)
    y_hat = np.asarray(predicted, dtype=bool)
    if len(y) == 0:
        return dict.fromkeys(("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier"))
    tp = int(np.sum(y & y_hat))
    fp = int(np.sum(~y & y_hat))
    fn = int(np.sum(y & ~y_hat))
    metrics: Metrics = {
        "accuracy": float(np.mean(y == y_hat)),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "roc_auc": None,
        "log_loss": None,
        "brier": None,
    }
    if scores is not None:
        p = np.clip(scores, EPSILON, 1 - EPSILON)
        metrics["roc_auc"] = roc_auc(y, scores)
        metrics["log_loss"] = float(-np.mean(np.where(y, np.log(p), np.log(1 - p))))
        metrics["brier"] = float(np.mean((scores - y) ** 2))
    return metrics


def multiclass_performance(truth: NDArray[np.str_], predicted: NDArray[np.str_]) -> Metrics:
    """Accuracy and macro F1 (over the classes present in ``truth`` or ``predicted``)."""
    if len(truth) == 0:
        return {"accuracy": None, "f1": None}
    f1s = []
    for label in np.union1d(truth, predicted):
        tp = np.sum((truth == label) & (predicted == label))
        fp = np.sum((truth != label) & (predicted == label))
        fn = np.sum((truth == label) & (predicted != label))
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float(np.mean(truth == predicted)), "f1": float(np.mean(f1s))}


def regression_performance(truth: NDArray[np.float64], predicted: NDArray[np.float64]) -> Metrics:
    """MAE, RMSE and R² of labelled predictions."""
    if len(truth) == 0:
        return {"mae": None, "rmse": None, "r2": None}
    error = truth - predicted
    total = float(np.sum((truth - truth.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r2": None if total == 0 else 1.0 - float(np.sum(error**2)) / total,
    }
