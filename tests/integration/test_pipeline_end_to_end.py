"""The three real parts together: confluent-kafka → real broker → Faust agent → embedded ClickHouse → SQL."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client

from driftline.demo import produce, sample_predictions
from driftline.pipeline import run_until
from driftline.settings import Settings
from driftline.sinks.clickhouse import open_client
from driftline.topics import check_copartitioning, create_topics

pytestmark = pytest.mark.integration


def test_message_produced_to_kafka_is_stored_by_the_faust_agent_and_read_back_by_sql(
    settings: Settings, clickhouse: Client
) -> None:
    create_topics(settings)
    events = sample_predictions(50, seed=3)
    produce(settings, events)

    store = run_until(settings, clickhouse, lambda s: s.stored >= len(events), timeout_s=60)

    assert store.stored == len(events)
    assert clickhouse.command("SELECT count() FROM predictions FINAL") == len(events)
    probe = events[17]
    row = clickhouse.query(
        "SELECT model_id, model_version, toUnixTimestamp64Milli(timestamp) FROM predictions FINAL "
        "WHERE prediction_id = {id:String}",
        parameters={"id": probe["prediction_id"]},
    ).result_rows
    assert row == [(probe["model_id"], probe["model_version"], probe["timestamp"])]


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
        assert again.command("SELECT max(version) FROM schema_version") == 1
        assert again.command("SELECT count() FROM schema_version") == 1
    finally:
        again.close()
