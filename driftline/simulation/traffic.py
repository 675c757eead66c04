"""Send a simulated stream to Kafka, paced in wall time: through the producer client, or a fast path.

- Default: every valid event goes through :class:`driftline.client.producer.Monitor` (one per model version): it is
  validated against the contract, keyed by ``prediction_id``, placed on the murmur2 partition and batched
  into envelopes (``envelopes=False``: one event per message), exactly as a model service would send it.
- ``fast=True``: one confluent-kafka producer with the same settings as ``Monitor``, the same murmur2
  partitions and the same message shapes, but no per-event validation: the events' JSON
  (``SimulatedEvent.payload``, which the simulator's tests hold to the contracts) is grouped per partition
  into envelopes of at most ``max_batch`` events, or sent one per message. It is for load generation (the
  benchmark), where the client's validation would be the bottleneck.

Malformed messages are sent raw on either path, one per message, on their key's murmur2 partition.

Pacing: the ``n``-th event (event time ``t``) is sent no earlier than ``n / rate`` seconds and no earlier than
``(t − t₀) / speedup`` seconds after the first one (``t₀`` its event time); ``0`` switches either limit off,
so ``rate=0, speedup=0`` sends as fast as possible and ``speedup=1440`` plays a day of event time in a minute.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from driftline.client.producer import Monitor, envelope_bytes, event_producer
from driftline.kafka.delivery import Deliveries
from driftline.kafka.topics import partition_count, partition_for
from driftline.schemas.errors import BrokerError, DriftlineError
from driftline.schemas.topics import FEEDBACK, PREDICTIONS
from driftline.settings import Settings

if TYPE_CHECKING:
    from driftline.simulation.payloads import SimulatedEvent
    from driftline.simulation.simulator import Simulation

PROGRESS_EVERY_S = 0.1
CHECK_EVERY = 256  # events between looks at the clock (progress, envelope linger)
OVERSIZED_ROOM_BYTES = 8_000_000  # the raw wire sends oversized malformed messages on purpose


@dataclass(frozen=True)
class Progress:
    """Where a send is: events and predictions sent, the phase and event time of the latest event."""

    events: int
    predictions: int
    phase: str
    time_ms: int


ProgressCallback = Callable[[Progress], None]


@dataclass
class SendReport:
    """What a send delivered: counts by kind, predictions per phase, malformed messages per expected reason."""

    predictions: int = 0
    feedback: int = 0
    malformed: int = 0
    by_phase: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def events(self) -> int:
        """Messages' worth of events sent (predictions + feedback + malformed)."""
        return self.predictions + self.feedback + self.malformed

    @property
    def events_per_s(self) -> float:
        """Events sent per second of wall time, delivery included."""
        return self.events / self.seconds if self.seconds else 0.0


class Pacer:
    """How long to wait before the next event, given the event rate and event-time speed-up (0 = off)."""

    def __init__(self, rate: float, speedup: float) -> None:
        self.rate, self.speedup = rate, speedup
        self._started: float | None = None
        self._first_ms = 0

    @property
    def active(self) -> bool:
        """Whether anything limits the pace."""
        return self.rate > 0 or self.speedup > 0

    def wait_s(self, sent: int, time_ms: int) -> float:
        """Seconds until event number ``sent`` (0-based) of event time ``time_ms`` is due (≤ 0: now)."""
        now = time.monotonic()
        if self._started is None:
            self._started, self._first_ms = now, time_ms
        due = max(
            sent / self.rate if self.rate > 0 else 0.0,
            (time_ms - self._first_ms) / 1000 / self.speedup if self.speedup > 0 else 0.0,
        )
        return due - (now - self._started)


