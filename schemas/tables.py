"""Every ClickHouse table of driftline: columns with their types and meanings, and the key that makes rows
idempotent. The DDL (:mod:`driftline.schemas.ddl`), the sink's rows and the table reference in docs/tables.md
are all derived from these definitions; window tables take their columns from the result models' fields.

Every table is a ReplacingMergeTree on a natural key (the event's origin; a window's key), so any batching of
a replay collapses to the same rows. Window tables keep the highest ``revision``; their ``*_latest`` views
show only that, and analysts should read them (or use ``FINAL``).
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from driftline.schemas.results import DetectorAlarm, FeatureDrift, GroupFairness, Performance, WindowKey


@dataclass(frozen=True)
class Column:
    """One column: its name, ClickHouse type and meaning (the column reference in docs/tables.md)."""

    name: str
    type: str
    meaning: str


@dataclass(frozen=True)
class Table:
    """One table: what a row is, its columns in insert order, and its ReplacingMergeTree key."""

    name: str
    row: str
    columns: tuple[Column, ...]
    order_by: tuple[str, ...]
    version: str | None = None
    partition_by: str | None = None
    latest_view: bool = False
    ttl_column: str | None = None  # raw events expire by event time when a TTL is configured
    counted_view: tuple[str, ...] = ()  # a ``<name>_counted`` view keeps the first row (in key order) per these

    @property
    def column_names(self) -> list[str]:
        """Column names in insert order."""
        return [column.name for column in self.columns]


def _c(name: str, type_: str, meaning: str) -> Column:
    return Column(name, type_, meaning)


ORIGIN = (
    _c("schema_version", "UInt16", "version of the event contract"),
    _c("source_partition", "UInt32", "Kafka partition the event was read from"),
    _c("source_offset", "UInt64", "Kafka offset of its message"),
    _c("envelope_index", "Int32", "position in its batch envelope; -1 for a single-event message"),
)

PREDICTIONS = Table(
    "predictions",
    "prediction event",
    (
        _c("prediction_id", "String", "unique id of the prediction; joins its feedback"),
        _c("model_id", "LowCardinality(String)", "the model"),
        _c("model_version", "LowCardinality(String)", "the model's version"),
        _c("timestamp", "DateTime64(3, 'UTC')", "event time of the prediction"),
        _c("task", "LowCardinality(String)", "binary, multiclass or regression (from the prediction's shape)"),
        _c("label", "Nullable(String)", "predicted class (classification)"),
        _c("score", "Nullable(Float64)", "probability of the positive class (binary)"),
        _c("scores", "Map(String, Float64)", "probability per class (multiclass, optional)"),
        _c("value", "Nullable(Float64)", "predicted value (regression)"),
        _c("features_numeric", "Map(String, Float64)", "numeric features, booleans as 0/1: features_numeric['age']"),
        _c("features_categorical", "Map(String, String)", "string features: features_categorical['city']"),
        _c("features_missing", "Array(String)", "names of features sent as null"),
        _c("sensitive", "Map(LowCardinality(String), LowCardinality(String))", "sensitive attribute -> group"),
        _c("metadata", "String", "free-form metadata, JSON"),
        *ORIGIN,
    ),
    order_by=("model_id", "model_version", "prediction_id"),
    partition_by="toYYYYMM(timestamp)",
    ttl_column="timestamp",
)

FEEDBACK = Table(
    "feedback",
    "feedback event",
    (
        _c("prediction_id", "String", "the prediction this outcome belongs to"),
        _c("model_id", "LowCardinality(String)", "the model, empty when the sender did not say"),
        _c("timestamp", "DateTime64(3, 'UTC')", "event time of the feedback"),
        _c("label", "Nullable(String)", "true class (classification)"),
        _c("value", "Nullable(Float64)", "true value (regression)"),
        *ORIGIN,
    ),
    order_by=("prediction_id", "source_partition", "source_offset", "envelope_index"),
    partition_by="toYYYYMM(timestamp)",
    ttl_column="timestamp",
    counted_view=("prediction_id", "model_id"),
)

DEAD_LETTERS = Table(
    "dead_letters",
    "rejected message, or rejected event of a batch envelope",
    (
        _c("source_topic", "LowCardinality(String)", "topic the input was read from"),
        _c("source_partition", "UInt32", "its partition"),
        _c("source_offset", "UInt64", "its offset"),
        _c("envelope_index", "Int32", "position of the event in its envelope; -1 for a whole message"),
        _c(
            "reason",
            "LowCardinality(String)",
            "why: not_json, missing_field, wrong_type, ... (see docs/sending-events.md)",
        ),
        _c("error_class", "LowCardinality(String)", "the exception class that rejected it"),
        _c("message", "String", "the field, the value and what was expected"),
        _c("original", "String", "the original bytes (an oversized message: its first 64 KiB)"),
    ),
    order_by=("source_topic", "source_partition", "source_offset", "envelope_index"),
)

REFERENCE_PROFILES = Table(
    "reference_profiles",
    "reference profile of a model version (the latest one built)",
    (
        _c("model_id", "LowCardinality(String)", "the model"),
        _c("model_version", "LowCardinality(String)", "the model's version"),
        _c("source", "LowCardinality(String)", "training_data or first_events"),
        _c("rows", "UInt64", "rows the profile was built from"),
        _c("created_at", "DateTime64(3, 'UTC')", "when it was built"),
        _c("features", "Array(String)", "profiled features"),
        _c("profile", "String", "the whole profile, JSON (bins, shares, quantiles per feature)"),
        _c("labelled", "UInt64", "rows with a true outcome (reference build --label-column)"),
        _c("accuracy", "Nullable(Float64)", "the reference's accuracy: what accuracy_below compares windows with"),
        _c("estimated_accuracy", "Nullable(Float64)", "the reference's estimated accuracy (binary, from scores)"),
    ),
    order_by=("model_id", "model_version"),
    version="created_at",
)

RETRAIN_TRIGGERS = Table(
    "retrain_triggers",
    "retraining decision",
    (
        _c("trigger_id", "String", "sha256 of model, version, window start and sorted problems (rule/metric)"),
        _c("model_id", "LowCardinality(String)", "the model"),
        _c("model_version", "LowCardinality(String)", "the model's version"),
        _c("created_at", "DateTime64(3, 'UTC')", "event time of the decision"),
        _c("window_start", "DateTime64(3, 'UTC')", "start of the window in which the policy fired"),
        _c("window_end", "DateTime64(3, 'UTC')", "its end"),
        _c("severity", "LowCardinality(String)", "warning or critical"),
        _c("rules", "Array(LowCardinality(String))", "names of the rules that fired"),
        _c("reasons", "String", "every reason with metric, observed value, threshold, window, sample count (JSON)"),
        _c("evidence", "Array(String)", "keys of the evidence rows"),
    ),
    order_by=("model_id", "model_version", "trigger_id"),
)


def _clickhouse_type(annotation: Any) -> str:
    """The ClickHouse type of a result field (ints, floats, bools, strings, optional floats, intervals)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        inner = _clickhouse_type(members[0])
        return inner if inner.startswith("Array") else f"Nullable({inner})"
    if origin is tuple:
        return "Array(Float64)"
    if origin is Literal:
        return "LowCardinality(String)"
    if hasattr(annotation, "__metadata__"):  # Annotated[...]
        return _clickhouse_type(get_args(annotation)[0])
    scalar = {int: "Int64", float: "Float64", bool: "Bool", str: "LowCardinality(String)"}
    return "DateTime64(3, 'UTC')" if annotation is datetime else scalar[annotation]


