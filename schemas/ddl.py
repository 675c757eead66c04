"""ClickHouse DDL of driftline's tables, applied idempotently at start-up (``CREATE ... IF NOT EXISTS``).

Row identity comes from natural keys (the event's origin; a window's key and revision), and every table is
a ReplacingMergeTree on that key, so any batching of a replay collapses to the same rows: count with
``FINAL`` or through the ``*_latest`` views. ``{db}`` is replaced by the configured database;
``SCHEMA_VERSION`` is recorded in ``schema_version`` so a later release can tell which migrations to run.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

STATEMENTS: tuple[str, ...] = (
    "CREATE DATABASE IF NOT EXISTS {db}",
    """
    CREATE TABLE IF NOT EXISTS {db}.schema_version (
        version UInt32,
        applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
    ) ENGINE = ReplacingMergeTree ORDER BY version
    """,
    """
    CREATE TABLE IF NOT EXISTS {db}.predictions (
        prediction_id String COMMENT 'unique id of the prediction, joins its feedback',
        model_id LowCardinality(String),
        model_version LowCardinality(String),
        timestamp DateTime64(3, 'UTC') COMMENT 'event time of the prediction',
        task LowCardinality(String) COMMENT 'binary, multiclass or regression (from the prediction shape)',
        label Nullable(String) COMMENT 'predicted class (classification)',
        score Nullable(Float64) COMMENT 'probability of the positive class (binary)',
        scores Map(String, Float64) COMMENT 'probability per class (multiclass, optional)',
        value Nullable(Float64) COMMENT 'predicted value (regression)',
        features_numeric Map(String, Float64) COMMENT 'numeric features (booleans as 0/1)',
        features_categorical Map(String, String) COMMENT 'string features',
        features_missing Array(String) COMMENT 'names of features sent as null',
        sensitive Map(LowCardinality(String), LowCardinality(String)) COMMENT 'attribute -> group',
        metadata String COMMENT 'free-form metadata, JSON',
        schema_version UInt16,
        source_partition UInt32,
        source_offset UInt64,
        envelope_index Int32 COMMENT '-1 for a single-event message'
    ) ENGINE = ReplacingMergeTree
    PARTITION BY toYYYYMM(timestamp)
    ORDER BY (model_id, model_version, prediction_id)
    """,
    """
    CREATE TABLE IF NOT EXISTS {db}.feedback (
        prediction_id String COMMENT 'the prediction this outcome belongs to',
        model_id LowCardinality(String) COMMENT 'empty when the sender did not say',
        timestamp DateTime64(3, 'UTC') COMMENT 'event time of the feedback',
        label Nullable(String) COMMENT 'true class (classification)',
        value Nullable(Float64) COMMENT 'true value (regression)',
        schema_version UInt16,
        source_partition UInt32,
        source_offset UInt64,
        envelope_index Int32
    ) ENGINE = ReplacingMergeTree
    PARTITION BY toYYYYMM(timestamp)
    ORDER BY (prediction_id, source_partition, source_offset, envelope_index)
    """,
    """
    CREATE TABLE IF NOT EXISTS {db}.dead_letters (
        source_topic LowCardinality(String),
        source_partition UInt32,
        source_offset UInt64,
        envelope_index Int32 COMMENT '-1 for a whole message',
        reason LowCardinality(String) COMMENT 'one of a fixed set, e.g. not_json, missing_field',
        error_class LowCardinality(String),
        message String COMMENT 'the field, the value and what was expected',
        original String COMMENT 'the original bytes',
        stored_at DateTime64(3, 'UTC') DEFAULT now64(3)
    ) ENGINE = ReplacingMergeTree
    ORDER BY (source_topic, source_partition, source_offset, envelope_index)
    """,
)


def statements(database: str) -> list[str]:
    """The DDL for ``database``, in the order it must run."""
    return [statement.replace("{db}", database).strip() for statement in STATEMENTS]
