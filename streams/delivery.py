"""Deliveries confluent-kafka's idempotent producer reports without an offset, sent again.

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
log = logging.getLogger(__name__)
OnDelivery = Callable[[KafkaError | None, Message], Any]


class Unconfirmed:
    """The messages of one producer reported delivered without an offset, held to be sent again."""

    def __init__(self) -> None:
        self.held: list[tuple[str, int, bytes | None, bytes, Any]] = []  # topic, partition, key, value, headers

    def note(self, error: KafkaError | None, message: Message) -> bool:
        """True (and the message held) when a delivery report is one of those; call it from ``on_delivery``."""
        if error is not None or message.offset() is not None:
            return False
        topic, partition = message.topic() or "", message.partition() or 0
        self.held.append((topic, partition, message.key(), message.value() or b"", message.headers()))
        return True

    def send_again(self, producer: Producer, on_delivery: OnDelivery) -> int:
        """Produce every held message again, to its partition; return how many."""
        count = 0
        while True:
            try:
                topic, partition, key, value, headers = self.held.pop(0)  # (another thread may send them too)
            except IndexError:
                return count
            log.warning(
                "%s[%d]: a message was reported delivered without an offset; sending it again", topic, partition
            )
            while True:
                try:
                    producer.produce(
                        topic, value, key=key, partition=partition, headers=headers, on_delivery=on_delivery
                    )
                    break
                except BufferError:  # the local queue is full: let librdkafka deliver, then try again
                    producer.poll(0.5)
            count += 1

    def flush(self, producer: Producer, on_delivery: OnDelivery, timeout_s: float) -> int:
        """``producer.flush(timeout_s)``, sending what it reports delivered without an offset again (at most
        ``RESEND_ROUNDS`` times); return how many messages are not delivered (those still held included)."""
        remaining: int = producer.flush(timeout_s)
        for _round in range(RESEND_ROUNDS):
            if remaining or not self.send_again(producer, on_delivery):
                break
            remaining = producer.flush(timeout_s)
        return remaining + len(self.held)
