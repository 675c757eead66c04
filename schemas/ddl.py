"""ClickHouse DDL, rendered from :mod:`driftline.schemas.tables` and applied idempotently at start-up.

``CREATE ... IF NOT EXISTS`` throughout; ``SCHEMA_VERSION`` is recorded in ``schema_version`` so a later release
can tell which migrations an existing database needs.
"""

from __future__ import annotations

from driftline.schemas.tables import ALL_TABLES, Table

SCHEMA_VERSION = 1


def _quote(name: str) -> str:
    return f"`{name}`"


def create_table(database: str, table: Table) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for one table: a ReplacingMergeTree on its natural key."""
    columns = ",\n    ".join(
        f"{_quote(c.name)} {c.type} COMMENT '{c.meaning.replace(chr(39), chr(39) * 2)}'" for c in table.columns
    )
    engine = f"ReplacingMergeTree({_quote(table.version)})" if table.version else "ReplacingMergeTree"
    partition = f"\nPARTITION BY {table.partition_by}" if table.partition_by else ""
    order = ", ".join(map(_quote, table.order_by))
    return (
        f"CREATE TABLE IF NOT EXISTS {database}.{table.name} (\n    {columns}\n) "
        f"ENGINE = {engine}{partition}\nORDER BY ({order})"
    )


def statements(database: str, raw_ttl_days: int | None = None) -> list[str]:
    """The DDL for ``database``, in the order it must run.

    With ``raw_ttl_days``, raw event tables get ``TTL toDateTime(<event time>) + INTERVAL n DAY`` (set again at
    every start, so changing the setting takes effect); without it rows are kept.
    """
    result = [
        f"CREATE DATABASE IF NOT EXISTS {database}",
        f"CREATE TABLE IF NOT EXISTS {database}.schema_version (version UInt32, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY version",
    ]
    for table in ALL_TABLES:
        result.append(create_table(database, table))
        if raw_ttl_days is not None and table.ttl_column is not None:
            result.append(
                f"ALTER TABLE {database}.{table.name} MODIFY TTL "
                f"toDateTime({_quote(table.ttl_column)}) + INTERVAL {int(raw_ttl_days)} DAY"
            )
        if table.latest_view:
            result.append(
                f"CREATE VIEW IF NOT EXISTS {database}.{table.name}_latest AS "
                f"SELECT * FROM {database}.{table.name} FINAL"
            )
        if table.counted_view:
            order = ", ".join(map(_quote, table.order_by))
            result.append(
                f"CREATE VIEW IF NOT EXISTS {database}.{table.name}_counted AS "
                f"SELECT * FROM {database}.{table.name} FINAL ORDER BY {order} "
                f"LIMIT 1 BY {', '.join(map(_quote, table.counted_view))}"
            )
    return result
