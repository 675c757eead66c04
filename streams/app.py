"""The driftline worker: a Faust app (aiokafka driver) whose one agent drives :class:`StreamMonitor`.

The agent reads predictions and feedback together (they are co-partitioned; one agent, concurrency 1, so the
state is touched by one coroutine) with manual acknowledgements: an event is acked only after the checkpoint
that includes it is durable. On assignment each partition is sought to just past the checkpoint's offset, so
the checkpoint, not the group's committed offset, decides where reading resumes. A timer checkpoints on
quiet streams too, so windows still close when traffic stops. ``/health`` and Prometheus ``/metrics`` are
served on the worker's web port.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, cast

import faust
from faust.types import EventT, StreamT
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from driftline.schemas.topics import FEEDBACK, PREDICTIONS
from driftline.settings import Settings
from driftline.streams.monitor import StreamMonitor


def create_app(settings: Settings) -> faust.App:
    """A Faust app configured from ``settings``: explicit partitions, fast rebalances, at-least-once.

    The aiokafka driver (``kafka://``) gets Kafka security as Faust credentials: SASL (with the TLS context
    of :meth:`KafkaSettings.ssl_context` for SASL_SSL) or TLS alone, from the same ``[kafka]`` settings as
    the confluent-kafka clients.
    """
    datadir = settings.data_path / "worker"
    datadir.mkdir(parents=True, exist_ok=True)
    kafka = settings.kafka
    credentials: faust.auth.Credentials | None = None
    if kafka.uses_sasl and kafka.sasl_password is not None:
        credentials = faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value(),
            ssl_context=kafka.ssl_context(),
            mechanism=kafka.sasl_mechanism,
        )
    elif kafka.uses_tls:
        credentials = faust.SSLCredentials(kafka.ssl_context())
    return faust.App(
        settings.worker.app_id,
        broker=f"kafka://{kafka.bootstrap}",
        broker_credentials=credentials,
        store="memory://",
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        # `driftline topics create` lays out driftline's topics; Faust declares only its own internal ones
        # (an existing topic keeps its partitions)
        consumer_auto_offset_reset="earliest",
        web_port=settings.worker.web_port,
        web_bind=settings.worker.web_host,
        # one node: join a group in seconds rather than Faust's default of about 30
        broker_rebalance_timeout=3,
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        # a group rebalanced while the broker restarts can see driftline's topics missing and assign nothing;
        # aiokafka redoes it when fresh metadata shows them, so refresh every 10 s rather than Faust's 5 min
        consumer_metadata_max_age_ms=10_000,
        datadir=str(datadir),
        # events are acked only at checkpoints: on stop, do not wait for the rest (they are read again and
        # skipped or re-applied from the checkpoint), or stopping would wait for acks that never come
        stream_wait_empty=False,
    )


class _Unacked:
    """Events processed but not yet covered by a durable checkpoint."""

    def __init__(self) -> None:
        self.events: list[EventT[bytes]] = []

    def checkpoint(self, monitor: StreamMonitor) -> None:
        monitor.checkpoint()
        for event in self.events:
            event.ack()
        self.events.clear()


def add_monitor_agent(app: faust.App, settings: Settings, monitor: StreamMonitor) -> None:
    """Attach the monitoring agent, its checkpoint timer and the /health and /metrics pages."""
    topic = app.topic(
        settings.topic(PREDICTIONS.name), settings.topic(FEEDBACK.name), value_serializer="raw", key_serializer="raw"
    )
    unacked = _Unacked()

    @app.agent(topic, name="monitor", concurrency=1)
    async def monitor_events(stream: StreamT[bytes]) -> None:
        manual = cast(faust.Stream[bytes], cast(faust.Stream[bytes], stream).noack())
        async for event in manual.events():
            message = event.message
            monitor.handle(message.topic, message.partition, message.offset, event.value)
            unacked.events.append(event)
            if monitor.checkpoint_due:
                unacked.checkpoint(monitor)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def resume_from_checkpoint(sender: faust.App, assigned: set[Any], **_kwargs: Any) -> None:
        """The checkpoint, not the group's committed offset, says where to resume: seek each assigned
        partition just past the last offset the checkpoint includes, so nothing after it is skipped."""
        for tp in assigned:
            offset = monitor.offsets.get((tp.topic, tp.partition))
            if offset is not None:
                await sender.consumer.seek(tp, offset + 1)

    @app.timer(settings.monitor.checkpoint_s, name="checkpoint")  # type: ignore[untyped-decorator]
    async def checkpoint_when_quiet() -> None:
        if monitor.checkpoint_due:
            unacked.checkpoint(monitor)

    registry = CollectorRegistry()
    registry.register(_MonitorCollector(monitor, app))

    @app.page("/metrics")
    async def metrics(web: Any, _request: Any) -> Any:
        return web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health(web: Any, _request: Any) -> Any:
        age = time.monotonic() - monitor.last_checkpoint
        healthy = age < max(30.0, 10 * settings.monitor.checkpoint_s)
        return web.json({"status": "ok" if healthy else "stale", "checkpoint_age_s": round(age, 3)})


class _MonitorCollector:
    """Prometheus metrics read from the monitor at scrape time."""

    def __init__(self, monitor: StreamMonitor, app: faust.App) -> None:
        self.monitor = monitor
        self.app = app

    def collect(self) -> Iterator[Any]:
        counts = self.monitor.counts
        events = CounterMetricFamily("driftline_events_in", "Valid events consumed", labels=["kind"])
        for kind in ("predictions", "feedback"):
            events.add_metric([kind], counts[kind])
        yield events
        letters = CounterMetricFamily("driftline_dead_letters", "Invalid input skipped, by reason", labels=["reason"])
        for name, value in counts.items():
            if name.startswith("dead_letter:"):
                letters.add_metric([name.split(":", 1)[1]], value)
        yield letters
        yield CounterMetricFamily(
            "driftline_windows_emitted", "Window results published", value=counts["windows_emitted"]
        )
        yield CounterMetricFamily(
            "driftline_replayed", "Messages skipped as already checkpointed", value=counts["replayed"]
        )
        engine = self.monitor.engine
        late = sum(buffer.late_predictions for buffer in engine.windows.values())
        orphans = sum(buffer.orphan_feedback for buffer in engine.windows.values())
        yield GaugeMetricFamily("driftline_open_windows", "Windows held in state", value=len(engine.windows))
        yield GaugeMetricFamily(
            "driftline_pending_predictions",
            "Predictions awaiting labels",
            value=sum(len(join.pending) for join in self.monitor.joins.values()),
        )
        yield GaugeMetricFamily("driftline_late_predictions", "Late predictions in held windows", value=late)
        yield GaugeMetricFamily("driftline_orphan_feedback", "Orphaned feedback in held windows", value=orphans)
        yield GaugeMetricFamily(
            "driftline_detector_late",
            "Labels and scores left out of the detectors (slice already fed)",
            value=engine.detector_late,
        )
        yield CounterMetricFamily("driftline_alarms", "Streaming detector alarms raised", value=counts["alarms"])
        yield CounterMetricFamily("driftline_triggers", "Retraining triggers published", value=counts["triggers"])
        yield self._lag()
        yield GaugeMetricFamily(
            "driftline_checkpoint_age_seconds",
            "Seconds since the last checkpoint",
            value=time.monotonic() - self.monitor.last_checkpoint,
        )

    def _lag(self) -> GaugeMetricFamily:
        """Messages behind the end of each assigned partition: high watermark minus the next offset to read."""
        lag = GaugeMetricFamily(
            "driftline_consumer_lag", "Messages not yet processed, per source partition", labels=["topic", "partition"]
        )
        consumer = self.app.consumer
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            processed = self.monitor.offsets.get((tp.topic, tp.partition), -1)
            lag.add_metric([tp.topic, str(tp.partition)], max(0, high - (processed + 1)))
        return lag
