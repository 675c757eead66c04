"""A message librdkafka reports delivered without an error yet without an offset is sent again, not lost."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from driftline.streams.delivery import RESEND_ROUNDS, Unconfirmed

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
    unconfirmed, broker = Unconfirmed(), ScriptedBroker([None, None, 7])
    letter = ("t.dead-letters", 1, b"k", b"{bad", [("reason", b"not_json")])
    broker.produce(
        letter[0], letter[3], key=letter[2], partition=letter[1], headers=letter[4], on_delivery=unconfirmed.note
    )

    remaining = unconfirmed.flush(broker, unconfirmed.note, 1.0)  # type: ignore[arg-type]

    assert (remaining, broker.produced, unconfirmed.held) == (0, [letter] * 3, [])


def test_a_message_never_given_an_offset_counts_as_not_delivered() -> None:
    unconfirmed, broker = Unconfirmed(), ScriptedBroker([None] * (RESEND_ROUNDS + 1))
    broker.produce("t.predictions", b"[...]", key=None, partition=1, headers=None, on_delivery=unconfirmed.note)

    remaining = unconfirmed.flush(broker, unconfirmed.note, 1.0)  # type: ignore[arg-type]

    assert (remaining, len(broker.produced)) == (1, RESEND_ROUNDS + 1)


def test_a_delivery_with_an_offset_or_an_error_is_not_held() -> None:
    unconfirmed = Unconfirmed()
    assert not unconfirmed.note(None, Report(("t.feedback", 0), b"{}", None, 3))  # type: ignore[arg-type]
    assert not unconfirmed.note(object(), Report(("t.feedback", 0), b"{}", None, None))  # type: ignore[arg-type]
    assert unconfirmed.held == []
