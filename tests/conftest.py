"""Shared fixtures: the real local Kafka broker (once per session), a fresh topic prefix and a fresh
ClickHouse database per test, all in one embedded chDB path per test process."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from driftline.devtools.local_broker import LocalKafka, free_port
from driftline.settings import Settings, load_settings
from driftline.sinks.clickhouse import drop_database, open_client

pytest_plugins = ["tests.reliability_report"]  # the `reliability` fixture and the suite's summary table


def local_broker_settings(data_dir: Path) -> Settings:
    """Settings for a private local broker on free ports under ``data_dir``."""
    port, controller = free_port(), free_port()
    return load_settings(
        data_dir=data_dir,
        broker={"port": port, "controller_port": controller},
        kafka={"bootstrap": f"127.0.0.1:{port}"},
    )


@pytest.fixture
def no_driftline_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DRIFTLINE_* variable and no driftline.toml of the machine running the tests: settings at their defaults."""
    for name in list(os.environ):
        if name.startswith("DRIFTLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test session's data directory (broker data, the one chDB path)."""
    return tmp_path_factory.mktemp("driftline")


@pytest.fixture(scope="session")
def kafka_bootstrap(session_dir: Path) -> Iterator[str]:
    """The bootstrap address of a real broker: ``DRIFTLINE_KAFKA_BOOTSTRAP`` if set, else a local broker
    started for this session (and stopped after it)."""
    if os.environ.get("DRIFTLINE_KAFKA_BOOTSTRAP"):
        yield load_settings().kafka.bootstrap
        return
    broker = LocalKafka(local_broker_settings(session_dir), log=print)
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def settings(kafka_bootstrap: str, session_dir: Path) -> Settings:
    """Settings for one test: the session's broker, a fresh topic prefix, app id and ClickHouse database."""
    tag = uuid.uuid4().hex[:10]
    return load_settings(
        data_dir=session_dir,
        kafka={"bootstrap": kafka_bootstrap, "topic_prefix": f"test-{tag}.", "partitions": 2},
        clickhouse={"dsn": f"chdb://{session_dir / 'clickhouse'}", "database": f"test_{tag}"},
        worker={"app_id": f"test-{tag}", "web_port": free_port()},
    )


@pytest.fixture
def clickhouse(settings: Settings) -> Iterator[Client]:
    """A client on the test's own database in the session's embedded ClickHouse; dropped afterwards."""
    client = open_client(settings.clickhouse_dsn, settings.clickhouse.database)
    try:
        yield client
    finally:
        drop_database(client, settings.clickhouse.database)
        client.close()
