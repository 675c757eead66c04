"""The Faust app of the driftline worker (aiokafka driver) and, for now, its one minimal agent.

The minimal agent proves the real parts work together (Kafka → Faust → ClickHouse): it reads prediction
messages (one JSON event or a JSON array of events) and hands them, with their source partition and offset,
to a ``store`` callback in batches. The monitoring agents of the worker replace it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import faust
from faust.types import StreamT

from driftline.schemas.topics import PREDICTIONS
from driftline.settings import Settings

BATCH_SIZE = 1000
BATCH_WITHIN_S = 0.5


@dataclass(frozen=True)
class RawPrediction:
    """A prediction as the minimal agent sees it: its ids, timestamp and the event's JSON, with its origin."""

    prediction_id: str
    model_id: str
    model_version: str
    timestamp: datetime
    event: str
    source_partition: int
    source_offset: int


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
        agent_supervisor=None,
        datadir=str(settings.data_path / "worker"),
    )


def add_prediction_recorder(app: faust.App, settings: Settings, store: Callable[[list[RawPrediction]], None]) -> None:
    """Attach the minimal agent: every prediction message goes to ``store`` in batches."""
    topic = app.topic(settings.topic(PREDICTIONS.name), value_serializer="raw", key_serializer="raw")

    @app.agent(topic, name="record-predictions")
    async def record_predictions(stream: StreamT[bytes]) -> None:
        async for events in cast(faust.Stream[bytes], stream).take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            rows = [
                row for event in events for row in _rows(event.value, event.message.partition, event.message.offset)
            ]
            if rows:
                store(rows)


def _rows(value: bytes, partition: int, offset: int) -> Iterator[RawPrediction]:
    decoded: Any = json.loads(value)
    for item in decoded if isinstance(decoded, list) else [decoded]:
        stamp = item["timestamp"]
        yield RawPrediction(
            prediction_id=str(item["prediction_id"]),
            model_id=str(item["model_id"]),
            model_version=str(item["model_version"]),
            timestamp=(
                datetime.fromtimestamp(stamp / 1000, tz=UTC)
                if isinstance(stamp, int | float)
                else datetime.fromisoformat(stamp)
            ),
            event=json.dumps(item, separators=(",", ":")),
            source_partition=partition,
            source_offset=offset,
        )