def _fields(model: type[BaseModel], exclude: frozenset[str] = frozenset()) -> tuple[Column, ...]:
    return tuple(
        Column(name, _clickhouse_type(field.annotation), (field.description or "").rstrip("."))
        for name, field in model.model_fields.items()
        if name not in exclude
    )


_WINDOW = (
    *_fields(WindowKey),
    Column("revision", "UInt64", "predictions plus labels included; the highest revision is the latest"),
)

PERFORMANCE_WINDOWS = Table(
    "performance_windows",
    "model version and window",
    (
        *_WINDOW,
        Column("reference", "LowCardinality(String)", "drift reference: provided, first_events or none"),
        *_fields(Performance),
    ),
    order_by=("model_id", "model_version", "window_start"),
    version="revision",
    latest_view=True,
)
DRIFT_WINDOWS = Table(
    "drift_windows",
    "model version, window and feature",
    (*_WINDOW, *_fields(FeatureDrift)),
    order_by=("model_id", "model_version", "window_start", "feature"),
    version="revision",
    latest_view=True,
)
FAIRNESS_WINDOWS = Table(
    "fairness_windows",
    "model version, window, sensitive attribute and group",
    (*_WINDOW, *_fields(GroupFairness)),
    order_by=("model_id", "model_version", "window_start", "attribute", "group"),
    version="revision",
    latest_view=True,
)
DETECTOR_ALARMS = Table(
    "detector_alarms",
    "streaming detector alarm (the window it falls in, the event that raised it)",
    (*_WINDOW, *_fields(DetectorAlarm)),
    order_by=("model_id", "model_version", "window_start", "detector", "fired_at", "prediction_id"),
    version="revision",
    latest_view=True,
)

ALL_TABLES: tuple[Table, ...] = (
    PREDICTIONS,
    FEEDBACK,
    PERFORMANCE_WINDOWS,
    DRIFT_WINDOWS,
    FAIRNESS_WINDOWS,
    DETECTOR_ALARMS,
    REFERENCE_PROFILES,
    RETRAIN_TRIGGERS,
    DEAD_LETTERS,
)


def reference_markdown() -> str:
    """The table reference of docs/tables.md: every table, what a row is, its columns, types and meanings."""
    parts = []
    for table in ALL_TABLES:
        view = f" (read `{table.name}_latest`: the latest revision only)" if table.latest_view else ""
        if table.counted_view:
            view = (
                f" (every one sent; `{table.name}_counted` keeps the one the windows count: the first read per "
                f"{' and '.join(f'`{name}`' for name in table.counted_view)}, unless that one contradicts its "
                "prediction: a `label_type_mismatch` dead letter, and then none)"
            )
        parts.append(f"#### `{table.name}`: one row per {table.row}{view}\n")
        parts.append("| column | type | meaning |\n| --- | --- | --- |")
        parts.extend(f"| `{c.name}` | `{c.type}` | {c.meaning} |" for c in table.columns)
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"
