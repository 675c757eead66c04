"""The worker's compact view of a valid event: the fields its windows need, already normalised.

Both decoders produce these: the fast one (:mod:`driftline.schemas.fast_decoding`) and pydantic
(:func:`prediction_record`, :func:`feedback_record` over the contract models), so the window engine never
depends on which one accepted an event.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple

from driftline.schemas.events import (
    BinaryPrediction,
    FeedbackEvent,
    PredictionEvent,
    RegressionPrediction,
    Task,
    label_text,
)


class PredictionRecord(NamedTuple):
    """A prediction: ``predicted`` is the label as text (None for regression), ``score`` the probability of
    the positive class (NaN unless binary), ``value`` the regression output (NaN otherwise)."""

    prediction_id: str
    model_id: str
    model_version: str
    timestamp: datetime
    task: Task
    predicted: str | None
    score: float
    value: float
    features: Mapping[str, object]
    sensitive: Mapping[str, str]


class FeedbackRecord(NamedTuple):
    """A true outcome: ``label`` as text for classification, or ``value`` for regression; ``offset`` and
    ``position`` say where it was read (its message's offset on its partition, its place in the envelope or -1),
    so a label the join rejects becomes a dead letter that points at it."""

    prediction_id: str
    timestamp: datetime
    label: str | None
    value: float | None
    model_id: str | None
    offset: int = -1
    position: int = -1


def prediction_record(event: PredictionEvent) -> PredictionRecord:
    """The record of a validated prediction event."""
    prediction = event.prediction
    return PredictionRecord(
        event.prediction_id,
        event.model_id,
        event.model_version,
        event.timestamp,
        event.task,
        None if isinstance(prediction, RegressionPrediction) else label_text(prediction.label),
        prediction.score if isinstance(prediction, BinaryPrediction) else math.nan,
        prediction.value if isinstance(prediction, RegressionPrediction) else math.nan,
        event.features,
        event.sensitive,
    )


def feedback_record(event: FeedbackEvent, offset: int = -1, position: int = -1) -> FeedbackRecord:
    """The record of a validated feedback event read at ``offset`` (``position`` in its envelope, or -1)."""
    return FeedbackRecord(
        event.prediction_id, event.timestamp, label_text(event.label), event.value, event.model_id, offset, position
    )
