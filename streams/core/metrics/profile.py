"""Reference profiles: the distribution of each feature (and of the scores and predicted labels) that a
model version's drift is measured against, built from a pandas DataFrame of training or early data.

Numeric columns get their inner decile edges (``np.quantile`` at 0.1 … 0.9, duplicates removed), the share of
the reference in each resulting bin, a seeded random sample of at most ``SAMPLE_SIZE`` values and the
standard deviation; other columns get the share of each category. Nulls count toward ``missing_rate`` only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import numpy as np
import pandas as pd

from driftline.schemas.errors import ConfigError
from driftline.schemas.events import Task
from driftline.schemas.model_contracts import DEFAULT_POSITIVE_TEXTS
from driftline.schemas.results import FeatureProfile, GroupFairness, Performance, ReferenceProfile
from driftline.streams.core.metrics.drift import numeric_bin_shares
from driftline.streams.core.metrics.reference_columns import ReferenceColumns
from driftline.streams.core.metrics.reference_performance import infer_task, reference_performance

SAMPLE_SIZE = 2_000
BINS = 10
SCORE = "__score__"
PREDICTED_LABEL = "__predicted_label__"
AMBIGUOUS = "label"  # the true outcome or the predicted label? refused unless named
DEFAULT_COLUMNS = ReferenceColumns()


def feature_profile(column: pd.Series, seed: int = 0) -> FeatureProfile:
    """The profile of one column: numeric (bool counts as numeric) or categorical."""
    present = column.dropna()
    missing_rate = 1.0 - len(present) / len(column) if len(column) else 0.0
    if pd.api.types.is_numeric_dtype(present) or pd.api.types.is_bool_dtype(present):
        values = present.to_numpy(dtype=np.float64)
        edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1])) if len(values) else np.array([])
        rng = np.random.default_rng(seed)
        sample = values if len(values) <= SAMPLE_SIZE else rng.choice(values, SAMPLE_SIZE, replace=False)
        return FeatureProfile(
            kind="numeric",
            count=len(values),
            missing_rate=missing_rate,
            bin_edges=edges.tolist(),
            bin_shares=numeric_bin_shares(values, edges.tolist()).tolist(),
            sample=np.sort(sample).tolist(),
            spread=float(np.std(values)) if len(values) else None,
        )
    shares = present.astype(str).value_counts(normalize=True)
    return FeatureProfile(
        kind="categorical",
        count=len(present),
        missing_rate=missing_rate,
        category_shares={str(k): float(v) for k, v in shares.items()},
    )


def profile_key(profile: ReferenceProfile) -> str:
    """What tells one reference profile of a model version from another: its source and creation time."""
    return f"{profile.source}:{profile.created_at.isoformat()}"


def build_profile(
    frame: pd.DataFrame,
    model_id: str,
    model_version: str,
    *,
    columns: ReferenceColumns = DEFAULT_COLUMNS,
    features: list[str] | None = None,
    task: Task | None = None,
    positive: set[str] | frozenset[str] = DEFAULT_POSITIVE_TEXTS,
    min_group_count: int = 30,
    source: Literal["training_data", "first_events"] = "training_data",
    created_at: datetime | None = None,
) -> ReferenceProfile:
    """A reference profile of ``frame``: its features, plus the scores and predicted labels when ``columns``
    has them, and then the reference's own performance
    (:func:`~driftline.streams.core.metrics.reference_performance.reference_performance` for ``task``, inferred
    when None; ``positive``: the texts of a binary model's positive label) with the true outcomes of the label
    column, and per group of the sensitive columns its rates.

    The features are ``features``, or every other column but those ``columns`` names (the sensitive ones arrive
    apart from the features), ``prediction_id`` and ``timestamp``. A column named ``label`` that ``columns`` does
    not name is refused (:class:`ConfigError`): in training data it is usually the true outcome, in logged
    predictions the predicted label, and profiling it as the wrong one is silent.
    """
    if frame.empty:
        raise ValueError("a reference profile needs at least one row")
    if features is None and AMBIGUOUS in frame and AMBIGUOUS not in columns.named():
        raise ConfigError(
            f"column {AMBIGUOUS!r} is ambiguous: name it as the true outcome (--label-column {AMBIGUOUS}) or as "
            f"the model's predicted label (--prediction-column {AMBIGUOUS})"
        )
    reserved = {*columns.named(), "prediction_id", "timestamp"}
    names = features if features is not None else [c for c in frame.columns if c not in reserved]
    profiles = {str(name): feature_profile(frame[name], seed=i) for i, name in enumerate(names)}
    prediction, score = columns.prediction, columns.score
    if score and score in frame:
        profiles[SCORE] = feature_profile(frame[score].astype(float))
    if prediction and prediction in frame:
        profiles[PREDICTED_LABEL] = feature_profile(frame[prediction].astype(str))
    performance: Performance | None = None
    fairness: list[GroupFairness] = []
    if prediction and prediction in frame and frame[prediction].notna().any():
        task = task or infer_task(frame, prediction, score)
        performance, fairness = reference_performance(frame, task, columns, positive, min_group_count)
    return ReferenceProfile(
        model_id=model_id,
        model_version=model_version,
        source=source,
        rows=len(frame),
        created_at=created_at or datetime.now(UTC),
        features=profiles,
        performance=performance,
        fairness=fairness,
    )
