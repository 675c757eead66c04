"""How a confluent-kafka producer's deliveries came out: errors reported, deliveries without an offset sent again.

With idempotence (acks from every in-sync replica) a delivered message has the offset the broker wrote it at. A
report with neither an error nor an offset means the broker took the message for a duplicate of one it holds by
its sequence number: a retry of a message written already, or, seen here about once in fifty runs of a producer
starting on topics created a moment before under load, a message it never wrote, which was then in no log
although reported delivered. Sending it again costs a duplicate at worst, which driftline counts once (a
prediction by its model and id, a label by the first read, a window result by its key and revision, a trigger by
its id, a dead letter by its source offset); not sending it may lose it. Rare: each is logged at WARNING.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

RESEND_ROUNDS = 3  # a flush sends what comes back without an offset again this often at most, then counts it lost
BY_KEY = -1  # librdkafka's RD_KAFKA_PARTITION_UA, produce()'s default: the configured partitioner picks by key
log = logging.getLogger(__name__)


class Deliveries:
    """What one producer's deliveries came to: messages reported delivered without an offset are held to be sent
    again; every delivery error goes to ``on_failure`` as ``topic[partition]: reason``.

    Produce through :meth:`produce` (or pass :meth:`report` as ``on_delivery``), then :meth:`flush`."""

    def __init__(self, on_failure: Callable[[str], Any]) -> None:
        self.on_failure = on_failure
        self.held: list[tuple[str, int, bytes | None, bytes, Any]] = []  # topic, partition, key, value, headers

    def report(self, error: KafkaError | None, message: Message) -> None:
        """confluent-kafka's ``on_delivery``: hold a message delivered without an offset, pass an error on."""
        topic, partition = message.topic() or "", message.partition() or 0
        if error is not None:
            self.on_failure(f"{topic}[{partition}]: {error.str()}")
        elif message.offset() is None:
            self.held.append((topic, partition, message.key(), message.value() or b"", message.headers()))

    def produce(
        self,
        producer: Producer,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        partition: int = BY_KEY,
        headers: Any = None,
    ) -> None:
        """Hand one message to librdkafka (to ``partition``, or by its key), waiting for room when its queue is
        full, with :meth:`report` as its delivery callback; then serve the delivery reports that are due."""
        self._hand_over(producer, (topic, partition, key, value, headers))
        producer.poll(0)

    def _hand_over(self, producer: Producer, message: tuple[str, int, bytes | None, bytes, Any]) -> None:
        topic, partition, key, value, headers = message
        while True:
            try:
                producer.produce(topic, value, key=key, partition=partition, headers=headers, on_delivery=self.report)
                return
            except BufferError:  # the local queue is full: let librdkafka deliver, then try again
                producer.poll(0.5)

    def send_again(self, producer: Producer) -> int:
        """Produce every held message again, to its partition; return how many."""
        count = 0
        while True:
            try:
                message = self.held.pop(0)  # (another thread may send them too: each is taken once)
            except IndexError:
                return count
            log.warning(
                "%s[%d]: a message was reported delivered without an offset; sending it again", message[0], message[1]
            )
            self._hand_over(producer, message)
            count += 1

    def flush(self, producer: Producer, timeout_s: float) -> int:
        """``producer.flush(timeout_s)``, sending what it reports delivered without an offset again (at most
        ``RESEND_ROUNDS`` times); return how many messages are not delivered (those still held included)."""
        remaining: int = producer.flush(timeout_s)
        for _round in range(RESEND_ROUNDS):
            if remaining or not self.send_again(producer):
                break
            remaining = producer.flush(timeout_s)
        return remaining + len(self.held)
