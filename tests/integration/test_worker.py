"""The monitoring worker through the real broker and the embedded ClickHouse: exact windows, late labels,
and a SIGKILL mid-stream that changes nothing."""

from __future__ import annotations

import json
import math
import random
import signal
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, Producer, TopicPartition, murmur2
from sklearn.metrics import accuracy_score, roc_auc_score

from driftline.client.reference import publish_profile
from driftline.client.status import completeness as driftline_status
from driftline.kafka.publishing import KeyedPublisher
from driftline.kafka.topics import create_topics
from driftline.pipeline import run_in_process
from driftline.schemas.events import FeedbackEvent, PredictionEvent
from driftline.schemas.results import WindowResult
from driftline.settings import Settings
from driftline.streams.core.metrics.profile import build_profile
from tests.integration.running import (
    published_windows,
    sink_running,
    start_worker,
    wait_for,
    worker_env,
    worker_running,
)
from tests.integration.streams import WINDOW_S, windowed  # the windows ``windowed`` sets
from tests.summaries import binary_summary
from tests.two_stage import TwoStages

pytestmark = pytest.mark.integration

T0 = datetime(2026, 4, 1, tzinfo=UTC)


def scripted_stream(seed: int, windows: int, per_window: int, models: int = 1) -> list[dict[str, Any]]:
    """Predictions and their labels in event-time order; one prediction arrives twice, one label comes first;
    then predictions of every model in a later window (ids ``clock-*``, never closed) close the others."""
    rng = np.random.default_rng(seed)
    events: list[tuple[datetime, int, dict[str, Any]]] = []
    for window in range(windows):
        for model in range(models):
            for i in range(per_window):
                stamp = T0 + timedelta(seconds=window * WINDOW_S + float(rng.uniform(0, WINDOW_S - 5)))
                score = float(rng.random())
                pid = f"m{model}-w{window}-{i}"
                prediction = {
                    "kind": "prediction",
                    "prediction_id": pid,
                    "model": f"model-{model}",
                    "timestamp": stamp,
                    "features": {"x": float(rng.normal(window, 1)), "city": str(rng.choice(["a", "b", "c"]))},
                    "label": int(score >= 0.5),
                    "score": round(score, 4),
                    "sensitive": {"g": str(rng.choice(["f", "m"]))},
                }
                events.append((stamp, len(events), prediction))
                if rng.random() < 0.8:
                    label_time = stamp + timedelta(seconds=float(rng.uniform(0.1, 3)))
                    label = int(rng.random() < score)
                    events.append(
                        (
                            label_time,
                            len(events),
                            {
                                "kind": "feedback",
                                "prediction_id": pid,
                                "model": f"model-{model}",
                                "timestamp": label_time,
                                "label": label,
                            },
                        )
                    )
    events.sort(key=lambda item: (item[0], item[1]))
    ordered = [event for _, _, event in events]
    first_prediction = next(i for i, e in enumerate(ordered) if e["kind"] == "prediction")
    ordered.insert(first_prediction + 3, dict(ordered[first_prediction]))  # a duplicate prediction id
    label_at = next(i for i, e in enumerate(ordered) if e["kind"] == "feedback")
    label = ordered.pop(label_at)
    ordered.insert(0, label)  # a label before its prediction
    closing = T0 + timedelta(seconds=windows * WINDOW_S + 3 * WINDOW_S)  # past the last window + any grace used
    ordered.extend(
        {
            "kind": "prediction",
            "prediction_id": f"clock-{model}-{p}",
            "model": f"model-{model}",
            "timestamp": closing,
            "features": {},
            "label": 0,
            "score": 0.5,
            "sensitive": {},
        }
        for model in range(models)
        for p in range(16)  # spread over every partition, so every partition's watermark moves on
    )
    return ordered


def contract_event(event: dict[str, Any]) -> PredictionEvent | FeedbackEvent:
    """The contract event of a scripted event."""
    if event["kind"] == "prediction":
        return PredictionEvent.model_validate(
            {
                "prediction_id": event["prediction_id"],
                "model_id": event["model"],
                "model_version": "1",
                "timestamp": event["timestamp"],
                "features": event["features"],
                "prediction": {"label": event["label"], "score": event["score"]},
                "sensitive": event["sensitive"],
            }
        )
    return FeedbackEvent(
        prediction_id=event["prediction_id"],
        timestamp=event["timestamp"],
        label=event["label"],
        model_id=event["model"],
    )


