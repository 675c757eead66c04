"""ClickHouse DDL, rendered from :mod:`driftline.schemas.tables` and applied idempotently at start-up.

``CREATE ... IF NOT EXISTS`` for databases and tables; a table made by an older release gets the columns it
lacks (:func:`added_columns`, filled with the type's default: NULL, false or 0), and the views are replaced
at every start so they show them. ``SCHEMA_VERSION`` is recorded in ``schema_version`` (1: the first tables;
2: ``too_few_samples``, the reference's accuracy on windows and profiles).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from driftline.schemas.dead_letters import Reason
from driftline.schemas.tables import ALL_TABLES, Column, Table

ORIGIN_COLUMNS = ("source_partition", "source_offset", "envelope_index")
"""Where a raw event was read: the columns a raw row and its dead letter share."""

SCHEMA_VERSION = 2


def _quote(name: str) -> str:
    return f"`{name}`"


def _column(column: Column) -> str:
    return f"{_quote(column.name)} {column.type} COMMENT '{column.meaning.replace(chr(39), chr(39) * 2)}'"


def create_table(database: str, table: Table) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for one table: a ReplacingMergeTree on its natural key."""
    columns = ",\n    ".join(_column(c) for c in table.columns)
    engine = f"ReplacingMergeTree({_quote(table.version)})" if table.version else "ReplacingMergeTree"
    partition = f"\nPARTITION BY {table.partition_by}" if table.partition_by else ""
    order = ", ".join(map(_quote, table.order_by))
    return (
        f"CREATE TABLE IF NOT EXISTS {database}.{table.name} (\n    {columns}\n) "
        f"ENGINE = {engine}{partition}\nORDER BY ({order})"
    )


def added_columns(database: str, table: Table, existing: Collection[str]) -> list[str]:
    """``ALTER TABLE … ADD COLUMN`` for each column of ``table`` missing from ``existing`` (the columns the
    table has), each after the column it follows in ``table``; none for a table that has every column."""
    names = table.column_names
    return [
        f"ALTER TABLE {database}.{table.name} ADD COLUMN IF NOT EXISTS {_column(column)}"
        + (f" AFTER {_quote(names[i - 1])}" if i else " FIRST")
        for i, column in enumerate(table.columns)
        if column.name not in existing
    ]


def statements(
    database: str, raw_ttl_days: int | None = None, existing: Mapping[str, Collection[str]] | None = None
) -> list[str]:
    """The DDL for ``database``, in the order it must run; ``existing``: the columns of each table already
    there (by table name), which get the columns they lack.

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
        if existing and table.name in existing:
            result.extend(added_columns(database, table, existing[table.name]))
        if raw_ttl_days is not None and table.ttl_column is not None:
            result.append(
                f"ALTER TABLE {database}.{table.name} MODIFY TTL "
                f"toDateTime({_quote(table.ttl_column)}) + INTERVAL {int(raw_ttl_days)} DAY"
            )
    for table in ALL_TABLES:  # the views after every table: a view may read another table
        if table.latest_view:
            result.append(
                f"CREATE OR REPLACE VIEW {database}.{table.name}_latest AS SELECT * FROM {database}.{table.name} FINAL"
            )
        if table.counted_view:
            order = ", ".join(map(_quote, table.order_by))
            where = ", ".join(map(_quote, ORIGIN_COLUMNS))
            result.append(
                f"CREATE OR REPLACE VIEW {database}.{table.name}_counted AS "
                f"SELECT * FROM (SELECT * FROM {database}.{table.name} FINAL ORDER BY {order} "
                f"LIMIT 1 BY {', '.join(map(_quote, table.counted_view))}) "
                f"WHERE ({where}) NOT IN (SELECT {where} FROM {database}.dead_letters FINAL "
                f"WHERE reason = '{Reason.LABEL_TYPE_MISMATCH.value}' AND endsWith(source_topic, '{table.name}'))"
            )
    result.append(completeness_view(database))
    return result


def completeness_view(database: str) -> str:
    """The ``window_completeness`` view: per model version, its windows, ``closed_until`` (the latest window
    end published: every window ending by then holds all its predictions, since windows are published when they
    close) and ``final_until`` (the latest end of a window whose ``final_at`` is not after ``closed_until``: no
    label changes windows ending by then; a lower bound, as the version's event time is at least
    ``closed_until``; NULL while none is final) and ``window_s``, the size of its windows."""
    final = "arrayMap(w -> w.1, arrayFilter(w -> w.2 <= closed_until, groupArray((window_end, final_at))))"
    return (
        f"CREATE OR REPLACE VIEW {database}.window_completeness AS "
        "SELECT model_id, model_version, count() AS windows, max(window_end) AS closed_until, "
        f"if(empty({final}), NULL, arrayMax({final})) AS final_until, "
        "sum(predictions) AS predictions, sum(labelled) AS labelled, "
        "max(dateDiff('second', window_start, window_end)) AS window_s "
        f"FROM {database}.performance_windows_latest GROUP BY model_id, model_version"
    )
