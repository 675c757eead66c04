"""A running sink (real broker, embedded ClickHouse) serves its counters and each partition's lag at /metrics,
scraped over HTTP: nothing and no lag before it reads, then exactly what it stored and a lag of 0 everywhere."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from driftline.client.producer import Monitor
from driftline.devtools.local_broker import free_port
from driftline.kafka.topics import create_topics
from driftline.schemas.topics import ALL_TOPICS
from driftline.settings import Settings
from driftline.sinks.sink import SinkStats, serve

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in epoch ms
BAD = [b"\xff\xfenot json", b'"just a string"']  # not_json, wrong_shape

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(port: int) -> Samples:
    """Every sample of ``http://127.0.0.1:port/metrics``: per name, its labels (sorted pairs) and value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def send_events(settings: Settings) -> None:
    """10 predictions and 4 feedback events, one per message, and 2 messages that are no event."""
    with Monitor("credit-risk", "1.0", settings=settings, envelopes=False) as monitor:
        for i in range(10):
            monitor.log_prediction(
                {"age": 30 + i}, label=i % 2, score=0.5, prediction_id=f"p{i}", timestamp=T0 + i * 1000
            )
        for i in range(4):
            monitor.log_feedback(f"p{i}", label=1, timestamp=T0 + 60_000 + i)
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap})
    for value in BAD:
        producer.produce(settings.topic("predictions"), value, partition=0)
    assert producer.flush(30) == 0


def test_a_running_sink_serves_what_it_stored_and_each_partitions_lag_at_metrics(
    settings: Settings, clickhouse: Client
) -> None:
    create_topics(settings)
    send_events(settings)
    port = free_port()
    sink_settings = settings.sink.model_copy(update={"metrics_port": port, "sql_port": free_port()})
    config = settings.model_copy(update={"sink": sink_settings})
    partitions = {
        (("partition", str(p)), ("topic", settings.topic(spec.name)))
        for spec in ALL_TOPICS
        if spec.stored
        for p in range(settings.kafka.partitions)
    }
    stop = threading.Event()
    before: list[Samples] = []
    ended: list[SinkStats | BaseException] = []

    def opened() -> None:  # serving, and nothing read yet: the consumer is not even subscribed
        before.append(scrape(port))

    def run() -> None:
        try:
            ended.append(serve(config, stop.is_set, on_open=opened))
        except BaseException as error:
            ended.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 90
        while not (before or ended):
            assert time.monotonic() < deadline, "the sink did not open in time"
            time.sleep(0.1)
        seen: Samples = {}
        while time.monotonic() < deadline and not ended:
            seen = scrape(port)
            rows = seen.get("driftline_sink_rows_total", {})
            lag = seen.get("driftline_sink_consumer_lag", {})
            if rows.get((("table", "dead_letters"),)) == 2 and set(lag) == partitions and not any(lag.values()):
                break  # every row stored, and a lag report since the last commit
            time.sleep(0.5)
    finally:
        stop.set()
        thread.join(60)
    assert ended and isinstance(ended[0], SinkStats), ended

    assert before[0]["driftline_sink_messages_total"] == {(): 0}
    assert "driftline_sink_consumer_lag" not in before[0]  # before assignment: unknown, not 0
    assert "driftline_sink_rows_total" not in before[0]
    assert seen["driftline_sink_rows_total"] == {
        (("table", "predictions"),): 10,
        (("table", "feedback"),): 4,
        (("table", "dead_letters"),): 2,
    }, seen
    assert seen["driftline_sink_dead_letters_total"] == {(("reason", "not_json"),): 1, (("reason", "wrong_shape"),): 1}
    assert seen["driftline_sink_messages_total"] == {(): 10 + 4 + 2 + 2}  # the 2 dead letters read back too
    assert seen["driftline_sink_batches_total"][()] >= 2  # a dead letter is read in a batch after its message's
    assert seen["driftline_sink_insert_retries_total"] == {(): 0}
    assert seen["driftline_sink_commit_failures_total"] == {(): 0}
    assert seen["driftline_sink_consumer_lag"] == dict.fromkeys(partitions, 0)
    assert ended[0].messages == 18 and dict(ended[0].rows) == {"predictions": 10, "feedback": 4, "dead_letters": 2}
    assert int(clickhouse.command("SELECT count() FROM predictions FINAL")) == 10
    with pytest.raises(urllib.error.URLError):  # stopped with the sink
        scrape(port)