def send(settings: Settings, events: list[dict[str, Any]]) -> None:
    """Produce the events in their order through one producer, so each partition's log keeps that order
    (several producers deliver independently, and one that connects late lands its events far behind the
    others': further in event time than a test's grace)."""
    producer = Producer({**settings.kafka.client_config(), "enable.idempotence": True, "linger.ms": 20})
    partitions = settings.kafka.partitions
    for event in events:
        key = event["prediction_id"].encode()
        topic = settings.topic("predictions" if event["kind"] == "prediction" else "feedback")
        payload = contract_event(event).model_dump_json(exclude_none=True).encode()
        while True:
            try:
                producer.produce(topic, payload, key=key, partition=murmur2(key, partitions))
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def expected_windows(
    settings: Settings, events: list[dict[str, Any]], profiles: dict[str, Any]
) -> dict[str, WindowResult]:
    """The final result of every window, from the engine fed the same events without Kafka."""
    engine = TwoStages(settings.monitor, profile_for=lambda m, v: profiles.get(m), partitions=settings.kafka.partitions)
    final: dict[str, WindowResult] = {}
    for event in events:
        partition = murmur2(event["prediction_id"].encode(), settings.kafka.partitions)
        decoded = contract_event(event)
        if isinstance(decoded, PredictionEvent):
            engine.add_prediction(decoded, partition)
        else:
            engine.add_feedback(decoded, partition)
    for result in engine.advance().results:
        final[result.key] = result
    return final


def assert_same(actual: dict[str, WindowResult], expected: dict[str, WindowResult]) -> None:
    assert actual.keys() == expected.keys()

    def close(a: Any, b: Any, where: str) -> None:
        if isinstance(a, dict):
            assert a.keys() == b.keys(), where
            for key in a:
                close(a[key], b[key], f"{where}.{key}")
        elif isinstance(a, list):
            assert len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                close(x, y, f"{where}[{i}]")
        elif isinstance(a, float) and isinstance(b, float):
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{where}: {a} != {b}"
        else:
            assert a == b, f"{where}: {a!r} != {b!r}"

    for key, result in expected.items():
        close(actual[key].model_dump(), result.model_dump(), key)


def worker_metrics(port: int) -> dict[str, float]:
    """The worker's Prometheus page as {name{labels}: value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"}


def assert_complete(settings: Settings, clickhouse: Client, predictions: int) -> None:
    """model-0's two windows are closed in window_completeness and `driftline status`, which says the clock
    predictions' window waits."""
    completeness = clickhouse.query(
        "SELECT windows, closed_until, predictions FROM window_completeness WHERE model_id = 'model-0'"
    ).result_rows
    end = (T0 + timedelta(seconds=2 * WINDOW_S)).replace(tzinfo=None)
    assert completeness == [(2, end, predictions)]
    [status] = driftline_status(settings, "model-0").to_dict("records")
    assert status["closed_until"] == end and "closes when its predictions pass" in status["waiting"]


def assert_closed_until(metrics: dict[str, float], end: datetime, horizon_s: float) -> None:
    """model-0's windows are closed at least up to ``end`` on /metrics, and final a horizon earlier."""
    version = '{model_id="model-0",model_version="1"}'
    closed = metrics[f"driftline_windows_closed_until_seconds{version}"]
    assert closed >= end.timestamp()
    assert metrics[f"driftline_windows_final_until_seconds{version}"] == closed - horizon_s


