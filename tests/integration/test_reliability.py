"""Fault injection: a killed sink, a ClickHouse outage, a broker restart, malformed input at volume, a producer
faster than the worker, and two workers of which one is killed. Each scenario checks that nothing is lost and
nothing is counted twice, and records its figures in the summary table (tests/reliability_report.py). The short
version of each runs in ``make test``; the long ones are marked ``slow`` and run by ``make test-reliability``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError
from confluent_kafka import Producer, murmur2
from prometheus_client.parser import text_string_to_metric_families

from driftline.client.reference import publish_profile
from driftline.devtools.local_broker import LocalKafka, free_port
from driftline.kafka.topics import create_topics
from driftline.pipeline import run_in_process
from driftline.schemas.results import WindowResult
from driftline.settings import Settings
from driftline.sinks.clickhouse import drop_database, open_client
from driftline.sinks.sink import Sink
from driftline.streams.core.metrics.profile import build_profile
from tests.conftest import local_broker_settings
from tests.integration.running import (
    DRIFTLINE,
    published_windows,
    sink_running,
    start_worker,
    worker_env,
    worker_running,
)
from tests.integration.streams import (
    MODEL,
    T0,
    Stored,
    Stream,
    on_client,
    stored,
    through_endpoint,
    windowed,
)
from tests.integration.test_worker import (
    assert_same,
    committed_offsets,
    expected_windows,
    scripted_stream,
    send,
)
from tests.reliability_report import Outcome

pytestmark = pytest.mark.integration


def short_and_long(*names: str, short: tuple[Any, ...], long: tuple[Any, ...]) -> pytest.MarkDecorator:
    """Run a scenario at two scales, the values of its parameters ``names``: ``short`` in ``make test``, ``long``
    (marked slow) in ``make test-reliability``."""
    return pytest.mark.parametrize(
        names, [pytest.param(*short, id="short"), pytest.param(*long, id="long", marks=pytest.mark.slow)]
    )


Record = Callable[[Outcome], None]
PERFORMANCE = (
    "SELECT window_start, predictions, labelled, accuracy FROM performance_windows_latest "
    f"WHERE model_id = '{MODEL}' ORDER BY window_start"
)


# -- helpers ------------------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout_s: float, state: Callable[[], object]) -> None:
    """Wait for ``condition`` with a deadline; on timeout, fail showing ``state()``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s:.0f} s; state: {state()}")
        time.sleep(0.2)


