"""The sink: a bulk Kafka consumer that loads events and results into ClickHouse, exactly once in effect.

Contract:
- reads predictions, feedback, window results, reference profiles, triggers and dead letters in batches
  bounded by ``sink.batch_rows`` and ``sink.batch_seconds`` (``sink.results_seconds`` once a batch holds a window
  result or a trigger, so they are in ClickHouse soon after the worker published them); decodes each message once
  (:mod:`driftline.schemas.decoding`);
- with ``clickhouse.store_raw_features`` false, raw predictions are stored without their feature values;
- a message that breaks its contract is published to the dead-letter topic (original bytes as the value,
  the reason in headers, key ``topic:partition:offset:index``) and stored from there; never dropped;
- offsets are committed only after every row of the batch is in ClickHouse (and its dead letters are in
  Kafka); rows have natural keys in ReplacingMergeTree tables, so a replay after a crash adds nothing;
- while ClickHouse is unreachable the insert is retried with exponential backoff (tenacity) and nothing new
  is consumed: Kafka holds the backlog;
- its counters and each assigned partition's lag are in :class:`SinkStats`, which :func:`serve` also serves
  as Prometheus metrics (:mod:`driftline.sinks.metrics`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from driftline.kafka.publishing import DeadLetterPublisher
from driftline.schemas.dead_letters import DeadLetter
from driftline.schemas.decoding import EventDecoder, Origin, kafka_time
from driftline.schemas.errors import BrokerError
from driftline.schemas.events import FeedbackEvent, PredictionEvent
from driftline.schemas.model_contracts import contract_check
from driftline.schemas.results import ReferenceProfile, RetrainTrigger, WindowResult
from driftline.schemas.tables import DEAD_LETTERS, FEEDBACK, PREDICTIONS, REFERENCE_PROFILES, RETRAIN_TRIGGERS, Table
from driftline.schemas.topics import ALL_TOPICS
from driftline.settings import Settings
from driftline.sinks.rows import (
    Row,
    dead_letter_row,
    feedback_row,
    prediction_row,
    reference_profile_row,
    retrain_trigger_row,
    window_rows,
)

log = logging.getLogger(__name__)
TRANSIENT_STORAGE_ERRORS = (OperationalError, DatabaseError, OSError, ConnectionError)
LAG_REPORT_MS = 5_000  # how often librdkafka reports the partitions' offsets, from which the lag is computed


@dataclass
class SinkStats:
    """Counters of one sink run, and its consumer's lag.

    ``messages`` and ``batches`` count what was stored (a batch's messages, dead letters included, once its
    rows are in ClickHouse), ``rows`` the rows inserted per table, ``dead_letters_by_reason`` the dead letters
    read from their topic and loaded (counted, as ``rows``, once their batch is stored), ``insert_retries`` the
    inserts retried, ``commit_failures`` the offset commits that failed after a stored batch. ``lag`` maps each
    assigned partition, ``(topic, partition)``, to its messages after the sink's committed position
    (:func:`partition_lag`), as librdkafka reported it last: every ``LAG_REPORT_MS`` while the sink reads Kafka
    (not while it retries an insert, when it reads nothing).
    It is replaced whole, never changed in place, so another thread may read it; a partition not in it has an
    unknown lag (not assigned, or no report yet).
    """

    messages: int = 0
    rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    dead_letters_by_reason: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    batches: int = 0
    insert_retries: int = 0
    commit_failures: int = 0
    lag: dict[tuple[str, int], int] = field(default_factory=dict)


def partition_lag(report: dict[str, Any]) -> dict[tuple[str, int], int]:
    """Per partition the consumer fetches, the messages after its committed position, from one librdkafka
    statistics report (``stats_cb``).

    The lag is the partition's end (its last stable offset, which a read_committed consumer reads up to, else its
    high watermark) minus the committed offset, or minus the partition's first offset when that is later: before
    the group's first commit on it (the sink then reads from the earliest), or when retention has removed the
    committed position. A partition that is not being fetched (not assigned; revoked; its position still being
    looked up) or whose end or position is not known yet is left out: its lag is unknown, not 0.
    """
    lag: dict[tuple[str, int], int] = {}
    for topic, entry in report.get("topics", {}).items():
        for number, partition in entry.get("partitions", {}).items():
            if int(number) < 0 or partition.get("fetch_state") != "active":
                continue  # -1: librdkafka's internal "unassigned" partition
            end = partition.get("ls_offset", partition.get("hi_offset", -1))
            known = [
                offset
                for offset in (partition.get("committed_offset", -1), partition.get("lo_offset", -1))
                if offset >= 0
            ]
            if end >= 0 and known:
                lag[(topic, int(number))] = max(0, end - max(known))
    return lag


@dataclass(frozen=True)
class _Loader:
    """How one topic's messages become rows: its decoder and the rows of one valid message."""

    decoder: EventDecoder[Any]
    rows: Callable[[Any], dict[Table, list[Row]]]


