"""(a) The ceiling: a bare confluent-kafka consumer that reads every message of the stream and decodes it with
orjson (to dicts, no validation), and does nothing else.

Run by the harness as ``python -m bench.bare_consumer SPEC``; SPEC (JSON) gives ``bootstrap``, ``group`` and
``ends`` (topic -> partition -> end offset). Partitions are assigned, not subscribed: no group join to wait for.
"""

from __future__ import annotations

import json
import sys

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench.measure import Meter

BATCH = 1000


def partition_ends(spec: dict[str, dict[str, int]]) -> dict[tuple[str, int], int]:
    """``ends`` of a spec keyed by (topic, partition), leaving out empty partitions."""
    return {(topic, int(p)): end for topic, parts in spec.items() for p, end in parts.items() if end > 0}


def decode(value: bytes | None) -> int:
    """Decode one message with orjson; return the events it holds (an envelope's length, 1, or 0 if invalid)."""
    try:
        decoded = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return 0
    return len(decoded) if isinstance(decoded, list) else 1


def main() -> None:
    spec = json.loads(sys.argv[1])
    ends = partition_ends(spec["ends"])
    consumer = Consumer(
        {"bootstrap.servers": spec["bootstrap"], "group.id": spec["group"], "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for topic, p in ends])
    meter, unfinished = Meter(), set(ends)
    events = messages = 0
    while unfinished:
        batch = consumer.consume(BATCH, timeout=1.0)
        if batch and not meter.running:
            meter.start()
        for message in batch:
            if message.error() is not None:
                continue
            messages += 1
            where = (message.topic() or "", message.partition() or 0)
            if (message.offset() or 0) + 1 >= ends[where]:
                unfinished.discard(where)
            events += decode(message.value())
        meter.tick(events)
    meter.finish(events, messages)
    consumer.close()


if __name__ == "__main__":
    main()
