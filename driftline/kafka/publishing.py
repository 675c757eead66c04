"""Publishing with confluent-kafka's idempotent producer, each call waiting for delivery: the worker's results
(window results keyed by ``model_id/model_version/window_start``, so revisions of one window share a key;
triggers, profiles) and dead letters (the worker's and the sink's). A message reported delivered without an offset
is sent again (:mod:`driftline.kafka.delivery`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import Producer
from pydantic import BaseModel

from driftline.kafka.delivery import Deliveries
from driftline.schemas.dead_letters import DeadLetter
from driftline.schemas.errors import BrokerError
from driftline.settings import KafkaSettings

FLUSH_TIMEOUT_S = 60.0
Headers = list[tuple[str, str | bytes | None]]


class _Publisher:
    """An idempotent confluent-kafka producer to one topic whose :meth:`_deliver` returns once every message is
    delivered, and raises :class:`BrokerError` naming the topic unless each was."""

    def __init__(self, client_config: dict[str, Any], topic: str, **options: Any) -> None:
        self.topic = topic
        self._producer = Producer({**client_config, "enable.idempotence": True, **options})

    def _deliver(self, messages: Iterable[tuple[bytes, bytes, Headers | None]], what: str) -> None:
        """Produce each ``(value, key, headers)`` and flush."""
        failures: list[str] = []
        deliveries = Deliveries(failures.append)
        for value, key, headers in messages:
            deliveries.produce(self._producer, self.topic, value, key=key, headers=headers)
        remaining = deliveries.flush(self._producer, FLUSH_TIMEOUT_S)
        if remaining or failures:
            raise BrokerError(
                f"could not publish {remaining or len(failures)} {what} to {self.topic}: "
                f"{failures[:3] or 'flush timed out'}"
            )

    def close(self) -> None:
        """Deliver what is still queued (briefly)."""
        self._producer.flush(10)


class KeyedPublisher(_Publisher):
    """Send contract models with a ``key`` to one topic as JSON; :meth:`send` returns once all are delivered."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        super().__init__(kafka.client_config(), topic, **{"compression.type": "lz4", "linger.ms": 5})

    def send(self, messages: list[BaseModel]) -> None:
        """Produce and flush; raise :class:`BrokerError` unless every message was delivered."""
        self._deliver(
            ((m.model_dump_json().encode(), m.key.encode(), None) for m in messages),  # type: ignore[attr-defined]
            "messages",
        )


class DeadLetterPublisher(_Publisher):
    """Send dead letters to the dead-letter topic as :class:`DeadLetter` describes them (the original bytes as
    the value, ``topic:partition:offset:index`` as the key, the rest in headers); :meth:`send` returns once all
    are delivered."""

    def __init__(self, client_config: dict[str, Any], topic: str) -> None:
        super().__init__(client_config, topic, **{"linger.ms": 20})

    def send(self, letters: list[DeadLetter]) -> None:
        """Produce and flush; raise :class:`BrokerError` unless every dead letter was delivered."""
        self._deliver(((letter.original, letter.key.encode(), letter.headers()) for letter in letters), "dead letters")