@dataclass
class _Batch:
    rows: dict[Table, list[Row]] = field(default_factory=lambda: defaultdict(list))
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    letters_loaded: Counter[str] = field(default_factory=Counter)
    messages: int = 0


class Sink:
    """Consume driftline's topics and load them into ClickHouse through ``client``."""

    def __init__(self, settings: Settings, client: Client) -> None:
        self.settings = settings
        self.client = client
        self.stats = SinkStats()
        kafka = settings.kafka.client_config()
        self.topics = {spec.name: settings.topic(spec.name) for spec in ALL_TOPICS if spec.stored}
        limit = settings.kafka.max_message_bytes

        def loader(model: type[Any], kind: str, rows: Callable[[Any], dict[Table, list[Row]]]) -> _Loader:
            return _Loader(EventDecoder(model, kind, limit), rows)

        def events_loader(model: type[Any], kind: str, rows: Callable[[Any], dict[Table, list[Row]]]) -> _Loader:
            """Events are judged as the worker judges them: pinned contracts, and timestamps in the future."""
            return _Loader(EventDecoder(model, kind, limit, pinned, settings.monitor.max_future_s), rows)

        pinned = contract_check(settings.models)
        features = settings.clickhouse.store_raw_features

        self._loaders = {
            self.topics["predictions"]: events_loader(
                PredictionEvent, "prediction", lambda d: {PREDICTIONS: [prediction_row(d, features)]}
            ),
            self.topics["feedback"]: events_loader(FeedbackEvent, "feedback", lambda d: {FEEDBACK: [feedback_row(d)]}),
            self.topics["window-results"]: loader(WindowResult, "window result", lambda d: window_rows(d.event)),
            self.topics["reference-profiles"]: loader(
                ReferenceProfile, "reference profile", lambda d: {REFERENCE_PROFILES: [reference_profile_row(d.event)]}
            ),
            self.topics["retrain-triggers"]: loader(
                RetrainTrigger, "retrain trigger", lambda d: {RETRAIN_TRIGGERS: [retrain_trigger_row(d.event)]}
            ),
        }
        self.consumer = Consumer(
            {
                **kafka,
                "group.id": settings.sink.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "max.poll.interval.ms": 600_000,
                # a sink killed without leaving the group holds its partitions until its session expires:
                # 6 s (as the worker's) rather than librdkafka's 45 s lets a restarted sink resume soon
                # (heartbeats come from a background thread, so a long ClickHouse outage does not expire it)
                "session.timeout.ms": 6_000,
                "heartbeat.interval.ms": 1_000,
                "statistics.interval.ms": LAG_REPORT_MS,
                "stats_cb": self._on_statistics,
            }
        )
        self.dead_letters = DeadLetterPublisher(kafka, self.topics["dead-letters"])
        self._retrying = Retrying(
            wait=wait_exponential(multiplier=0.2, max=settings.sink.retry_max_seconds),
            retry=retry_if_exception_type(TRANSIENT_STORAGE_ERRORS),
            before_sleep=self._on_retry,
            reraise=True,
        )

    def run(self, should_stop: Callable[[], bool]) -> SinkStats:
        """Load batches until ``should_stop()`` is true; then commit what is stored and close."""
        self.consumer.subscribe(list(self.topics.values()))
        try:
            while not should_stop():
                self.step()
        finally:
            self.consumer.close()
            self.dead_letters.close()
        return self.stats

    def step(self) -> int:
        """Consume, store and commit one batch; return how many messages it held."""
        batch = self._collect()
        if batch.messages == 0:
            return 0
        self._publish_dead_letters(batch.dead_letters)
        for table, rows in batch.rows.items():
            self._insert(table, rows)
            self.stats.rows[table.name] += len(rows)
        for reason, count in batch.letters_loaded.items():
            self.stats.dead_letters_by_reason[reason] += count
        self._commit(batch.offsets)
        self.stats.messages += batch.messages
        self.stats.batches += 1
        return batch.messages

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit the offsets after a stored batch. A failed commit (the broker restarting, the group
        rebalancing) is counted and logged, not fatal: the rows are stored and idempotent, the next batch's
        commit moves the offsets on, and a restart before that only re-reads rows that collapse."""
        try:
            self.consumer.commit(
                offsets=[
                    TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in offsets.items()
                ],
                asynchronous=False,
            )
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.fatal():
                raise
            self.stats.commit_failures += 1
            log.warning(
                "offsets not committed (%s); the stored rows are idempotent, a replay adds nothing", error.str()
            )

    def _collect(self) -> _Batch:
        batch = _Batch()
        deadline = time.monotonic() + self.settings.sink.batch_seconds
        wanted = self.settings.sink.batch_rows
        urgent = {self.topics["window-results"], self.topics["retrain-triggers"]}
        while batch.messages < wanted:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # consume returns when it has num_messages or at the timeout: a short one, so results are seen soon
            timeout = min(remaining, self.settings.sink.results_seconds)
            for message in self.consumer.consume(num_messages=min(wanted - batch.messages, 5000), timeout=timeout):
                error = message.error()
                if error is not None:
                    self._on_kafka_error(error)
                    continue
                self._add(batch, message)
                if message.topic() in urgent:
                    deadline = min(deadline, time.monotonic() + self.settings.sink.results_seconds)
        return batch

    def _add(self, batch: _Batch, message: Message) -> None:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        batch.messages += 1
        batch.offsets[(topic, partition)] = offset
        if topic == self.topics["dead-letters"]:
            letter = DeadLetter.from_kafka(message.value(), message.headers())
            batch.rows[DEAD_LETTERS].append(dead_letter_row(letter))
            batch.letters_loaded[letter.reason.value] += 1
            return
        load = self._loaders[topic]
        origin = Origin(topic, partition, offset, kafka_time(message.timestamp()[1]))
        result = load.decoder.decode(message.value(), origin)
        for decoded in result.events:
            for table, rows in load.rows(decoded).items():
                batch.rows[table].extend(rows)
        batch.dead_letters.extend(result.dead_letters)

    def _publish_dead_letters(self, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        try:
            self.dead_letters.send(letters)
        except BrokerError as exc:
            raise BrokerError(f"{exc}; offsets were not committed, so they will be retried") from exc

    def _insert(self, table: Table, rows: list[Row]) -> None:
        for attempt in self._retrying:
            with attempt:
                self.client.insert(table.name, rows, column_names=table.column_names)

    def _on_retry(self, state: RetryCallState) -> None:
        self.stats.insert_retries += 1
        wait = state.next_action.sleep if state.next_action else 0.0
        error = state.outcome.exception() if state.outcome else None
        log.warning("ClickHouse insert failed (%s); retry %d in %.1f s", error, state.attempt_number, wait)

    def _on_statistics(self, report: str) -> None:
        """librdkafka's statistics (served from ``consume`` in the sink's thread): the partitions' lag."""
        self.stats.lag = partition_lag(json.loads(report))

    @staticmethod
    def _on_kafka_error(error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        log.warning("Kafka: %s", error.str())


def serve(
    settings: Settings,
    should_stop: Callable[[], bool],
    say: Callable[[str], None] = lambda _line: None,
    on_open: Callable[[], None] = lambda: None,
) -> SinkStats:
    """Open ClickHouse, serve read-only SQL when it is embedded and the sink's metrics always, and load until
    ``should_stop()``; return the run's stats.

    ``on_open`` runs once the database is open and the endpoints serve, before the first message is read (chDB
    installs signal handlers of its own when it opens, so a caller that wants its own handlers installs them then).
    Raises :class:`StorageError` or :class:`ConfigError` when the database cannot be opened or a port bound.
    """
    from driftline.sinks.clickhouse import is_embedded, open_configured, redacted
    from driftline.sinks.metrics import MetricsEndpoint
    from driftline.sinks.sql_endpoint import SQLEndpoint

    with contextlib.ExitStack() as opened:
        client = open_configured(settings)
        opened.callback(client.close)
        say(
            f"Sink: {settings.kafka.bootstrap} -> {settings.clickhouse.database} at {redacted(settings.clickhouse_dsn)}"
        )
        if is_embedded(settings.clickhouse_dsn):
            opened.callback(SQLEndpoint(client, settings.sink.sql_port).close)
            say(f"Serving read-only SQL for `driftline sql` on 127.0.0.1:{settings.sink.sql_port}")
        sink = Sink(settings, client)
        host, port = settings.sink.metrics_host, settings.sink.metrics_port
        opened.callback(MetricsEndpoint(sink.stats, host, port).close)
        say(f"Serving Prometheus metrics on http://{host}:{port}/metrics")
        on_open()
        return sink.run(should_stop)
