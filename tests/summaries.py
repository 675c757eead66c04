"""Window summaries built from plain arrays, as the window engine builds them from rows and labels: the tests
compare what is read from them with scikit-learn, scipy and fairlearn on the same arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from driftline.schemas.results import FeatureProfile
from driftline.streams.core.feature_counts import CategoricalCounts, NumericCounts
from driftline.streams.core.summary import (
    BinarySummary,
    Combo,
    MulticlassSummary,
    RegressionSummary,
    binary_summary_of,
)


def binary_summary(
    truth: np.ndarray,
    predicted: np.ndarray,
    scores: np.ndarray | None = None,
    *,
    groups: dict[str, np.ndarray] | None = None,
    labelled: np.ndarray | None = None,
) -> BinarySummary:
    """Predictions (``predicted`` positive, ``scores``, ``groups`` per attribute) with ``truth`` where
    ``labelled`` (everywhere by default)."""
    n = len(predicted)
    predicted = np.asarray(predicted, dtype=bool)
    scores = np.where(predicted, 1.0, 0.0) if scores is None else np.asarray(scores, dtype=np.float64)
    rows: list[Combo] = [
        tuple(sorted((attribute, str(values[i])) for attribute, values in (groups or {}).items())) for i in range(n)
    ]
    labelled = np.ones(n, dtype=bool) if labelled is None else np.asarray(labelled, dtype=bool)
    return binary_summary_of(predicted, scores, rows, np.asarray(truth, dtype=bool)[labelled], labelled)


def multiclass_summary(truth: Sequence[str], predicted: Sequence[str]) -> MulticlassSummary:
    summary = MulticlassSummary()
    summary.add_predictions(len(predicted))
    summary.add_labels(list(predicted), list(truth))
    return summary


def regression_summary(truth: np.ndarray, predicted: np.ndarray) -> RegressionSummary:
    summary = RegressionSummary()
    summary.add_predictions(len(predicted))
    summary.add_labels(np.asarray(predicted, dtype=np.float64), np.asarray(truth, dtype=np.float64))
    return summary


def numeric_counts(values: np.ndarray, missing: int, profile: FeatureProfile) -> NumericCounts:
    counts = NumericCounts(profile)
    counts.add(np.asarray(values, dtype=np.float64), missing)
    return counts


def categorical_counts(values: Sequence[str], missing: int, profile: FeatureProfile) -> CategoricalCounts:
    counts = CategoricalCounts(profile)
    counts.add([str(v) for v in values], missing)
    return counts
