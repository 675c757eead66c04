"""`driftline run` (worker and sink in one process, real broker, its own embedded ClickHouse) ends on SIGTERM
with both stop summaries: the worker's counts and the sink's line as `driftline sink` prints it."""

from __future__ import annotations

import contextlib
import re
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
from tests.integration.running import DRIFTLINE, worker_env
from tests.integration.test_sink_metrics import T0, Samples, scrape

pytestmark = pytest.mark.integration


def test_run_prints_the_worker_and_the_sink_stop_summaries(settings: Settings, tmp_path: Path) -> None:
    create_topics(settings)
    with Monitor("credit-risk", "1.0", settings=settings, envelopes=False) as monitor:
        for i in range(10):
            monitor.log_prediction({"age": 30 + i}, label=i % 2, score=0.5, prediction_id=f"p{i}", timestamp=T0 + i)
        for i in range(4):
            monitor.log_feedback(f"p{i}", label=1, timestamp=T0 + 60_000 + i)
    metrics_port = free_port()
    env = worker_env(
        settings,
        tmp_path,  # its own chDB path: this test process holds the session's
        DRIFTLINE_SINK_GROUP_ID=f"{settings.worker.app_id}-sink",
        DRIFTLINE_SINK_SQL_PORT=str(free_port()),
        DRIFTLINE_SINK_METRICS_PORT=str(metrics_port),
        DRIFTLINE_SINK_BATCH_SECONDS="0.2",
    )
    web_port = int(env["DRIFTLINE_WORKER_WEB_PORT"])
    log = tmp_path / "run.log"
    with log.open("ab") as output:  # a pipe nobody reads would fill up with Faust's log and stall it
        run = subprocess.Popen([DRIFTLINE, "run", "-l", "info"], env=env, stdout=output, stderr=output)
    try:

        def value(port: int, name: str, **labels: str) -> float | None:
            seen: Samples = {}
            with contextlib.suppress(urllib.error.URLError, ConnectionError):
                seen = scrape(port)
            return seen.get(name, {}).get(tuple(sorted(labels.items())))

        deadline = time.monotonic() + 180
        while not (
            value(metrics_port, "driftline_sink_rows_total", table="predictions") == 10
            and value(metrics_port, "driftline_sink_rows_total", table="feedback") == 4
            and value(web_port, "driftline_events_in_total", kind="predictions") == 10
            and value(web_port, "driftline_events_in_total", kind="feedback") == 4
        ):
            assert run.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(120)
    text = log.read_text()

    assert run.returncode == 0, text[-3000:]
    assert "Worker stopped: 10 predictions, 4 feedback, 0 window results, 0 alarms, 0 triggers, dead letters {}" in text
    [sink_line] = re.findall(r"Sink stopped: .*", text)
    assert re.fullmatch(r"Sink stopped: 14 messages, rows \{.*\}, dead letters \{\}", sink_line), sink_line
    assert "'predictions': 10" in sink_line and "'feedback': 4" in sink_line
