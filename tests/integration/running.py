"""Running driftline's processes in integration tests: the worker as a subprocess, the sink in a thread,
the window results read back from their topic, and waiting for a condition with a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from confluent_kafka import TopicPartition

from driftline.devtools.local_broker import free_port
from driftline.kafka.reader import topic_reader
from driftline.schemas.results import WindowResult
from driftline.settings import Settings
from driftline.sinks.sink import Sink

DRIFTLINE = str(Path(sys.executable).with_name("driftline"))


def read_topic(settings: Settings, name: str, timeout_s: float = 60.0) -> list[bytes]:
    """Every message value on topic ``name`` up to its end offsets at the time of the call (a snapshot:
    complete however slowly the broker answers, or an error at the deadline)."""
    topic = settings.topic(name)
    consumer, partitions = topic_reader(settings.kafka, topic, "test-reader")
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
        remaining = {p for p, end in ends.items() if end > 0}
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while remaining:
            assert time.monotonic() < deadline, f"could not read {topic} to its end in {timeout_s:.0f} s"
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            values.append(message.value() or b"")
            if (message.offset() or 0) + 1 >= ends[message.partition() or 0]:
                remaining.discard(message.partition() or 0)
        return values
    finally:
        consumer.close()


def published_windows(settings: Settings) -> dict[str, WindowResult]:
    """The latest revision of every window on the window-results topic."""
    latest: dict[str, WindowResult] = {}
    for value in read_topic(settings, "window-results"):
        result = WindowResult.model_validate_json(value)
        if result.key not in latest or result.revision >= latest[result.key].revision:
            latest[result.key] = result
    return latest


@contextmanager
def sink_running(settings: Settings, client: Client) -> Iterator[Sink]:
    stop = threading.Event()
    sink = Sink(settings, client)
    thread = threading.Thread(target=sink.run, args=(stop.is_set,))
    thread.start()
    try:
        yield sink
    finally:
        stop.set()
        thread.join()


def wait_for(condition: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``driftline worker`` in its own process, logging to ``worker.log`` in its data dir (a pipe nobody
    reads would fill up and stall it)."""
    with (Path(env["DRIFTLINE_DATA_DIR"]) / "worker.log").open("ab") as log:
        return subprocess.Popen([DRIFTLINE, "worker", "-l", "info"], env=env, stdout=log, stderr=log)


@contextmanager
def worker_running(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    worker = start_worker(env)
    try:
        yield worker
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)


def worker_env(settings: Settings, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``driftline worker`` process with the test's settings (``extra`` on top)."""
    return {
        **os.environ,
        "DRIFTLINE_DATA_DIR": str(data_dir),
        "DRIFTLINE_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "DRIFTLINE_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "DRIFTLINE_KAFKA_PARTITIONS": str(settings.kafka.partitions),
        "DRIFTLINE_WORKER_APP_ID": settings.worker.app_id,
        "DRIFTLINE_WORKER_WEB_PORT": str(free_port()),
        "DRIFTLINE_MONITOR_WINDOW_S": str(settings.monitor.window_s),
        "DRIFTLINE_MONITOR_GRACE_S": str(settings.monitor.grace_s),
        "DRIFTLINE_MONITOR_CHECKPOINT_S": "0.3",
        "DRIFTLINE_MONITOR_IDLE_TIMEOUT_S": "1000000",
        **extra,
    }
