"""The Faust app of the driftline worker (aiokafka driver) and, for now, its one minimal agent.

The minimal agent proves the real parts work together (Kafka → Faust → ClickHouse): it decodes prediction
messages (one event or an envelope) with the shared decoder and hands the valid events, with their origin,
to a ``store`` callback in batches. Invalid input is not lost: the sink publishes it to the dead letters.
The monitoring agents of the worker replace this one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import faust
from faust.types import StreamT

from driftline.schemas.decoding import Decoded, EventDecoder, Origin
from driftline.schemas.events import PredictionEvent
from driftline.schemas.topics import PREDICTIONS
from driftline.settings import Settings

BATCH_SIZE = 1000
BATCH_WITHIN_S = 0.5


def create_app(settings: Settings) -> faust.App:
    """A Faust app configured from ``settings``: explicit partitions, fast rebalances, at-least-once."""
    return faust.App(
        settings.worker.app_id,
        broker=f"kafka://{settings.kafka.bootstrap}",
        store="memory://",
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        topic_allow_declare=False,  # `driftline topics create` owns the layout
        consumer_auto_offset_reset="earliest",
        web_port=settings.worker.web_port,
        web_bind=settings.worker.web_host,
        # one node: join a group in seconds rather than Faust's default of about 30
        broker_rebalance_timeout=3,
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        datadir=str(settings.data_path / "worker"),
    )


def add_prediction_recorder(
    app: faust.App, settings: Settings, store: Callable[[list[Decoded[PredictionEvent]]], None]
) -> None:
    """Attach the minimal agent: every valid prediction goes to ``store`` in batches."""
    name = settings.topic(PREDICTIONS.name)
    topic = app.topic(name, value_serializer="raw", key_serializer="raw")
    decoder = EventDecoder(PredictionEvent, "prediction", settings.sink.max_message_bytes)

    @app.agent(topic, name="record-predictions")
    async def record_predictions(stream: StreamT[bytes]) -> None:
        async for events in cast(faust.Stream[bytes], stream).take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            decoded = [
                valid
                for event in events
                for valid in decoder.decode(
                    event.value, Origin(name, event.message.partition, event.message.offset)
                ).events
            ]
            if decoded:
                store(decoded)
