"""ClickHouse DDL of driftline's tables, applied idempotently at start-up (``CREATE ... IF NOT EXISTS``).

``{db}`` in each statement is replaced by the configured database. ``SCHEMA_VERSION`` is recorded in the
``schema_version`` table so a later release can tell which migrations an existing database needs.
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
    # One row per prediction event; a replay writes the same key and collapses (count with FINAL).
    """
    CREATE TABLE IF NOT EXISTS {db}.predictions (
        prediction_id String,
        model_id LowCardinality(String),
        model_version LowCardinality(String),
        timestamp DateTime64(3, 'UTC'),
        event String COMMENT 'the event as received, JSON',
        source_partition UInt32,
        source_offset UInt64
    ) ENGINE = ReplacingMergeTree
    PARTITION BY toYYYYMM(timestamp)
    ORDER BY (model_id, model_version, prediction_id)
    """,
)


def statements(database: str) -> list[str]:
    """The DDL for ``database``, in the order it must run."""
    return [statement.replace("{db}", database).strip() for statement in STATEMENTS]
