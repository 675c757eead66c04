"""A message librdkafka reports delivered without an error yet without an offset is sent again, not lost."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from driftline.producer import RESEND_ROUNDS, Unconfirmed


@dataclass
class Report:
    """What a delivery report carries, as confluent-kafka's Message gives it."""

    where: tuple[str, int]
    payload: bytes
    at: int | None

    def topic(self) -> str:
        return self.where[0]

    def partition(self) -> int:
        return self.where[1]

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes:
        return self.payload

    def offset(self) -> int | None:
        return self.at


class ScriptedBroker:
    """A producer whose n-th delivery report names the n-th offset of ``offsets`` (None: no offset)."""

    def __init__(self, offsets: list[int | None], on_delivery: Callable[[None, Report], object]) -> None:
        self.offsets, self.on_delivery = list(offsets), on_delivery
        self.queued: list[tuple[str, int, bytes]] = []
        self.produced = 0

    def produce(self, topic: str, partition: int, _key: bytes | None, payload: bytes) -> None:
        self.queued.append((topic, partition, payload))
        self.produced += 1

    def flush(self, _timeout_s: float) -> int:
        while self.queued:
            topic, partition, payload = self.queued.pop(0)
            self.on_delivery(None, Report((topic, partition), payload, self.offsets.pop(0)))
        return 0


def test_a_delivery_without_an_offset_is_sent_again_until_the_broker_gives_one() -> None:
    unconfirmed = Unconfirmed()
    broker = ScriptedBroker([None, None, 7], unconfirmed.note)
    broker.produce("t.feedback", 0, None, b"[...]")

    remaining = unconfirmed.flush(broker, broker.produce, 1.0)  # type: ignore[arg-type]

    assert (remaining, broker.produced, unconfirmed.held) == (0, 3, [])


def test_a_message_never_given_an_offset_counts_as_not_delivered() -> None:
    unconfirmed = Unconfirmed()
    broker = ScriptedBroker([None] * (RESEND_ROUNDS + 1), unconfirmed.note)
    broker.produce("t.predictions", 1, None, b"[...]")

    remaining = unconfirmed.flush(broker, broker.produce, 1.0)  # type: ignore[arg-type]

    assert (remaining, broker.produced) == (1, RESEND_ROUNDS + 1)


def test_a_delivery_with_an_offset_or_an_error_is_not_held() -> None:
    unconfirmed = Unconfirmed()
    assert not unconfirmed.note(None, Report(("t.feedback", 0), b"{}", 3))  # type: ignore[arg-type]
    assert not unconfirmed.note(object(), Report(("t.feedback", 0), b"{}", None))  # type: ignore[arg-type]
    assert unconfirmed.held == []
