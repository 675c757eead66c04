"""A message librdkafka reports delivered without an error yet without an offset is sent again, not lost; a delivery
error is reported, not held."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from driftline.kafka.delivery import RESEND_ROUNDS, Deliveries

Headers = list[tuple[str, bytes]]


@dataclass
class Report:
    """What a delivery report carries, as confluent-kafka's Message gives it."""

    where: tuple[str, int]
    payload: bytes
    head: Headers | None
    at: int | None

    def topic(self) -> str:
        return self.where[0]

    def partition(self) -> int:
        return self.where[1]

    def key(self) -> bytes | None:
        return b"k"

    def value(self) -> bytes:
        return self.payload

    def headers(self) -> Headers | None:
        return self.head

    def offset(self) -> int | None:
        return self.at


class ScriptedBroker:
    """A producer whose n-th delivery report names the n-th offset of ``offsets`` (None: no offset)."""

    def __init__(self, offsets: list[int | None]) -> None:
        self.offsets = list(offsets)
        self.queued: list[tuple[Report, Callable[[None, Report], Any]]] = []
        self.produced: list[tuple[str, int, bytes | None, bytes, Headers | None]] = []

    def produce(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None,
        partition: int,
        headers: Headers | None,
        on_delivery: Callable[[None, Report], Any],
    ) -> None:
        self.produced.append((topic, partition, key, value, headers))
        self.queued.append((Report((topic, partition), value, headers, None), on_delivery))

    def poll(self, _timeout_s: float) -> int:
        return 0

    def flush(self, _timeout_s: float) -> int:
        while self.queued:
            report, on_delivery = self.queued.pop(0)
            report.at = self.offsets.pop(0)
            on_delivery(None, report)
        return 0


def test_a_delivery_without_an_offset_is_sent_again_whole_until_the_broker_gives_one() -> None:
    failures: list[str] = []
    deliveries, broker = Deliveries(failures.append), ScriptedBroker([None, None, 7])
    letter = ("t.dead-letters", 1, b"k", b"{bad", [("reason", b"not_json")])
    deliveries.produce(broker, letter[0], letter[3], key=letter[2], partition=letter[1], headers=letter[4])  # type: ignore[arg-type]

    remaining = deliveries.flush(broker, 1.0)  # type: ignore[arg-type]

    assert (remaining, broker.produced, deliveries.held, failures) == (0, [letter] * 3, [], [])


def test_a_message_never_given_an_offset_counts_as_not_delivered() -> None:
    deliveries, broker = Deliveries(print), ScriptedBroker([None] * (RESEND_ROUNDS + 1))
    deliveries.produce(broker, "t.predictions", b"[...]", partition=1)  # type: ignore[arg-type]

    remaining = deliveries.flush(broker, 1.0)  # type: ignore[arg-type]

    assert (remaining, len(broker.produced)) == (1, RESEND_ROUNDS + 1)


class Refused:
    def str(self) -> str:
        return "Broker: Message size too large"


def test_a_delivery_with_an_offset_or_an_error_is_not_held_and_an_error_is_reported() -> None:
    failures: list[str] = []
    deliveries = Deliveries(failures.append)
    deliveries.report(None, Report(("t.feedback", 0), b"{}", None, 3))  # type: ignore[arg-type]
    deliveries.report(Refused(), Report(("t.feedback", 2), b"{}", None, None))  # type: ignore[arg-type]
    assert (deliveries.held, failures) == ([], ["t.feedback[2]: Broker: Message size too large"])
