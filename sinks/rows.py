"""Table rows from events and dead letters: one function per table, with its column list beside it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from driftline.schemas.dead_letters import DeadLetter
from driftline.schemas.decoding import Decoded
from driftline.schemas.events import (
    BinaryPrediction,
    FeedbackEvent,
    MulticlassPrediction,
    PredictionEvent,
    RegressionPrediction,
)

Row = tuple[Any, ...]


@dataclass(frozen=True)
class TableSpec:
    """A table and the columns its rows fill, in order."""

    table: str
    columns: tuple[str, ...]


PREDICTIONS = TableSpec(
    "predictions",
    (
        "prediction_id",
        "model_id",
        "model_version",
        "timestamp",
        "task",
        "label",
        "score",
        "scores",
        "value",
        "features_numeric",
        "features_categorical",
        "features_missing",
        "sensitive",
        "metadata",
        "schema_version",
        "source_partition",
        "source_offset",
        "envelope_index",
    ),
)
FEEDBACK = TableSpec(
    "feedback",
    (
        "prediction_id",
        "model_id",
        "timestamp",
        "label",
        "value",
        "schema_version",
        "source_partition",
        "source_offset",
        "envelope_index",
    ),
)
DEAD_LETTERS = TableSpec(
    "dead_letters",
    (
        "source_topic",
        "source_partition",
        "source_offset",
        "envelope_index",
        "reason",
        "error_class",
        "message",
        "original",
    ),
)


def label_text(label: bool | int | str | None) -> str | None:
    """A class label as stored: booleans as ``true``/``false``, integers in decimal, strings as they are."""
    if label is None or isinstance(label, str):
        return label
    return str(label).lower() if isinstance(label, bool) else str(label)


def prediction_row(decoded: Decoded[PredictionEvent]) -> Row:
    """A ``predictions`` row: features split by type so analysts query them without parsing JSON."""
    event, prediction = decoded.event, decoded.event.prediction
    numeric: dict[str, float] = {}
    categorical: dict[str, str] = {}
    missing: list[str] = []
    for name, value in event.features.items():
        if value is None:
            missing.append(name)
        elif isinstance(value, str):
            categorical[name] = value
        else:
            numeric[name] = float(value)
    return (
        event.prediction_id,
        event.model_id,
        event.model_version,
        event.timestamp,
        event.task,
        None if isinstance(prediction, RegressionPrediction) else label_text(prediction.label),
        prediction.score if isinstance(prediction, BinaryPrediction) else None,
        (prediction.scores or {}) if isinstance(prediction, MulticlassPrediction) else {},
        prediction.value if isinstance(prediction, RegressionPrediction) else None,
        numeric,
        categorical,
        missing,
        event.sensitive,
        json.dumps(event.metadata, separators=(",", ":")) if event.metadata else "",
        event.schema_version,
        decoded.origin.partition,
        decoded.origin.offset,
        decoded.envelope_index,
    )


def feedback_row(decoded: Decoded[FeedbackEvent]) -> Row:
    """A ``feedback`` row."""
    event = decoded.event
    return (
        event.prediction_id,
        event.model_id or "",
        event.timestamp,
        label_text(event.label),
        event.value,
        event.schema_version,
        decoded.origin.partition,
        decoded.origin.offset,
        decoded.envelope_index,
    )


def dead_letter_row(letter: DeadLetter) -> Row:
    """A ``dead_letters`` row."""
    return (
        letter.source_topic,
        letter.source_partition,
        letter.source_offset,
        letter.envelope_index,
        letter.reason.value,
        letter.error_class,
        letter.message,
        letter.original,
    )
