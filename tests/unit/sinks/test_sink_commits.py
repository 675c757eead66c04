"""The sink's offset commits: a failed commit after a stored batch is counted and loading goes on (the rows are
idempotent); only a fatal consumer error stops the sink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from driftline.settings import load_settings
from driftline.sinks.sink import Sink


class RefusingConsumer:
    """Stands in for the sink's consumer: every commit fails with ``error``."""

    def __init__(self, error: KafkaError) -> None:
        self.error = error
        self.asked: list[list[TopicPartition]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> Any:
        self.asked.append(offsets)
        raise KafkaException(self.error)


def sink_with(tmp_path: Path, consumer: RefusingConsumer) -> Sink:
    sink = Sink(load_settings(data_dir=tmp_path), client=None)  # type: ignore[arg-type]  # nothing is inserted
    sink.consumer = consumer  # type: ignore[assignment]
    return sink


def test_a_commit_refused_while_the_broker_restarts_is_counted_not_fatal(tmp_path: Path) -> None:
    consumer = RefusingConsumer(KafkaError(KafkaError._TRANSPORT, "Broker transport failure"))
    sink = sink_with(tmp_path, consumer)

    sink._commit({("driftline.predictions", 1): 41})
    sink._commit({("driftline.predictions", 1): 99})

    assert sink.stats.commit_failures == 2
    assert [(tp.topic, tp.partition, tp.offset) for tp in consumer.asked[0]] == [("driftline.predictions", 1, 42)]


def test_a_fatal_consumer_error_on_commit_stops_the_sink(tmp_path: Path) -> None:
    sink = sink_with(tmp_path, RefusingConsumer(KafkaError(KafkaError._FENCED, "fenced", fatal=True)))

    with pytest.raises(KafkaException):
        sink._commit({("driftline.feedback", 0): 7})
    assert sink.stats.commit_failures == 0
