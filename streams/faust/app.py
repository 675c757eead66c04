"""The driftline worker: a Faust app (aiokafka driver) whose one agent drives :class:`WorkerStages`.

The agent reads ``predictions``, ``feedback`` and ``window-parts`` together (co-partitioned, so Faust gives a
worker the same partition numbers of all three and of its ``state`` table; one agent, concurrency 1, and a
lock shared with the checkpoint timer and the rebalance handlers, so the state is touched by one coroutine at
a time) with manual acknowledgements: an event is acked only after the checkpoint that includes it is durable,
so the group's committed offsets never pass the saved state and a replay after them is skipped by offset.
When a rebalance completes (Faust has restored the ``state`` table's changelog), the worker owns its assigned
partitions from their saved states; revoked partitions are dropped with what was not saved, for their next
owner to read again. Several workers with the same ``worker.app_id`` share the partitions this way. A timer
checkpoints on quiet streams too, so windows still close when traffic stops. ``/health`` and Prometheus
``/metrics`` are served on the worker's web port.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import faust
from faust.types import EventT, StreamT

from driftline.schemas.topics import FEEDBACK, PREDICTIONS, WINDOW_PARTS
from driftline.settings import Settings
from driftline.streams.faust.changelog import ChangelogStore
from driftline.streams.faust.pages import add_pages
from driftline.streams.worker.stages import WorkerStages

log = logging.getLogger(__name__)
STALL_S = 10.0  # the worker silent this long, an owned partition whose consumer position is ahead is read again


def create_app(settings: Settings) -> faust.App:
    """A Faust app configured from ``settings``: explicit partitions, fast rebalances, at-least-once.

    The aiokafka driver (``kafka://``) gets Kafka security as Faust credentials: SASL (with the TLS context
    of :meth:`KafkaSettings.ssl_context` for SASL_SSL) or TLS alone, from the same ``[kafka]`` settings as
    the confluent-kafka clients.
    """
    datadir = settings.data_path / "worker"
    datadir.mkdir(parents=True, exist_ok=True)
    # Faust warns "producer buffer full" whenever more than 100 messages wait in its producer buffer: a
    # checkpoint's state chunks and deltas do, by design, and the worker flushes them itself before it goes on
    logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)
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


class _Worker:
    """The agent's state beside the stages: the lock, the events awaiting a checkpoint, and when each owned
    partition last delivered one."""

    def __init__(self, app: faust.App, stages: WorkerStages, names: list[str], store: ChangelogStore) -> None:
        self.app = app
        self.stages = stages
        self.names = names
        self.store = store
        self.parts = app.topic(names[2], value_serializer="raw", key_serializer="raw")
        self.lock = asyncio.Lock()  # handling, checkpoints and rebalances take turns: each sees the state whole
        self.unacked: list[EventT[bytes]] = []
        self.heard: dict[tuple[str, int], float] = {}  # when an owned partition last delivered an event
        self.resync: dict[tuple[str, int], int] = {}  # partitions sought back, and the offset that jumped

    async def in_sequence(self, event: EventT[bytes]) -> bool:
        """False for an event to leave unhandled (and unacknowledged) because messages before it went missing.

        Faust drops records it fetched while it pauses and resumes partitions around a rebalance's table
        recovery (seen here after restores). An event whose offset jumps past the one after the last offset
        handled therefore sends the partition back there; events of the old read past the jump are left (they are
        read again); the first event at or before the jump ends the resync, and is handled: if it is still past
        the expected offset, the gap was real (transaction markers, retention) and is accepted."""
        message = event.message
        key = (message.topic, message.partition)
        jumped = self.resync.get(key)
        if jumped is not None:
            if message.offset > jumped:
                return False
            del self.resync[key]
            return True
        expected = self.stages.offsets.get(key, -1) + 1
        if message.offset <= expected:
            return True
        # INFO: Faust drops records it fetched around a rebalance's pause and resume; this re-read recovers them,
        # nothing is lost or counted twice, and an operator has nothing to do
        log.info("%s[%d]: offset %d after %d; reading again from %d", *key, message.offset, expected - 1, expected)
        self.resync[key] = message.offset
        await self._seek(message.tp, expected)
        return False

    async def _seek(self, tp: Any, offset: int) -> None:
        """Move the partition's position to ``offset``, in the consumer's own thread.

        Faust's ``Consumer.seek`` calls aiokafka's ``seek`` from the calling thread, while the consumer thread's
        fetcher iterates the same dict of fetched records (``fetched_records``: keys listed, then read): a seek
        landing between the two deletes an entry under it, and the consumer thread dies with
        ``KeyError(TopicPartition(...))``. ``seek_wait`` runs the seek on the consumer thread's loop, between
        two fetches, and waits for it."""
        await self.app.consumer.seek_wait({tp: offset})

    def handle(self, event: EventT[bytes]) -> None:
        message = event.message
        written_at = message.timestamp if message.timestamp and message.timestamp > 0 else None  # seconds
        self.stages.handle(message.topic, message.partition, message.offset, event.value, written_at)
        self.heard[(message.topic, message.partition)] = time.monotonic()
        self.unacked.append(event)

    async def emit(self) -> None:
        """Deltas onto window-parts (delivered; those for this worker's mergers applied at once, as reading them
        back would), then the mergers' results and decisions."""
        stages = self.stages
        out = stages.deltas()
        sent = [self.parts.send_soon(value=value, partition=p) for p, value in out]
        await self.app.producer.flush()
        delivered = await asyncio.gather(*sent)
        stages.deltas_delivered()
        records = zip(delivered, out, strict=True)
        stages.apply_delivered([(metadata.partition, metadata.offset, value) for metadata, (_p, value) in records])
        stages.emit()

    async def checkpoint(self) -> None:
        """Deltas and results, then the state on the changelog (delivered), then the decisions, then the acks."""
        await self.emit()
        await asyncio.gather(*self.store.save(self.stages.checkpoint()))
        self.stages.saved()
        for event in self.unacked:
            event.ack()
        self.unacked.clear()

    async def keep_pace(self) -> None:
        """A checkpoint when one is due, else an emission when one is due or a window closed."""
        if self.stages.checkpoint_due:
            await self.checkpoint()
        elif self.stages.emit_due or self.stages.close_due:
            await self.emit()

    async def read_again_what_was_dropped(self) -> None:
        """A partition whose consumer position is past the last offset handled, while no owned partition has
        delivered an event for ``STALL_S``, had messages fetched and dropped on their way to the agent (Faust drops
        what a rebalance's pause and resume race with, and relies on a seek it may do before the drop): seek back
        to just after the last offset handled. What was delivered meanwhile is skipped as a replay, so this can
        only cost a re-read. While any partition delivers, the agent is busy and fetched messages of the others
        wait in Faust's buffers (a topic read far ahead, such as feedback, waits long): that is no stall, and a
        drop shows as an offset jump when the partition's next message arrives (:meth:`in_sequence`)."""
        now = time.monotonic()
        busy = STALL_S + self.stages.last_checkpoint_s  # a checkpoint is no stall either
        if self.heard and now - max(self.heard.values()) < busy:
            return
        for tp in self.app.consumer.assignment():
            key = (tp.topic, tp.partition)
            if tp.topic not in self.names or not self.stages.owns(tp.partition):
                continue
            if now - self.heard.get(key, now) < busy:
                continue
            handled = self.stages.offsets.get(key, -1)
            position = await self.app.consumer.position(tp)
            if position is not None and position > handled + 1:
                log.info("%s[%d]: read to %d but handled to %d; reading again from there", *key, position, handled)
                await self._seek(tp, handled + 1)
                self.heard[key] = now

    def take(self, assigned: set[Any]) -> None:
        partitions = {tp.partition for tp in assigned if tp.topic in self.names}
        log.info("partitions assigned: %s (owned before: %s)", sorted(partitions), sorted(self.stages.joins))
        self.stages.assign(partitions, self.store)
        self.resync.clear()
        now = time.monotonic()
        self.heard.update({(tp.topic, tp.partition): now for tp in assigned if tp.topic in self.names})

    def give(self, revoked: set[Any]) -> None:
        gone = {tp.partition for tp in revoked if tp.topic in self.names}
        log.info("partitions revoked: %s", sorted(gone))
        self.stages.revoke(gone)
        self.resync = {key: offset for key, offset in self.resync.items() if key[1] not in gone}
        self.unacked[:] = [e for e in self.unacked if e.message.partition not in gone]