class _Wire:
    """A confluent-kafka producer configured as :class:`Monitor`'s, sending raw bytes to murmur2 partitions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.errors: list[str] = []
        self._producer = event_producer(settings.kafka, OVERSIZED_ROOM_BYTES)
        self._partitions: dict[str, int] = {}
        self._deliveries = Deliveries(self.errors.append)

    def partition(self, topic: str, key: str) -> int:
        """The partition of ``key`` on ``topic`` (full name), as Java clients and Faust compute it."""
        if topic not in self._partitions:
            self._partitions[topic] = partition_count(self._producer, self.settings.kafka, topic)
        return partition_for(key, self._partitions[topic])

    def produce(self, topic: str, partition: int, key: bytes | None, payload: bytes) -> None:
        """Hand one message to librdkafka, waiting for room when its queue is full."""
        self._deliveries.produce(self._producer, topic, payload, key=key, partition=partition)

    def idle(self, seconds: float) -> None:
        """Serve delivery callbacks for up to ``seconds``, then send again what they report delivered without an
        offset."""
        self._producer.poll(max(seconds, 0.0))
        self._deliveries.send_again(self._producer)

    def close(self) -> None:
        """Wait for delivery of everything sent; raise :class:`BrokerError` on any failure."""
        remaining = self._deliveries.flush(self._producer, 60)
        if remaining or self.errors:
            raise BrokerError(
                f"{remaining} messages not delivered to {self.settings.kafka.bootstrap}; "
                f"delivery errors: {self.errors[:3]}"
            )


class _MonitorSender:
    """Valid events through one :class:`Monitor` (each naming its model version); malformed ones raw."""

    def __init__(self, settings: Settings, envelopes: bool, max_batch: int, linger_s: float) -> None:
        self.settings = settings
        self.wire = _Wire(settings)
        self.monitor = Monitor(settings=settings, envelopes=envelopes, max_batch=max_batch, linger_s=linger_s)

    def send(self, event: SimulatedEvent) -> None:
        if event.kind == "malformed":
            topic = self.settings.topic(event.topic)
            self.wire.produce(topic, self.wire.partition(topic, event.key), event.key.encode(), event.payload)
            return
        body = event.body
        if event.kind == "prediction":
            self.monitor.log_prediction(
                body["features"],
                label=body["prediction"]["label"],
                score=body["prediction"]["score"],
                prediction_id=body["prediction_id"],
                timestamp=body["timestamp"],
                sensitive=body["sensitive"],
                model_id=event.model_id,
                model_version=event.model_version,
            )
        else:
            self.monitor.log_feedback(
                body["prediction_id"], label=body["label"], timestamp=body["timestamp"], model_id=event.model_id
            )

    def idle(self, seconds: float) -> None:
        self.wire.idle(seconds)

    def close(self) -> None:
        self.monitor.close()
        self.wire.close()


class _FastSender:
    """Events' JSON straight to the wire: envelopes per partition (or single messages), no validation."""

    def __init__(self, settings: Settings, envelopes: bool, max_batch: int, linger_s: float) -> None:
        self.settings, self.envelopes = settings, envelopes
        self.max_batch, self.linger_s = max_batch, linger_s
        self.wire = _Wire(settings)
        self._topics = {name: settings.topic(name) for name in (PREDICTIONS.name, FEEDBACK.name)}
        self._pending: dict[tuple[str, int], list[bytes]] = defaultdict(list)
        self._pending_bytes: dict[tuple[str, int], int] = defaultdict(int)
        self._oldest: dict[tuple[str, int], float] = {}
        self._max_bytes = settings.kafka.max_message_bytes

    def send(self, event: SimulatedEvent) -> None:
        topic = self._topics[event.topic]
        partition = self.wire.partition(topic, event.key)
        if event.kind == "malformed" or not self.envelopes:
            self.wire.produce(topic, partition, event.key.encode(), event.payload)
            return
        slot = (topic, partition)
        events = self._pending[slot]
        if events and envelope_bytes(self._pending_bytes[slot], len(events), len(event.payload)) > self._max_bytes:
            self._ship(slot)  # under the consumers' limit, as the client's envelopes are
            events = self._pending[slot]
        if not events:
            self._oldest[slot] = time.monotonic()
        events.append(event.payload)
        self._pending_bytes[slot] += len(event.payload)
        if len(events) >= self.max_batch:
            self._ship(slot)

    def idle(self, seconds: float) -> None:
        now = time.monotonic()
        for slot in [s for s, events in self._pending.items() if events and now - self._oldest[s] >= self.linger_s]:
            self._ship(slot)
        self.wire.idle(seconds)

    def close(self) -> None:
        for slot in [s for s, events in self._pending.items() if events]:
            self._ship(slot)
        self.wire.close()

    def _ship(self, slot: tuple[str, int]) -> None:
        events = self._pending.pop(slot)
        self._pending_bytes.pop(slot, None)
        self.wire.produce(slot[0], slot[1], None, b"[" + b",".join(events) + b"]")


def send(
    simulation: Simulation,
    settings: Settings,
    *,
    rate: float = 0.0,
    speedup: float = 0.0,
    fast: bool = False,
    envelopes: bool = True,
    max_batch: int = 500,
    linger_s: float = 0.1,
    progress: ProgressCallback | None = None,
) -> SendReport:
    """Send every event of ``simulation`` to the topics of ``settings`` (which must exist) and wait for delivery.

    ``rate`` events/s and ``speedup`` (event time / wall time) pace it, 0 = unlimited; ``fast`` takes the
    fast path; ``envelopes`` batch events per partition (at most ``max_batch``, held at most ``linger_s``
    before they go). ``progress`` is called about every 0.1 s and at the end.
    """
    kind = _FastSender if fast else _MonitorSender
    sender = kind(settings, envelopes, max_batch, linger_s)
    pacer = Pacer(rate, speedup)
    report = SendReport()
    started = time.monotonic()
    reported = started
    last: SimulatedEvent | None = None
    try:
        for sent, event in enumerate(simulation.events()):
            if pacer.active and (wait := pacer.wait_s(sent, event.time_ms)) > 0:
                sender.idle(wait)
            sender.send(event)
            _count(report, event)
            last = event
            if sent % CHECK_EVERY == 0:
                sender.idle(0)
                now = time.monotonic()
                if progress is not None and now - reported >= PROGRESS_EVERY_S:
                    progress(Progress(report.events, report.predictions, event.phase, event.time_ms))
                    reported = now
    except BaseException:
        with suppress(DriftlineError):  # the first error is the one to report
            sender.close()
        raise
    sender.close()
    report.seconds = time.monotonic() - started
    if progress is not None and last is not None:
        progress(Progress(report.events, report.predictions, last.phase, last.time_ms))
    return report


def _count(report: SendReport, event: SimulatedEvent) -> None:
    if event.kind == "prediction":
        report.predictions += 1
        report.by_phase[event.phase] += 1
    elif event.kind == "feedback":
        report.feedback += 1
    else:
        report.malformed += 1
        report.by_reason[str(event.reason)] += 1
