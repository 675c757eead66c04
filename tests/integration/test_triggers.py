"""Retraining triggers end to end: a model whose accuracy drops gives exactly one decision, on the topic, in
ClickHouse and at the example subscriber (a separate process), and a worker killed and restarted mid-stream
does not decide it again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clickhouse_connect.driver.client import Client

from driftline.client.producer import Monitor
from driftline.kafka.topics import create_topics
from driftline.settings import Settings
from tests.integration.running import (
    published_windows,
    read_topic,
    sink_running,
    start_worker,
    wait_for,
    worker_env,
    worker_running,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 1, tzinfo=UTC)
WINDOW_S = 60.0
PER_WINDOW = 300
SUBSCRIBER = Path(__file__).resolve().parents[2] / "examples" / "retrain_subscriber.py"
POLICY = """
[policy]
cooldown_s = 100000

[policy.accuracy_below]
threshold = 0.85
min_samples = 100
"""


def window_events(window: int, accuracy: float, rng: np.random.Generator) -> list[tuple[str, dict[str, Any]]]:
    """One window of confident predictions whose labels agree with them with probability ``accuracy``;
    each label 1 s after its prediction."""
    events: list[tuple[datetime, str, dict[str, Any]]] = []
    for i in range(PER_WINDOW):
        stamp = T0 + timedelta(seconds=window * WINDOW_S + i * (WINDOW_S - 2) / PER_WINDOW)
        predicted = int(rng.random() < 0.5)
        label = predicted if rng.random() < accuracy else 1 - predicted
        pid = f"w{window}-{i}"
        prediction = {
            "features": {"x": float(rng.normal())},
            "label": predicted,
            "score": 0.95 if predicted else 0.05,
            "prediction_id": pid,
            "timestamp": stamp,
        }
        events.append((stamp, "prediction", prediction))
        events.append((stamp + timedelta(seconds=1), "feedback", {"label": label, "timestamp": stamp, "pid": pid}))
    events.sort(key=lambda item: item[0])
    return [(kind, event) for _stamp, kind, event in events]


def send(settings: Settings, events: list[tuple[str, dict[str, Any]]]) -> None:
    with Monitor("churn", "3", settings=settings, max_batch=50) as monitor:
        for kind, event in events:
            if kind == "prediction":
                monitor.log_prediction(**event)
            else:
                monitor.log_feedback(event["pid"], label=event["label"], timestamp=event["timestamp"])


def clock(settings: Settings, at: datetime) -> None:
    """Predictions of the model on every partition, unlabelled, moving its event time to ``at``."""
    with Monitor("churn", "3", settings=settings) as monitor:
        for p in range(16):
            pid = f"clock-{at.isoformat()}-{p}"
            monitor.log_prediction({"x": 0.0}, label=0, score=0.05, prediction_id=pid, timestamp=at)


class Subscriber:
    """examples/retrain_subscriber.py in its own process; the triggers it prints, with their arrival time."""

    def __init__(self, settings: Settings, state: Path) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(SUBSCRIBER),
                "--bootstrap",
                settings.kafka.bootstrap,
                "--topic",
                settings.topic("retrain-triggers"),
                "--group",
                f"retrainer-{settings.worker.app_id}",
                "--state",
                str(state),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.received: list[tuple[float, dict[str, Any]]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.received.append((time.monotonic(), json.loads(line)))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(30) == 0
        self._reader.join(10)


def trigger_ids_on_topic(settings: Settings) -> list[str]:
    return [json.loads(value)["trigger_id"] for value in read_topic(settings, "retrain-triggers")]


def test_accuracy_drop_gives_one_trigger_per_problem_on_the_topic_in_clickhouse_and_at_the_subscriber_across_a_restart(
    settings: Settings, clickhouse: Client, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={"monitor": settings.monitor.model_copy(update={"window_s": WINDOW_S, "grace_s": 2.0})}
    )
    create_topics(settings)
    config = tmp_path / "driftline.toml"
    config.write_text(POLICY)
    env = worker_env(settings, tmp_path, DRIFTLINE_CONFIG=str(config))
    rng = np.random.default_rng(5)
    accuracy = [0.97, 0.97, 0.97, 0.6, 0.6, 0.6, 0.6, 0.6]  # the drop starts in window 3
    subscriber = Subscriber(settings, tmp_path / "seen")
    try:
        worker = start_worker(env)
        for window in range(4):  # one window per second of wall time, as a live service would send them
            send(settings, window_events(window, accuracy[window], rng))
            time.sleep(1.0)
        closing_sent = time.monotonic()
        clock(settings, T0 + timedelta(seconds=4 * WINDOW_S + 3))  # closes window 3, the first breaching one
        wait_for(lambda: len(subscriber.received) >= 1, timeout_s=60)
        send(settings, window_events(4, accuracy[4], rng))
        latency = subscriber.received[0][0] - closing_sent
        worker.send_signal(signal.SIGKILL)  # mid-stream: later windows breach too, inside the cooldown
        worker.wait(30)

        for window in range(5, 8):
            send(settings, window_events(window, accuracy[window], rng))
        clock(settings, T0 + timedelta(seconds=8 * WINDOW_S + 5))
        with worker_running(env):
            last = f"churn/3/{(T0 + timedelta(seconds=7 * WINDOW_S)).isoformat()}"
            wait_for(lambda: last in published_windows(settings), timeout_s=90)
            time.sleep(2)  # a decision is published right after the checkpoint that emits its window: let it land
        published = set(trigger_ids_on_topic(settings))  # (a decision republished after the kill is one)
        with sink_running(settings, clickhouse) as sink:
            wait_for(
                lambda: (
                    sink.stats.rows["retrain_triggers"] >= len(published) >= 1
                    and sink.stats.rows["performance_windows"] >= 8
                    and len(subscriber.received) >= len(published)
                )
            )
    finally:
        subscriber.stop()

    decisions = [trigger for _at, trigger in subscriber.received]
    received = decisions[0]  # the drop's first decision, in its first window
    assert received["model_id"] == "churn" and received["model_version"] == "3"
    assert received["window_start"].startswith((T0 + timedelta(seconds=3 * WINDOW_S)).isoformat()[:19])
    assert {reason["rule"] for reason in received["reasons"]} & {"accuracy_below", "adwin"}
    problems = [(reason["rule"], reason["metric"]) for trigger in decisions for reason in trigger["reasons"]]
    assert len(problems) == len(set(problems))  # each problem decided once (cooldown), across the restart
    ids = [trigger["trigger_id"] for trigger in decisions]
    assert published == set(ids) and len(set(ids)) == len(ids)
    rows = clickhouse.query("SELECT trigger_id, severity FROM retrain_triggers FINAL ORDER BY trigger_id").result_rows
    assert rows == sorted((trigger["trigger_id"], trigger["severity"]) for trigger in decisions)
    rules = sorted(reason["rule"] for reason in received["reasons"])
    print(f"\ntrigger {rules} reached the subscriber {latency:.2f} s after the event closing its window was sent")
