"""Reading a whole topic outside any consumer group's work: a consumer assigned every partition of the topic, in a
group of its own that never commits, so it takes no message away from a real subscriber and leaves no offsets
behind."""

from __future__ import annotations

import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from driftline.kafka.topics import partition_count
from driftline.settings import KafkaSettings


def topic_reader(
    kafka: KafkaSettings, topic: str, who: str, start: int = OFFSET_BEGINNING
) -> tuple[Consumer, list[int]]:
    """A consumer of every partition of ``topic`` from ``start`` (``OFFSET_BEGINNING`` or ``OFFSET_END``), in the
    group ``driftline-<who>-<random>``, and the topic's partitions (:class:`BrokerError` if Kafka does not answer or
    the topic does not exist). Close it after."""
    consumer = Consumer(
        {**kafka.client_config(), "group.id": f"driftline-{who}-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    try:
        partitions = list(range(partition_count(consumer, kafka, topic)))
    except BaseException:
        consumer.close()
        raise
    consumer.assign([TopicPartition(topic, p, start) for p in partitions])
    return consumer, partitions