class Producing:
    """A stream sent by the producer client from a thread, chunk by chunk with a pause between chunks; counts
    the events handed to the client so far and keeps any error for :meth:`join` to raise."""

    def __init__(self, settings: Settings, stream: Stream, chunks: int, pause_s: float) -> None:
        self.stream = stream
        self.chunk_size = -(-len(stream.predictions) // chunks)
        self.sent = 0
        self.errors: list[BaseException] = []
        self._pause = threading.Event()  # never set: waiting on it paces the producer
        self._thread = threading.Thread(target=self._run, args=(settings, chunks, pause_s), name="producing")
        self._thread.start()

    def _run(self, settings: Settings, chunks: int, pause_s: float) -> None:
        def paced(chunk: int) -> None:
            self.sent = min(len(self.stream.predictions), (chunk + 1) * self.chunk_size) * 2
            self._pause.wait(pause_s)

        try:
            self.stream.send(settings, chunks=chunks, between_chunks=paced)
        except BaseException as error:  # raised in the test by join()
            self.errors.append(error)

    def join(self, timeout_s: float = 120.0) -> None:
        """Wait until the whole stream is delivered; raise what the producer raised."""
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the producer did not finish in time"
        if self.errors:
            raise self.errors[0]


def outcome(
    scenario: str, stream: Stream, result: Stored, compared: str, *, recovery_s: float | None, figures: str
) -> Outcome:
    """The summary row of a scenario whose stream's events should all be stored once."""
    distinct = result.distinct_predictions + result.distinct_feedback
    lost = stream.events - distinct
    return Outcome(scenario, stream.events, result.events, compared, lost, result.duplicated, recovery_s, figures)


def assert_exactly_once(stream: Stream, result: Stored) -> None:
    assert (result.predictions, result.feedback) == (len(stream.predictions), len(stream.feedback))
    assert (result.distinct_predictions, result.distinct_feedback, result.duplicated) == (
        len(stream.predictions),
        len(stream.feedback),
        0,
    )


def worker_metrics(port: int) -> dict[str, float]:
    """The worker's /metrics, each metric summed over its labels (empty while it does not answer), and
    ``partitions_read``: how many partitions it reports a consumer lag for (it has joined its group)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    metrics: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        samples = [sample for sample in family.samples if not sample.name.endswith("_created")]
        metrics[family.name] = sum(sample.value for sample in samples)
        if family.name == "driftline_consumer_lag":
            metrics["partitions_read"] = len(samples)
    return metrics


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of a live process (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def variant(settings: Settings, tag: str) -> Settings:
    """``settings`` with topics, app id, sink group and database of their own (a second run beside the first)."""
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"topic_prefix": f"{settings.kafka.topic_prefix}{tag}."}),
            "clickhouse": settings.clickhouse.model_copy(update={"database": f"{settings.clickhouse.database}_{tag}"}),
            "worker": settings.worker.model_copy(update={"app_id": f"{settings.worker.app_id}-{tag}"}),
            "sink": settings.sink.model_copy(update={"group_id": f"{settings.sink.group_id}-{tag}"}),
        }
    )


# -- sink killed and restarted --------------------------------------------------------------------------------


def sink_env(settings: Settings, data_dir: Path, sql_port: int) -> dict[str, str]:
    """A ``driftline sink`` with its own embedded ClickHouse (this process holds the session's) and batches
    small enough that a kill lands mid-load."""
    return {
        **os.environ,
        "DRIFTLINE_DATA_DIR": str(data_dir),
        "DRIFTLINE_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "DRIFTLINE_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "DRIFTLINE_SINK_GROUP_ID": f"{settings.worker.app_id}-sink",
        "DRIFTLINE_SINK_SQL_PORT": str(sql_port),
        "DRIFTLINE_SINK_METRICS_PORT": str(free_port()),
        "DRIFTLINE_SINK_BATCH_ROWS": "300",
        "DRIFTLINE_SINK_BATCH_SECONDS": "0.2",
    }


def start_sink(env: dict[str, str]) -> subprocess.Popen[bytes]:
    with (Path(env["DRIFTLINE_DATA_DIR"]) / "sink.log").open("ab") as log:
        return subprocess.Popen([DRIFTLINE, "sink"], env=env, stdout=log, stderr=log)


@short_and_long("per_window", "kills", short=(250, 1), long=(5000, 3))
def test_sink_killed_mid_load_and_restarted_stores_every_event_once(
    settings: Settings, tmp_path: Path, reliability: Record, *, per_window: int, kills: int
) -> None:
    create_topics(settings)
    stream = Stream.make(windows=2, per_window=per_window, seed=5)
    port = free_port()
    env = sink_env(settings, tmp_path, port)
    ask = through_endpoint(port)
    producing = Producing(settings, stream, chunks=20, pause_s=0.3)
    sink = start_sink(env)
    recoveries = []
    try:
        for kill in range(1, kills + 1):
            share = kill * len(stream.predictions) // (kills + 1)
            wait_until(lambda share=share: stored(ask).predictions >= share, 120, lambda: stored(ask))
            sink.send_signal(signal.SIGKILL)
            sink.wait(30)
            restarted = time.monotonic()
            sink = start_sink(env)
            wait_until(lambda: stored(ask).events >= 0, 120, lambda: (tmp_path / "sink.log").read_text()[-2000:])
            # recovered: the new sink has stored everything sent until it answered (and so consumes again)
            caught_up = producing.sent
            wait_until(lambda n=caught_up: stored(ask).events >= n, 120, lambda: stored(ask))
            recoveries.append(time.monotonic() - restarted)
        producing.join()
        wait_until(lambda: stored(ask).events == stream.events, 120, lambda: stored(ask))
        result = stored(ask)
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(60)
    reliability(
        outcome(
            f"sink SIGKILL x{kills}",
            stream,
            result,
            "rows FINAL = events sent",
            recovery_s=max(recoveries),
            figures=f"replayed rows collapsed: {result.replayed}",
        )
    )
    assert sink.returncode == 0, (tmp_path / "sink.log").read_text()[-2000:]
    assert_exactly_once(stream, result)


class CrashAfterInsert(BaseException):
    """What unwinds the sink right after an insert, as a crash would (not a storage error: never retried)."""


class CrashingClient:
    """A ClickHouse client that stores its ``after``-th insert and then crashes the sink before it commits."""

    def __init__(self, client: Client, after: int) -> None:
        self.client = client
        self.inserts_left = after

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        result = self.client.insert(*args, **kwargs)
        self.inserts_left -= 1
        if self.inserts_left == 0:
            raise CrashAfterInsert
        return result


def test_sink_crashing_between_insert_and_commit_replays_into_the_same_rows(
    settings: Settings, clickhouse: Client, reliability: Record
) -> None:
    # batches of 4 messages (envelopes of up to 200 events): several batches, each inserted in two tables
    settings = settings.model_copy(update={"sink": settings.sink.model_copy(update={"batch_rows": 4})})
    create_topics(settings)
    stream = Stream.make(windows=2, per_window=500, seed=7)
    stream.send(settings, clock=False)
    ask = on_client(clickhouse)

    deadline = time.monotonic() + 60
    with pytest.raises(CrashAfterInsert):
        crashing = Sink(settings, CrashingClient(clickhouse, after=3))  # type: ignore[arg-type]
        crashing.run(lambda: time.monotonic() > deadline)
    crashed_with = stored(ask)
    restarted = time.monotonic()
    with sink_running(settings, clickhouse):
        wait_until(lambda: stored(ask).events == stream.events, 60, lambda: stored(ask))
    result = stored(ask)
    reliability(
        outcome(
            "sink crash after insert, before commit",
            stream,
            result,
            "rows FINAL = events sent",
            recovery_s=time.monotonic() - restarted,
            figures=f"stored before the crash {crashed_with.events}; replayed rows collapsed: {result.replayed}",
        )
    )
    assert 0 < crashed_with.events < stream.events
    assert result.replayed > 0  # the batch stored before the crash was read and written again ...
    assert_exactly_once(stream, result)  # ... and collapsed into the same rows


# -- ClickHouse outage ----------------------------------------------------------------------------------------


class Outage:
    """A ClickHouse client whose inserts fail as if the server were unreachable while :attr:`down` is set."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.down = threading.Event()
        self.refused = 0

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        if self.down.is_set():
            self.refused += 1
            raise OperationalError("connection refused (injected outage)")
        return self.client.insert(*args, **kwargs)


@short_and_long("per_window", "outage_s", "pause_s", short=(500, 2, 0.2), long=(5000, 15, 1.0))
def test_clickhouse_outage_pushes_back_and_every_event_lands_once(
    settings: Settings, clickhouse: Client, reliability: Record, *, per_window: int, outage_s: float, pause_s: float
) -> None:
    create_topics(settings)
    stream = Stream.make(windows=2, per_window=per_window, seed=6)
    ask = on_client(clickhouse)
    outage = Outage(clickhouse)
    producing = Producing(settings, stream, chunks=20, pause_s=pause_s)
    with sink_running(settings, outage) as sink:  # type: ignore[arg-type]
        wait_until(lambda: stored(ask).predictions >= len(stream.predictions) // 4, 60, lambda: stored(ask))
        outage.down.set()
        began = time.monotonic()
        wait_until(lambda: outage.refused >= 1, 60, lambda: sink.stats)  # the sink is stuck on its insert
        consumed_before = sink.stats.messages
        # the outage lasts outage_s while the producer goes on sending
        wait_until(lambda: time.monotonic() - began >= outage_s and outage.refused >= 2, 120, lambda: sink.stats)
        consumed_during = sink.stats.messages - consumed_before
        outage.down.clear()
        ended, caught_up = time.monotonic(), producing.sent
        wait_until(lambda: stored(ask).events >= caught_up, 120, lambda: stored(ask))
        recovery = time.monotonic() - ended
        producing.join()
        wait_until(lambda: stored(ask).events == stream.events, 120, lambda: stored(ask))
    result = stored(ask)
    reliability(
        outcome(
            f"ClickHouse outage {ended - began:.0f} s",
            stream,
            result,
            "rows FINAL = events sent",
            recovery_s=recovery,
            figures=f"inserts refused {outage.refused}, retried {sink.stats.insert_retries}; "
            f"consumed while down: {consumed_during}",
        )
    )
    assert consumed_during == 0  # back-pressure: nothing new is consumed while ClickHouse is down
    assert sink.stats.insert_retries >= outage.refused >= 2
    assert_exactly_once(stream, result)


# -- broker restart -------------------------------------------------------------------------------------------


@contextmanager
def own_broker(directory: Path) -> Iterator[LocalKafka]:
    """A broker of the test's own (the scenario restarts it), on free ports, its data under ``directory``."""
    broker = LocalKafka(local_broker_settings(directory), log=print)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@short_and_long("per_window", "restarts", "chunks", "pause_s", short=(150, 1, 15, 0.3), long=(3000, 3, 40, 1.5))
def test_broker_restart_mid_stream_loses_nothing(
    settings: Settings,
    clickhouse: Client,
    tmp_path: Path,
    reliability: Record,
    *,
    per_window: int,
    restarts: int,
    chunks: int,
    pause_s: float,
) -> None:
    stream = Stream.make(windows=3, per_window=per_window, seed=11)
    ask = on_client(clickhouse)
    with own_broker(tmp_path / "broker") as broker:
        kafka = settings.kafka.model_copy(update={"bootstrap": broker.bootstrap})
        settings = windowed(settings.model_copy(update={"kafka": kafka}))
        create_topics(settings)
        (tmp_path / "worker").mkdir()
        env = worker_env(settings, tmp_path / "worker")
        port = int(env["DRIFTLINE_WORKER_WEB_PORT"])
        downtimes, recoveries, worker_recoveries = [], [], []
        with worker_running(env) as worker, sink_running(settings, clickhouse) as sink:
            wait_until(lambda: worker_metrics(port).get("partitions_read", 0) > 0, 120, lambda: worker_metrics(port))
            producing = Producing(settings, stream, chunks=chunks, pause_s=pause_s)  # sending through the restarts
            for restart in range(1, restarts + 1):
                share = restart * len(stream.predictions) // (restarts + 2)

                def both_busy(share: int = share) -> bool:  # the sink and the worker are both mid-stream
                    events_in = worker_metrics(port).get("driftline_events_in", 0)
                    return stored(ask).predictions >= share and events_in >= share

                wait_until(both_busy, 120, lambda: (stored(ask), worker_metrics(port)))
                began, sent_before = time.monotonic(), producing.sent
                broker.stop()
                broker.start()
                back = time.monotonic()
                downtimes.append(back - began)
                assert sent_before < stream.events, "the stream was over before the broker stopped"
                caught_up = producing.sent
                wait_until(lambda n=caught_up: stored(ask).events >= n, 120, lambda: stored(ask))
                recoveries.append(time.monotonic() - back)
                wait_until(
                    lambda n=caught_up: worker_metrics(port).get("driftline_events_in", 0) >= n,
                    120,
                    lambda: worker_metrics(port),
                )
                worker_recoveries.append(time.monotonic() - back)
            producing.join()
            expected = [
                (start, n, labelled, pytest.approx(accuracy))
                for start, n, labelled, accuracy in stream.expected_windows()
            ]
            # (the last revision of a window that late labels changed may come up to monitor.republish_s later)
            wait_until(
                lambda: stored(ask).events == stream.events and clickhouse.query(PERFORMANCE).result_rows == expected,
                120,
                lambda: (stored(ask), clickhouse.query(PERFORMANCE).result_rows, worker_metrics(port)),
            )
            assert worker.poll() is None, "the worker died"
        result = stored(ask)
        windows = clickhouse.query(PERFORMANCE).result_rows
    reliability(
        outcome(
            f"broker restart x{restarts}",
            stream,
            result,
            f"{len(windows)} windows = stream truth",
            recovery_s=max(recoveries + worker_recoveries),
            figures=f"broker down {max(downtimes):.1f} s; caught up: sink {max(recoveries):.1f} s, worker "
            f"{max(worker_recoveries):.1f} s; sink commits failed {sink.stats.commit_failures}; "
            f"replayed rows collapsed: {result.replayed}",
        )
    )
    assert_exactly_once(stream, result)
    assert windows == expected


# -- malformed input at volume --------------------------------------------------------------------------------


@dataclass
class Corpus:
    """Messages for the predictions topic: good single events and envelopes, and malformed messages of every
    kind, shuffled; with the good events they hold and the dead letters expected, by reason."""

    messages: list[bytes]
    good: int
    expected: Counter[str]

    @property
    def bad_messages(self) -> int:
        return sum(self.expected.values())

    @classmethod
    def make(cls, good_events: int, bad_share: float, seed: int) -> Corpus:
        rng = np.random.default_rng(seed)
        messages: list[bytes] = []
        expected: Counter[str] = Counter()
        good = 0

        def event(pid: str, **change: Any) -> dict[str, Any]:
            base = {
                "prediction_id": pid,
                "model_id": MODEL,
                "model_version": "1",
                "timestamp": int(T0.timestamp() * 1000) + len(messages),
                "features": {"age": float(rng.normal(40, 9)), "city": str(rng.choice(["a", "b"]))},
                "prediction": {"label": int(rng.random() < 0.5), "score": 0.5},
            }
            return {**base, **change}

        while good < good_events:  # good: a third single events, the rest in envelopes of 20
            if rng.random() < 0.33:
                messages.append(json.dumps(event(f"g-{good}")).encode())
                good += 1
            else:
                messages.append(json.dumps([event(f"g-{good + i}") for i in range(20)]).encode())
                good += 20
        bad_count = round(len(messages) * bad_share / (1 - bad_share))
        kinds = ("random_bytes", "invalid_utf8", "deep_nesting", "wrong_type", "missing_field", "bad_in_envelope")
        for i in range(bad_count):
            kind = "huge" if i % 100 == 0 else kinds[i % len(kinds)]
            pid = f"bad-{i}"
            if kind == "random_bytes":  # never a JSON start: the first byte is not ASCII
                payload = bytes([int(rng.integers(0x80, 0x100))]) + rng.bytes(int(rng.integers(10, 400)))
                expected["not_json"] += 1
            elif kind == "invalid_utf8":
                payload = json.dumps(event(pid)).encode().replace(MODEL.encode(), b"credit\xff\xfe")
                expected["not_json"] += 1
            elif kind == "deep_nesting":
                nested = '{"a":' * 3000 + "1" + "}" * 3000
                payload = (
                    json.dumps(event(pid, features={}))
                    .encode()
                    .replace(b'"features": {}', f'"features": {nested}'.encode())
                )
                expected["not_json"] += 1
            elif kind == "huge":
                payload = json.dumps(event(pid, metadata={"blob": "x" * 2_000_000})).encode()
                expected["oversized"] += 1
            elif kind == "wrong_type":
                payload = json.dumps(event(pid, timestamp="yesterday")).encode()
                expected["wrong_type"] += 1
            elif kind == "missing_field":
                payload = json.dumps({k: v for k, v in event(pid).items() if k != "model_version"}).encode()
                expected["missing_field"] += 1
            else:  # one bad event among good siblings: the siblings are stored
                envelope = [event(f"{pid}-ok-{j}") for j in range(9)] + [event(pid, features={"age": [1, 2]})]
                payload = json.dumps(envelope).encode()
                expected["wrong_type"] += 1
                good += 9
            messages.append(payload)
        order = rng.permutation(len(messages))
        return cls([messages[i] for i in order], good, expected)


def produce_corpus(settings: Settings, messages: list[bytes]) -> None:
    producer = Producer({**settings.kafka.client_config(), "message.max.bytes": 8_000_000, "linger.ms": 20})
    topic = settings.topic("predictions")
    for index, value in enumerate(messages):
        producer.produce(topic, value, partition=index % settings.kafka.partitions)
        producer.poll(0)
    assert producer.flush(60) == 0


def sink_throughput(settings: Settings, client: Client, corpus: Corpus) -> float:
    """Load the corpus with a fresh sink; its rate in good events plus dead letters per second, from its start
    to its last row."""
    sink = Sink(settings, client)
    started = time.monotonic()
    deadline = started + 180

    def done() -> bool:
        rows = sink.stats.rows
        return rows["predictions"] >= corpus.good and rows["dead_letters"] >= corpus.bad_messages

    sink.run(lambda: done() or time.monotonic() > deadline)
    assert done(), f"the sink stopped at the deadline with {dict(sink.stats.rows)}"
    return (corpus.good + corpus.bad_messages) / (time.monotonic() - started)


def worker_throughput(settings: Settings, events: int, letters: int) -> tuple[float, dict[str, int]]:
    """Run the worker until it has counted ``events`` predictions and ``letters`` dead letters; its rate in
    events per second from its first event to the last, and its dead-letter counts by reason."""
    first: list[float] = []

    def done(monitor: Any) -> bool:
        if not first and monitor.counts["predictions"]:
            first.append(time.monotonic())
        rejected = sum(n for name, n in monitor.counts.items() if name.startswith("dead_letter:"))
        return bool(monitor.counts["predictions"] >= events and rejected >= letters)

    monitor = run_in_process(settings, done, timeout_s=180)
    rate = events / max(time.monotonic() - first[0], 1e-3)
    reasons = {name.split(":", 1)[1]: n for name, n in monitor.counts.items() if name.startswith("dead_letter:")}
    return rate, reasons


def clean_run(settings: Settings, good_events: int) -> str:
    """The sink's and the worker's rates on the same good events without malformed ones, for comparison."""
    clean = Corpus.make(good_events, bad_share=0.0, seed=21)
    settings = variant(settings, "clean")
    client = open_client(settings.clickhouse_dsn, settings.clickhouse.database)
    try:
        create_topics(settings)
        produce_corpus(settings, clean.messages)
        sink = sink_throughput(settings, client, clean)
        worker, _ = worker_throughput(settings, clean.good, 0)
    finally:
        drop_database(client, settings.clickhouse.database)
        client.close()
    return f"clean: sink {sink:,.0f} ev/s, worker {worker:,.0f} ev/s"


@short_and_long("good_events", "compare", short=(3_000, False), long=(100_000, True))
def test_malformed_third_of_the_stream_all_dead_letters_by_reason_and_every_good_event_stored(
    settings: Settings, clickhouse: Client, reliability: Record, *, good_events: int, compare: bool
) -> None:
    corpus = Corpus.make(good_events, bad_share=0.3, seed=21)
    create_topics(settings)
    produce_corpus(settings, corpus.messages)
    mixed_sink = sink_throughput(settings, clickhouse, corpus)
    mixed_worker, worker_reasons = worker_throughput(settings, corpus.good, corpus.bad_messages)
    clean = clean_run(settings, good_events) if compare else "no clean run in the short version"
    good_stored = int(clickhouse.command(f"SELECT count() FROM predictions FINAL WHERE model_id = '{MODEL}'"))
    distinct = int(
        clickhouse.command(f"SELECT uniqExact(prediction_id) FROM predictions FINAL WHERE model_id = '{MODEL}'")
    )
    reasons = dict(clickhouse.query("SELECT reason, count() FROM dead_letters FINAL GROUP BY reason").result_rows)
    share = corpus.bad_messages / len(corpus.messages)
    reliability(
        Outcome(
            f"bad input {share:.0%} of messages",
            corpus.good + corpus.bad_messages,
            good_stored + sum(reasons.values()),
            f"dead letters by reason = expected ({len(corpus.expected)} reasons)",
            corpus.good - distinct + max(0, corpus.bad_messages - sum(reasons.values())),
            good_stored - distinct,
            None,
            f"sink {mixed_sink:,.0f} ev/s, worker {mixed_worker:,.0f} ev/s; {clean}",
        )
    )
    assert (good_stored, distinct) == (corpus.good, corpus.good)
    assert reasons == dict(corpus.expected)
    assert worker_reasons == dict(corpus.expected)


# -- back-pressure --------------------------------------------------------------------------------------------


def load_envelopes(settings: Settings, events: int, tag: str) -> list[tuple[int, bytes]]:
    """``events`` predictions of a model ``load``, 100 per second of event time (so one-minute windows close
    as the load goes on and state stays bounded), in envelopes of 200, each on its events' partition."""
    rng = np.random.default_rng(len(tag))
    start = int(T0.timestamp() * 1000)
    by_partition: dict[int, list[bytes]] = {}
    envelopes: list[tuple[int, bytes]] = []
    for i in range(events):
        pid = f"{tag}-{i}"
        partition = murmur2(pid.encode(), settings.kafka.partitions)
        score = float(rng.random())
        by_partition.setdefault(partition, []).append(
            (
                f'{{"prediction_id":"{pid}","model_id":"load","model_version":"1","timestamp":{start + 10 * i},'
                f'"features":{{"x":{rng.normal():.4f},"y":{rng.normal():.4f}}},'
                f'"prediction":{{"label":{int(score > 0.5)},"score":{score:.4f}}}}}'
            ).encode()
        )
        if len(by_partition[partition]) == 200:
            envelopes.append((partition, b"[" + b",".join(by_partition.pop(partition)) + b"]"))
    envelopes.extend((p, b"[" + b",".join(rest) + b"]") for p, rest in by_partition.items())
    return envelopes


def blast(settings: Settings, envelopes: list[tuple[int, bytes]]) -> None:
    producer = Producer({**settings.kafka.client_config(), "linger.ms": 20, "compression.type": "lz4"})
    topic = settings.topic("predictions")
    for partition, payload in envelopes:
        while True:
            try:
                producer.produce(topic, payload, partition=partition)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0


@short_and_long("events", "rss_limit_mb", short=(100_000, 1024), long=(1_000_000, 1024))  # 368 MiB measured at 1M
def test_producer_faster_than_the_worker_lag_grows_and_drains_with_bounded_memory(
    settings: Settings, tmp_path: Path, reliability: Record, *, events: int, rss_limit_mb: int
) -> None:
    settings = windowed(settings)
    create_topics(settings)
    # none of the load is labelled: a two-minute label horizon (event time) bounds the join's pending
    # predictions, so the peak memory measures what the lag costs the worker, not how much state it keeps
    env = worker_env(settings, tmp_path, DRIFTLINE_MONITOR_HORIZON_S="120")
    port = int(env["DRIFTLINE_WORKER_WEB_PORT"])
    warm_up = load_envelopes(settings, 400, "warm")
    load = load_envelopes(settings, events, "load")
    with worker_running(env) as worker:
        blast(settings, warm_up)  # the worker has joined and reads before the load starts
        wait_until(lambda: worker_metrics(port).get("driftline_events_in", 0) >= 400, 120, lambda: worker_metrics(port))
        samples: list[tuple[float, float]] = []
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.05):
                samples.append((time.monotonic(), worker_metrics(port).get("driftline_consumer_lag", 0)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        blast(settings, load)
        produced = time.monotonic()
        total = 400 + events
        wait_until(
            lambda: (
                worker_metrics(port).get("driftline_events_in", 0) >= total
                and worker_metrics(port).get("driftline_consumer_lag", -1) == 0
            ),
            300,
            lambda: worker_metrics(port),
        )
        drained = time.monotonic()
        sampling.set()
        sampler.join()
        counted = worker_metrics(port)["driftline_events_in"]
        rss = peak_rss_mb(worker.pid)
    peak = max(lag for _, lag in samples)
    reliability(
        Outcome(
            f"back-pressure {events:,} events",
            total,
            int(counted),
            "events counted by the worker = sent",
            int(total - counted),
            0,
            drained - produced,
            f"produced {events / (produced - started):,.0f} ev/s, worker {events / (drained - started):,.0f} ev/s; "
            f"peak lag {peak:.0f} envelopes; worker peak RSS {rss:.0f} MiB",
        )
    )
    assert counted == total
    assert peak >= 5  # the producer got ahead: lag grew, then drained to 0
    assert rss < rss_limit_mb


# -- two workers: partitions and their state move -----------------------------------------------------------


def assigned_partitions(log: Path) -> list[int]:
    """The partitions a worker owned last, from its log."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if "partitions assigned:" in line]
    if not lines:
        return []
    return [int(p) for p in lines[-1].split("partitions assigned: [")[1].split("]")[0].split(",") if p.strip()]


def restored(log: Path) -> set[int]:
    """The partitions whose join state a worker restored from the changelog."""
    text = log.read_text(errors="replace")
    return {int(line.split("restored join-")[1].split()[0]) for line in text.splitlines() if "restored join-" in line}


def send_paced(settings: Settings, events: list[dict[str, Any]], chunks: int, pause_s: float) -> threading.Thread:
    """Send the events in ``chunks`` slices, one after the other (each delivered before the next: the order of
    every partition's log is the stream's), ``pause_s`` apart, from a thread."""

    def run() -> None:
        step = -(-len(events) // chunks)
        for start in range(0, len(events), step):
            send(settings, events[start : start + step])
            time.sleep(pause_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def kill_after_sharing(
    settings: Settings, old: subprocess.Popen[bytes], old_log: Path, new_log: Path
) -> tuple[float, list[int]]:
    """Once the old and the new worker share the partitions and have saved progress since, SIGKILL the old one;
    wait until the new one restored the old one's partitions. Returns that time and those partitions."""
    before = committed_offsets(settings)

    def sharing() -> bool:
        mine, theirs = len(assigned_partitions(new_log)), len(assigned_partitions(old_log))
        return 0 < mine < 4 and 0 < theirs < 4 and committed_offsets(settings) != before

    wait_until(sharing, 90, lambda: (old_log.read_text()[-1500:], new_log.read_text()[-1500:]))
    partitions = assigned_partitions(old_log)
    old.send_signal(signal.SIGKILL)
    old.wait(30)
    killed = time.monotonic()
    wait_until(lambda: set(partitions) <= restored(new_log), 90, lambda: new_log.read_text()[-2000:])
    return time.monotonic() - killed, partitions


@short_and_long("per_window", "kills", short=(600, 1), long=(3000, 3))
def test_two_workers_share_the_partitions_and_one_killed_hands_its_state_over(
    settings: Settings, tmp_path: Path, reliability: Record, *, per_window: int, kills: int
) -> None:
    """Two workers share four partitions; one is killed (``kills`` times, the survivor of each round killed in the
    next, a fresh worker joining each time): its partitions and their state move to the other, and the final
    windows equal those of the single-process run of the same events."""
    kafka = settings.kafka.model_copy(update={"partitions": 4})
    settings = windowed(settings.model_copy(update={"kafka": kafka}), grace_s=90.0)
    create_topics(settings)
    events = scripted_stream(seed=3, windows=6, per_window=per_window, models=3)
    rng = np.random.default_rng(4)
    profiles = {
        f"model-{m}": build_profile(
            pd.DataFrame({"x": rng.normal(0, 1, 400), "city": rng.choice(["a", "b", "c"], 400)}), f"model-{m}", "1"
        )
        for m in range(3)
    }
    for profile in profiles.values():
        publish_profile(settings, profile)
    expected = expected_windows(settings, events, profiles)
    sending = send_paced(settings, events, chunks=20, pause_s=0.5)

    def fresh(name: str) -> tuple[subprocess.Popen[bytes], Path]:
        (tmp_path / name).mkdir()
        return start_worker(worker_env(settings, tmp_path / name)), tmp_path / name / "worker.log"

    old, old_log = fresh("w0")
    wait_until(
        lambda: len(assigned_partitions(old_log)) == 4 and committed_offsets(settings) != {},
        90,
        lambda: old_log.read_text()[-2000:],
    )
    handovers: list[float] = []
    moved: list[list[int]] = []
    for round_ in range(1, kills + 1):
        new, new_log = fresh(f"w{round_}")
        seconds, partitions = kill_after_sharing(settings, old, old_log, new_log)
        handovers.append(seconds)
        moved.append(partitions)
        old, old_log = new, new_log
    sending.join(120)
    actual: dict[str, WindowResult] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            actual = published_windows(settings)
            if actual.keys() == expected.keys() and all(actual[k].revision == expected[k].revision for k in expected):
                break
            time.sleep(0.5)
    finally:
        old.send_signal(signal.SIGTERM)
        old.wait(60)
    accounted = sum(r.revision for key, r in actual.items() if key in expected)
    owed = sum(r.revision for r in expected.values())
    reliability(
        Outcome(
            f"two workers, one SIGKILLed x{kills}",
            len(events),
            accounted,
            f"{len(expected)} windows = single-process run",
            max(0, owed - accounted),
            max(0, accounted - owed),
            max(handovers),
            f"partitions moved with their state: {moved}; {len(events) - owed} events sent are duplicate ids or "
            "the closing predictions', outside the windows compared",
        )
    )
    assert len(expected) == 18  # 3 models x 6 windows
    assert_same(actual, expected)
