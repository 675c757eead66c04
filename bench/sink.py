"""(e) The sink loading ClickHouse: :class:`driftline.sinks.sink.Sink` on the embedded engine (chDB), stepped
batch by batch (``Sink.run`` is the same loop) over every topic of the prefix: the raw predictions and
feedback, the worker's window results and triggers, and the dead letters it publishes itself.

Run by the harness as ``python -m bench.sink SPEC``; SPEC (JSON) gives ``settings`` (load_settings overrides:
broker, prefix, sink group, chDB path), ``ends`` of the topics it reads and ``dead_letters``, how many it will
publish (one per malformed message) and read back. Partitions are assigned from the beginning (no group join);
it stops once every topic is read to its end and the dead letters are stored. Time runs from the first batch's
start, after ClickHouse is open and the tables exist.
"""

from __future__ import annotations

import json
import sys

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from bench.bare_consumer import partition_ends
from bench.measure import Meter
from driftline.schemas.tables import DEAD_LETTERS, FEEDBACK, PREDICTIONS
from driftline.settings import load_settings
from driftline.sinks.clickhouse import open_configured
from driftline.sinks.sink import Sink


def main() -> None:
    spec = json.loads(sys.argv[1])
    settings = load_settings(**spec["settings"])
    ends = partition_ends(spec["ends"])
    client = open_configured(settings)
    sink = Sink(settings, client)
    consumer = sink.consumer
    partitions = [
        TopicPartition(topic, p)
        for topic in sink.topics.values()
        for p in consumer.list_topics(topic, timeout=30).topics[topic].partitions
    ]
    consumer.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in partitions])
    read = [TopicPartition(topic, p) for topic, p in ends]
    meter = Meter()
    meter.start()
    while sink.stats.rows[DEAD_LETTERS.name] < spec["dead_letters"] or any(
        tp.offset < ends[(tp.topic, tp.partition)] for tp in consumer.position(read)
    ):
        sink.step()
        meter.tick(sink.stats.rows[PREDICTIONS.name] + sink.stats.rows[FEEDBACK.name])
    rows = dict(sink.stats.rows)
    meter.finish(
        rows[PREDICTIONS.name] + rows[FEEDBACK.name],
        sink.stats.messages,
        rows=sum(rows.values()),
        rows_by_table=rows,
        batches=sink.stats.batches,
    )
    consumer.close()
    client.close()


if __name__ == "__main__":
    main()