def add_stages_agent(app: faust.App, settings: Settings, stages: WorkerStages) -> None:
    """Attach the monitoring agent, its checkpoint timer, partition handover and the /health and /metrics pages.

    Every ``monitor.checkpoint_s``: the joins' deltas onto ``window-parts`` (delivered), then the mergers' results
    and decisions. At each checkpoint (spaced further apart under a large state) also every owned partition's
    state onto the ``state`` table's changelog (delivered), then the triggers, then the acknowledgements of the
    events it covers."""
    names = [settings.topic(t.name) for t in (PREDICTIONS, FEEDBACK, WINDOW_PARTS)]
    sources = app.topic(*names, value_serializer="raw", key_serializer="raw")
    table = app.Table(
        "state",
        partitions=settings.kafka.partitions,
        key_type=bytes,  # bytes keys and values travel raw
        value_type=bytes,
    )
    store = ChangelogStore(table)
    worker = _Worker(app, stages, names, store)

    @app.agent(sources, name="monitor", concurrency=1)
    async def monitor_events(stream: StreamT[bytes]) -> None:
        manual = cast(faust.Stream[bytes], cast(faust.Stream[bytes], stream).noack())
        async for event in manual.events():
            async with worker.lock:
                if not stages.owns(event.message.partition):
                    continue  # revoked meanwhile: left unacknowledged for the partition's next owner
                if not await worker.in_sequence(event):
                    continue
                worker.handle(event)
                await worker.keep_pace()

    @app.timer(settings.monitor.checkpoint_s, name="checkpoint")  # type: ignore[untyped-decorator]
    async def checkpoint_when_quiet() -> None:
        async with worker.lock:
            await worker.keep_pace()
            await worker.read_again_what_was_dropped()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def take_partitions(sender: faust.App, **_kwargs: Any) -> None:
        """Tables are restored: own the assigned partitions from their saved states."""
        async with worker.lock:
            worker.take(sender.consumer.assignment())

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def give_partitions(sender: faust.App, revoked: set[Any], **_kwargs: Any) -> None:
        """Drop what was not saved: the next owner reads it again after the saved state."""
        async with worker.lock:
            worker.give(revoked)

    add_pages(app, settings, stages, names)