def test_scripted_stream_yields_exact_windows_in_clickhouse_and_late_labels_raise_the_revision(
    settings: Settings, clickhouse: Client
) -> None:
    settings = windowed(settings)
    create_topics(settings)
    events = scripted_stream(seed=1, windows=2, per_window=150)
    reference = build_profile(
        pd.DataFrame({"x": np.random.default_rng(0).normal(0, 1, 500), "city": ["a", "b", "c", "a"] * 125}),
        "model-0",
        "1",
    )
    publish_profile(settings, reference)
    send(settings, events)

    # stopped once the windows are out and a checkpoint saved after them (windows go out as they close, before
    # the state holding them is saved): the process restored below then starts from all it read
    monitor = run_in_process(
        settings, lambda m: m.counts["windows_emitted"] >= 2 and m.last_checkpoint > m.last_emit, timeout_s=90
    )
    with sink_running(settings, clickhouse) as sink:
        wait_for(lambda: sink.stats.rows["performance_windows"] >= 2)

    assert monitor.counts["predictions"] == sum(e["kind"] == "prediction" for e in events)  # duplicate included
    rows = clickhouse.query(
        "SELECT window_start, predictions, labelled, revision, accuracy, roc_auc, reference "
        "FROM performance_windows_latest WHERE model_id = 'model-0' ORDER BY window_start"
    ).result_rows
    assert len(rows) == 2
    for window, row in enumerate(rows):
        start = T0 + timedelta(seconds=window * WINDOW_S)
        predicted = {
            e["prediction_id"]: e
            for e in events
            if e["kind"] == "prediction"
            and start <= e["timestamp"] < start + timedelta(seconds=WINDOW_S)
            and e["model"] == "model-0"
        }
        labels = {
            e["prediction_id"]: e["label"]
            for e in events
            if e["kind"] == "feedback" and e["prediction_id"] in predicted
        }
        y = [labels[p] for p in labels]
        scores = [predicted[p]["score"] for p in labels]
        assert row[0] == start.replace(tzinfo=None)
        assert (row[1], row[2], row[3]) == (len(predicted), len(labels), len(predicted) + len(labels))
        assert row[4] == pytest.approx(accuracy_score(y, [int(s >= 0.5) for s in scores]))
        bound = binary_summary(np.array(y), np.array(scores) >= 0.5, np.array(scores)).roc_auc_bound()  # score bins
        assert bound is not None and abs(row[5] - roc_auc_score(y, scores)) <= bound + 1e-12
        assert row[6] == "provided"
    drift = clickhouse.query("SELECT count() FROM drift_windows_latest WHERE model_id = 'model-0'").result_rows
    assert drift == [(4,)]  # x and city, two windows

    # late labels for unlabelled predictions of the first window: a higher revision replaces the row
    first = [
        e
        for e in events
        if e["kind"] == "prediction" and e["model"] == "model-0" and e["timestamp"] < T0 + timedelta(seconds=WINDOW_S)
    ]
    labelled = {e["prediction_id"] for e in events if e["kind"] == "feedback"}
    late = [
        {
            "kind": "feedback",
            "prediction_id": e["prediction_id"],
            "model": "model-0",
            "timestamp": T0 + timedelta(seconds=200),
            "label": 1,
        }
        for e in first
        if e["prediction_id"] not in labelled
    ]
    assert late
    send(settings, late)
    # a second worker process restores the first one's state (Faust apps do not restart in one process)
    env = worker_env(settings, settings.data_path)
    port = int(env["DRIFTLINE_WORKER_WEB_PORT"])

    def lag() -> float:
        return sum(v for k, v in worker_metrics(port).items() if k.startswith("driftline_consumer_lag"))

    with worker_running(env):
        wait_for(lambda: published_windows(settings)["model-0/1/" + T0.isoformat()].revision == rows[0][3] + len(late))
        wait_for(lambda: lag() == 0)  # its own deltas on window-parts read too
        metrics = worker_metrics(port)
        health = json.loads(
            urllib.request.urlopen(f"http://127.0.0.1:{env['DRIFTLINE_WORKER_WEB_PORT']}/health").read()
        )
    # the restored process counts what it read after the checkpoint: the late labels
    assert metrics['driftline_events_in_total{kind="feedback"}'] == len(late)
    assert any(k.startswith('driftline_consumer_lag{partition="1"') for k in metrics) and health["status"] == "ok"
    assert_closed_until(metrics, T0 + timedelta(seconds=2 * WINDOW_S), settings.monitor.horizon_s)
    log = (settings.data_path / "worker.log").read_text(errors="replace")
    assert [line for line in log.splitlines() if "[WARNING]" in line or "[ERROR]" in line] == []  # a healthy run
    with sink_running(settings, clickhouse) as sink:
        wait_for(lambda: sink.stats.rows["performance_windows"] >= 1)
    before = rows[0]
    after = clickhouse.query(
        "SELECT labelled, revision FROM performance_windows_latest WHERE model_id = 'model-0' ORDER BY window_start"
    ).result_rows[0]
    assert after == (before[2] + len(late), before[3] + len(late))
    assert_complete(settings, clickhouse, predictions=sum(row[1] for row in rows))


