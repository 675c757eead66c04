"""``driftline reference build``: a reference profile from training data, published for the workers.

The profile goes to the compacted ``reference-profiles`` topic (key ``model_id/model_version``), where every
worker reads it and the sink stores it in ``reference_profiles``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from driftline.kafka.publishing import KeyedPublisher
from driftline.schemas.errors import ConfigError
from driftline.schemas.events import Task
from driftline.schemas.model_contracts import positive_texts
from driftline.schemas.results import ReferenceProfile
from driftline.schemas.topics import REFERENCE_PROFILES
from driftline.settings import Settings
from driftline.streams.core.metrics.profile import build_profile
from driftline.streams.core.metrics.reference_columns import ReferenceColumns


def publish_profile(settings: Settings, profile: ReferenceProfile) -> None:
    """Send ``profile`` to the reference-profiles topic and wait for delivery."""
    KeyedPublisher(settings.kafka, settings.topic(REFERENCE_PROFILES.name)).send([profile])


def build_and_publish(settings: Settings, frame: pd.DataFrame, *args: Any, **options: Any) -> ReferenceProfile:
    """:func:`build_reference` of ``frame``, published; the arguments are :func:`build_reference`'s."""
    profile = build_reference(settings, frame, *args, **options)
    publish_profile(settings, profile)
    return profile


def build_reference(
    settings: Settings,
    frame: pd.DataFrame,
    model_id: str,
    model_version: str,
    features: list[str] | None = None,
    *,
    prediction_column: str | None = "prediction",
    score_column: str | None = "score",
    label_column: str | None = None,
    sensitive: tuple[str, ...] = (),
    task: Task | None = None,
) -> ReferenceProfile:
    """Profile ``frame`` (see :func:`~driftline.streams.core.metrics.profile.build_profile`: its features, the
    scores and predicted labels in the columns named so, and its performance with the true outcomes of
    ``label_column``) for the model's settings. Columns named here must exist, except the defaults ``prediction`` and
    ``score``. The task is ``task``, else the model's pinned one (``[models.<id>] task``), else inferred; a
    binary model's positive label is its pinned one (default 1 / true)."""
    named = [("--label-column", label_column), *(("--sensitive", c) for c in sensitive)]
    named += [("--feature", column) for column in features or ()]
    named += [("--prediction-column", prediction_column)] if prediction_column != "prediction" else []
    named += [("--score-column", score_column)] if score_column != "score" else []
    for option, column in named:
        if column is not None and column not in frame:
            raise ConfigError(f"{option} {column}: no such column; the file has {list(frame.columns)}")
    contract = settings.models.get(model_id)
    profile = build_profile(
        frame,
        model_id,
        model_version,
        columns=ReferenceColumns(prediction_column, score_column, label_column, sensitive),
        features=features,
        task=task or (contract.task if contract else None),
        positive=positive_texts(contract),
        min_group_count=settings.monitor.min_group_count,
    )
    return profile


def reference_performance_line(profile: ReferenceProfile) -> str:
    """What the relative performance rules will compare with, in one line (or why they compare with nothing)."""
    performance = profile.performance
    if performance is None:
        return "No predictions in the reference: the relative performance rules judge nothing for this version."
    parts = [f"{performance.task}, {performance.predictions:,} predictions, {performance.labelled:,} labelled"]
    for name in ("accuracy", "f1", "roc_auc", "log_loss", "estimated_accuracy", "mae", "rmse"):
        value = getattr(performance, name)
        if value is not None:
            parts.append(f"{name} {value:.4f}")
    line = "Reference performance: " + ", ".join(parts)
    if performance.accuracy is None and performance.task != "regression":
        line += " (no true labels: name them with --label-column so accuracy_below can compare with them)"
    groups = {row.attribute for row in profile.fairness}
    return line + (f"; rates per group of {', '.join(sorted(groups))}" if groups else "")
