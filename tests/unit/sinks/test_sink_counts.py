"""The sink's counters say what is stored: a dead letter read from its topic is counted once its batch is in
ClickHouse, never while the batch is being collected (a reader of ``stats`` waits on them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message

from driftline.schemas.dead_letters import DeadLetter, Reason
from driftline.settings import load_settings
from driftline.sinks.sink import Sink


class OneBatchConsumer:
    """Stands in for the sink's consumer: hands out ``messages`` once, then nothing; commits succeed."""

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages
        self.committed: list[Any] = []

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        messages, self.messages = self.messages, []
        return messages

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        self.committed.append(offsets)


class Inserts:
    """Stands in for the ClickHouse client: records the inserts, or refuses them with ``error``."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.tables: list[str] = []

    def insert(self, table: str, rows: list[Any], column_names: list[str]) -> None:
        if self.error is not None:
            raise self.error
        self.tables.append(table)


def letter_message(topic: str, offset: int) -> Message:
    letter = DeadLetter(
        source_topic="driftline.predictions",
        source_partition=0,
        source_offset=offset,
        reason=Reason.NOT_JSON,
        error_class="ContractError",
        message="not JSON",
        original=b"{",
    )
    return Message(topic=topic, partition=0, offset=offset, value=letter.original, headers=letter.headers())


@contextmanager
def sink_reading(tmp_path: Path, client: Inserts, offsets: range) -> Iterator[Sink]:
    """A sink whose consumer hands out dead letters at ``offsets`` (its own Kafka clients closed unused)."""
    settings = load_settings(data_dir=tmp_path, sink={"batch_seconds": 0.05})
    sink = Sink(settings, client=client)  # type: ignore[arg-type]
    sink.consumer.close()
    topic = sink.topics["dead-letters"]
    sink.consumer = OneBatchConsumer([letter_message(topic, offset) for offset in offsets])  # type: ignore[assignment]
    try:
        yield sink
    finally:
        sink.dead_letters.close()


def test_dead_letters_are_counted_once_their_batch_is_stored(tmp_path: Path) -> None:
    client = Inserts()
    with sink_reading(tmp_path, client, range(3)) as sink:
        assert sink.step() == 3

    assert client.tables == ["dead_letters"]
    assert dict(sink.stats.dead_letters_by_reason) == {"not_json": 3}


def test_dead_letters_of_a_batch_that_could_not_be_stored_are_not_counted(tmp_path: Path) -> None:
    with (
        sink_reading(tmp_path, Inserts(error=ValueError("refused")), range(3)) as sink,
        pytest.raises(ValueError, match="refused"),
    ):
        sink.step()

    assert dict(sink.stats.dead_letters_by_reason) == {}
