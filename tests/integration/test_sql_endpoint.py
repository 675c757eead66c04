"""`driftline sql` reads through a running `driftline sink` that holds the embedded ClickHouse, read-only."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
from pathlib import Path

import pytest

from driftline.client.producer import Monitor
from driftline.devtools.local_broker import free_port
from driftline.kafka.topics import create_topics
from driftline.settings import Settings
from driftline.sinks.sql_endpoint import query_endpoint
from tests.integration.running import DRIFTLINE

pytestmark = pytest.mark.integration


def test_sql_goes_through_the_running_sink_and_cannot_write(settings: Settings, tmp_path: Path) -> None:
    create_topics(settings)
    with Monitor("churn", "2", settings=settings) as monitor:
        for i in range(25):
            monitor.log_prediction({"tenure": i}, label=i % 2, score=0.5, prediction_id=f"p{i}")
    port = free_port()
    env = {
        **os.environ,
        "DRIFTLINE_DATA_DIR": str(tmp_path),  # its own chDB path: this test process holds the session's
        "DRIFTLINE_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "DRIFTLINE_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "DRIFTLINE_SINK_GROUP_ID": f"{settings.worker.app_id}-sink",
        "DRIFTLINE_SINK_SQL_PORT": str(port),
        "DRIFTLINE_SINK_METRICS_PORT": str(free_port()),
    }
    sink = subprocess.Popen([DRIFTLINE, "sink"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        stored = 0
        while stored < 25 and time.monotonic() < deadline:
            with contextlib.suppress(urllib.error.URLError):
                stored = int(query_endpoint(port, "SELECT count() AS n FROM predictions FINAL")["n"][0])
            time.sleep(0.3)
        assert stored == 25

        read = subprocess.run(
            [DRIFTLINE, "sql", "-f", "csv", "SELECT model_id, count() AS n FROM predictions FINAL GROUP BY model_id"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert read.returncode == 0, read.stderr
        assert read.stdout.splitlines() == ["model_id,n", "churn,25"]

        write = subprocess.run(
            [DRIFTLINE, "sql", "DROP TABLE predictions"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert write.returncode == 2 and "readonly" in write.stderr.lower()
    finally:
        sink.send_signal(signal.SIGTERM)
        _, stderr = sink.communicate(timeout=60)
    assert sink.returncode == 0, stderr
    assert "Sink stopped: " in stderr


def test_sql_on_a_misspelt_database_says_so_and_creates_nothing(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DRIFTLINE_DATA_DIR": str(tmp_path),  # its own chDB path, no sink running
        "DRIFTLINE_SINK_SQL_PORT": str(free_port()),
    }

    def sql(database: str, query: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DRIFTLINE, "sql", "-f", "csv", query],
            env={**env, "DRIFTLINE_CLICKHOUSE_DATABASE": database},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    misspelt = sql("nosuchdb", "SELECT count() FROM predictions")
    assert misspelt.returncode == 2 and "no database 'nosuchdb'" in misspelt.stderr
    listed = sql("default", "SHOW DATABASES")  # ClickHouse's own database is always there
    assert listed.returncode == 0, listed.stderr
    assert "nosuchdb" not in listed.stdout.split()
    empty = sql("default", "SELECT 1 AS one WHERE 0")
    assert empty.returncode == 0 and empty.stdout == "one\n"
    table = subprocess.run(
        [DRIFTLINE, "sql", "SELECT 1 AS one WHERE 0"],
        env={**env, "DRIFTLINE_CLICKHOUSE_DATABASE": "default"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert table.returncode == 0 and "one" in table.stdout and "0 rows" in table.stdout + table.stderr