def committed_offsets(settings: Settings) -> dict[tuple[str, int], int]:
    """The source offsets the worker's group committed: it commits only what a durable checkpoint covers."""
    consumer = Consumer({**settings.kafka.client_config(), "group.id": settings.worker.app_id})
    try:
        names = (settings.topic("predictions"), settings.topic("feedback"))
        wanted = [TopicPartition(name, p) for name in names for p in range(settings.kafka.partitions)]
        return {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(wanted, timeout=10) if tp.offset >= 0}
    finally:
        consumer.close()


def test_worker_killed_mid_stream_and_restarted_gives_the_windows_of_an_uninterrupted_run(
    settings: Settings, tmp_path: Path
) -> None:
    killed_and_restarted(settings, tmp_path, models=3, windows=6, per_window=1500)  # ~50k events: seconds of work


@pytest.mark.slow
def test_a_worker_of_2000_models_killed_mid_backlog_gives_the_windows_of_an_uninterrupted_run(
    settings: Settings, tmp_path: Path
) -> None:
    """The shape that once crashed aiokafka's fetcher (KeyError in fetched_records) after a re-read of
    window-parts: many models, so many deltas per checkpoint, and a backlog read after each restart."""
    killed_and_restarted(settings, tmp_path, models=2000, windows=2, per_window=10)


def killed_and_restarted(settings: Settings, tmp_path: Path, *, models: int, windows: int, per_window: int) -> None:
    """Send a stream, SIGKILL the worker three times at random moments after it made progress, restart it:
    its windows equal those of the same events fed to the engine without Kafka, and it never crashed."""
    # the stream is sent in event-time order through one producer and the grace is wide, so no prediction is
    # late however the worker's reads of the partitions interleave: the result is order-independent
    settings = windowed(settings, grace_s=90.0)
    create_topics(settings)
    events = scripted_stream(seed=2, windows=windows, per_window=per_window, models=models)
    rng = np.random.default_rng(9)
    profiles = {
        f"model-{m}": build_profile(
            pd.DataFrame({"x": rng.normal(0, 1, 400), "city": rng.choice(["a", "b", "c"], 400)}), f"model-{m}", "1"
        )
        for m in range(models)
    }
    # a provided reference: the first events' reference depends on arrival order
    KeyedPublisher(settings.kafka, settings.topic("reference-profiles")).send(list(profiles.values()))
    send(settings, events)
    expected = expected_windows(settings, events, profiles)
    env = worker_env(settings, tmp_path)
    pause = random.Random(5)
    kills: list[dict[tuple[str, int], int]] = []
    for _ in range(3):  # SIGKILL three times, each at a random moment after the worker made progress
        worker = start_worker(env)
        wait_for(lambda: committed_offsets(settings) != (kills[-1] if kills else {}), timeout_s=90)
        time.sleep(pause.uniform(0.0, 0.5))
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
        kills.append(committed_offsets(settings))
    actual: dict[str, WindowResult] = {}
    with worker_running(env) as worker:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            actual = published_windows(settings)
            if actual.keys() == expected.keys() and all(actual[k].revision == expected[k].revision for k in expected):
                break
        assert worker.poll() is None, "the restarted worker exited"
    assert len(kills) == 3
    assert len(expected) == models * windows
    print(f"\ncommitted offsets at the kills: {kills}")
    log_tail = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
    try:
        assert_same(actual, expected)
    except AssertionError as error:
        raise AssertionError(f"{error}\n--- worker log (tail) ---\n{log_tail}") from None
