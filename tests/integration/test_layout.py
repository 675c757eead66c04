"""Topics and storage layout against the real broker and the embedded ClickHouse."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client

from driftline.kafka.topics import check_copartitioning, create_topics, delete_topics
from driftline.schemas.ddl import SCHEMA_VERSION
from driftline.settings import Settings
from driftline.sinks.clickhouse import open_client

pytestmark = pytest.mark.integration


def test_topics_are_created_once_and_join_inputs_are_co_partitioned(settings: Settings) -> None:
    first = create_topics(settings)
    again = create_topics(settings)

    assert set(first.values()) == {"created"}
    assert set(again.values()) == {"exists"} and again.keys() == first.keys()
    report = check_copartitioning(settings)
    assert report.ok, report.describe()
    assert set(report.partitions.values()) == {settings.kafka.partitions}


def test_raw_event_ttl_is_applied_and_ddl_is_idempotent(settings: Settings, clickhouse: Client) -> None:
    again = open_client(settings.clickhouse_dsn, settings.clickhouse.database, raw_ttl_days=30)
    try:
        ddl = again.command(f"SHOW CREATE TABLE {settings.clickhouse.database}.predictions")
        assert "TTL toDateTime(timestamp) + toIntervalDay(30)" in str(ddl)
        assert again.command("SELECT max(version) FROM schema_version") == SCHEMA_VERSION
        assert again.command("SELECT count() FROM schema_version") == 1
    finally:
        again.close()


def test_delete_topics_removes_only_this_prefix(settings: Settings) -> None:
    create_topics(settings)

    deleted = delete_topics(settings)

    assert sorted(deleted) == sorted(
        settings.topic(name)
        for name in (
            "predictions",
            "feedback",
            "window-results",
            "retrain-triggers",
            "dead-letters",
            "reference-profiles",
            "window-parts",
        )
    )
    assert delete_topics(settings) == []
    assert set(create_topics(settings).values()) == {"created"}
