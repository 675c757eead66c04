"""The benchmark's stream in the broker: produced once per message shape under its own topic prefix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from bench.config import BenchConfig, Shape
from driftline.kafka.topics import create_topics
from driftline.schemas.topics import FEEDBACK, PREDICTIONS
from driftline.settings import Settings
from driftline.simulation.simulator import Simulation
from driftline.simulation.traffic import send

Ends = dict[str, dict[int, int]]  # topic -> partition -> end offset


@dataclass(frozen=True)
class Stream:
    """One shape of the stream as it sits in Kafka: what was sent and where each input partition ends."""

    shape: Shape
    prefix: str
    predictions: int
    feedback: int
    malformed: int
    ends: Ends
    produce_s: float

    @property
    def events(self) -> int:
        """Predictions plus feedback: what every program's rate is counted in."""
        return self.predictions + self.feedback

    @property
    def messages(self) -> int:
        """Kafka messages on the input topics."""
        return sum(sum(partitions.values()) for partitions in self.ends.values())


def produce(settings: Settings, config: BenchConfig, shape: Shape, progress: Callable[[int], None]) -> Stream:
    """Create the prefix's topics and send the stream through the simulator's fast path (same JSON and
    murmur2 partitions as the producer client); envelopes hold at most ``config.envelope`` events."""
    create_topics(settings)
    report = send(
        Simulation(config.simulation()),
        settings,
        fast=True,
        envelopes=shape == "envelopes",
        max_batch=config.envelope,
        progress=lambda sent: progress(sent.events),
    )
    ends = end_offsets(settings, [settings.topic(PREDICTIONS.name), settings.topic(FEEDBACK.name)])
    return Stream(
        shape, settings.kafka.topic_prefix, report.predictions, report.feedback, report.malformed, ends, report.seconds
    )


def end_offsets(settings: Settings, topics: list[str]) -> Ends:
    """The end (next) offset of every partition of ``topics``."""
    consumer = Consumer({**settings.kafka.client_config(), "group.id": "bench-offsets"})
    try:
        ends: Ends = {}
        for topic in topics:
            partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
            ends[topic] = {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in sorted(partitions)
            }
        return ends
    finally:
        consumer.close()
