"""A reference's own performance: what the relative performance rules compare a version's windows with.

Read from a DataFrame of training (or logged) predictions exactly as a window's is read from its events,
through the same summaries (:mod:`driftline.streams.core.summary`), so "accuracy" means the same number in
both: the predicted labels (and scores) are the predictions, the true outcomes where present their labels,
the sensitive columns their groups. Rows without a prediction (or, binary, without a score) are left out;
rows without a true outcome count as unlabelled predictions, as in a window.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from driftline.schemas.errors import ConfigError
from driftline.schemas.events import Task, label_text
from driftline.schemas.model_contracts import BINARY_TEXTS, DEFAULT_POSITIVE_TEXTS
from driftline.schemas.results import GroupFairness, Performance
from driftline.streams.core.metrics.reference_columns import ReferenceColumns
from driftline.streams.core.summary import (
    BinarySummary,
    Combo,
    MulticlassSummary,
    RegressionSummary,
    binary_summary_of,
    performance_of,
)


def class_texts(column: pd.Series) -> list[str | None]:
    """Class labels as the worker compares them (:func:`~driftline.schemas.events.label_text`): a float that
    is a whole number (pandas reads 0/1 with gaps as 1.0) as the integer, nulls as None."""
    texts: list[str | None] = []
    for value in column.tolist():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            texts.append(None)
        elif isinstance(value, float) and value.is_integer():
            texts.append(str(int(value)))
        else:
            texts.append(label_text(value if isinstance(value, bool | int | str) else str(value)))
    return texts


def infer_task(frame: pd.DataFrame, prediction_column: str, score_column: str | None) -> Task:
    """binary when the frame has scores or its predicted labels are 0/1 or true/false; regression when they are
    numbers that are not all whole; multiclass otherwise."""
    predictions = frame[prediction_column].dropna()
    if (score_column and score_column in frame) or set(class_texts(predictions)) <= BINARY_TEXTS:
        return "binary"
    numeric = pd.api.types.is_numeric_dtype(predictions) and not pd.api.types.is_bool_dtype(predictions)
    if numeric and not np.all(np.mod(predictions.to_numpy(dtype=np.float64), 1) == 0):
        return "regression"
    return "multiclass"


def reference_performance(
    frame: pd.DataFrame,
    task: Task,
    columns: ReferenceColumns,
    positive: set[str] | frozenset[str] = DEFAULT_POSITIVE_TEXTS,
    min_group_count: int = 30,
) -> tuple[Performance, list[GroupFairness]]:
    """The performance of the predictions in ``frame`` (and, binary, the fairness rows of its sensitive
    columns), as a window of those events with those labels would report them. ``positive``: the texts of
    the positive label. A binary frame without scores has no score-based metrics (estimated accuracy, ROC AUC,
    log loss, Brier)."""
    prediction_column, score_column, label_column, sensitive = (
        columns.prediction,
        columns.score,
        columns.label,
        columns.sensitive,
    )
    if prediction_column is None:
        raise ConfigError("a reference's performance needs its predictions: name their column")
    scored = task == "binary" and bool(score_column) and score_column in frame
    kept = frame[frame[prediction_column].notna()]
    if scored:
        kept = kept[kept[score_column].notna()]
    if kept.empty:
        raise ConfigError(f"no row of the reference has a prediction in column {prediction_column!r}")
    truth = kept[label_column] if label_column else pd.Series([None] * len(kept), index=kept.index)
    labelled = truth.notna().to_numpy()
    summary: BinarySummary | MulticlassSummary | RegressionSummary
    fairness: list[GroupFairness] = []
    if task == "binary":
        predicted = np.array([text in positive for text in class_texts(kept[prediction_column])], dtype=bool)
        scores = kept[score_column].to_numpy(dtype=np.float64) if scored else predicted.astype(np.float64)
        if scored and not np.all((scores >= 0) & (scores <= 1)):
            raise ConfigError(f"column {score_column!r}: binary scores are probabilities, in [0, 1]")
        rows: list[Combo] = [
            tuple(sorted((name, str(value)) for name, value in zip(sensitive, values, strict=True) if pd.notna(value)))
            for values in kept[list(sensitive)].itertuples(index=False, name=None)
        ]
        is_positive = np.array([text in positive for text in class_texts(truth[labelled])], dtype=bool)
        summary = binary_summary_of(predicted, scores, rows, is_positive, labelled)
        fairness = summary.fairness(min_group_count)
    elif task == "multiclass":
        summary = MulticlassSummary()
        summary.add_predictions(len(kept))
        predicted_texts = class_texts(kept[prediction_column][labelled])
        summary.add_labels([t or "" for t in predicted_texts], [t or "" for t in class_texts(truth[labelled])])
    else:
        summary = RegressionSummary()
        summary.add_predictions(len(kept))
        summary.add_labels(
            kept[prediction_column][labelled].to_numpy(dtype=np.float64), truth[labelled].to_numpy(dtype=np.float64)
        )
    performance = performance_of(summary)
    if task == "binary" and not scored:
        unscored = dict.fromkeys(("estimated_accuracy", "roc_auc", "log_loss", "brier"))
        performance = performance.model_copy(update=unscored)
    return performance, fairness
