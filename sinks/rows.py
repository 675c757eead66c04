"""Table rows from events, results and dead letters, in the column order of :mod:`driftline.schemas.tables`."""

from __future__ import annotations

import json
import math
from typing import Any

from driftline.schemas.dead_letters import DeadLetter
from driftline.schemas.decoding import Decoded
from driftline.schemas.events import FeedbackEvent, MulticlassPrediction, PredictionEvent, label_text
from driftline.schemas.records import prediction_record
from driftline.schemas.results import ReferenceProfile, RetrainTrigger, WindowResult
from driftline.schemas.tables import (
    DEAD_LETTERS,
    DETECTOR_ALARMS,
    DRIFT_WINDOWS,
    FAIRNESS_WINDOWS,
    PERFORMANCE_WINDOWS,
    REFERENCE_PROFILES,
    RETRAIN_TRIGGERS,
    Table,
)

Row = tuple[Any, ...]


def prediction_row(decoded: Decoded[PredictionEvent], features: bool = True) -> Row:
    """A ``predictions`` row: features split by type so analysts query them without parsing JSON.

    With ``features`` false (the privacy setting ``clickhouse.store_raw_features``) the row keeps no trace of
    them: empty numeric and categorical maps and no missing names.
    """
    event, prediction = decoded.event, decoded.event.prediction
    numeric: dict[str, float] = {}
    categorical: dict[str, str] = {}
    missing: list[str] = []
    kept = event.features if features else {}
    for name, value in kept.items():
        if value is None:
            missing.append(name)
        elif isinstance(value, str):
            categorical[name] = value
        else:
            numeric[name] = float(value)
    record = prediction_record(event)
    return (
        *record[:6],  # prediction_id, model_id, model_version, timestamp, task, the predicted label as text
        None if math.isnan(record.score) else record.score,  # NaN: no score (a score is in [0, 1])
        (prediction.scores or {}) if isinstance(prediction, MulticlassPrediction) else {},
        None if math.isnan(record.value) else record.value,  # NaN: not a regression (a value is finite)
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
    return _ordered(DEAD_LETTERS, {**dict(letter), "reason": letter.reason.value})  # its columns are its fields


def _ordered(table: Table, values: dict[str, Any]) -> Row:
    """``values`` of ``table``'s columns in its column order (tuples as lists: ClickHouse arrays)."""
    return tuple(list(v) if isinstance(v := values[name], tuple) else v for name in table.column_names)


def window_rows(result: WindowResult) -> dict[Table, list[Row]]:
    """A window result split into its ``performance_windows``, ``drift_windows``, ``fairness_windows`` and
    ``detector_alarms`` rows."""
    key = {
        "model_id": result.model_id,
        "model_version": result.model_version,
        "window_start": result.window_start,
        "window_end": result.window_end,
        "revision": result.revision,
    }
    return {
        PERFORMANCE_WINDOWS: [
            _ordered(PERFORMANCE_WINDOWS, {**key, "reference": result.reference, **dict(result.performance)})
        ],
        DRIFT_WINDOWS: [_ordered(DRIFT_WINDOWS, {**key, **dict(drift)}) for drift in result.drift],
        FAIRNESS_WINDOWS: [
            _ordered(
                FAIRNESS_WINDOWS,
                {**key, **{k: [] if v is None and k.endswith("_ci") else v for k, v in dict(group).items()}},
            )
            for group in result.fairness
        ],
        DETECTOR_ALARMS: [_ordered(DETECTOR_ALARMS, {**key, **dict(alarm)}) for alarm in result.alarms],
    }


def reference_profile_row(profile: ReferenceProfile) -> Row:
    """A ``reference_profiles`` row."""
    performance = profile.performance
    return _ordered(
        REFERENCE_PROFILES,
        {
            **dict(profile),
            "features": sorted(profile.features),
            "profile": profile.model_dump_json(),
            "labelled": performance.labelled if performance else 0,
            "accuracy": performance.accuracy if performance else None,
            "estimated_accuracy": performance.estimated_accuracy if performance else None,
        },
    )


def retrain_trigger_row(trigger: RetrainTrigger) -> Row:
    """A ``retrain_triggers`` row."""
    reasons = [reason.model_dump(mode="json") for reason in trigger.reasons]
    return _ordered(
        RETRAIN_TRIGGERS,
        {
            **dict(trigger),
            "rules": sorted({reason.rule for reason in trigger.reasons}),
            "reasons": json.dumps(reasons, separators=(",", ":")),
        },
    )
