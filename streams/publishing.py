"""Publishing with confluent-kafka's idempotent producer, each call waiting for delivery: the worker's results
(window results keyed by ``model_id/model_version/window_start``, so revisions of one window share a key;
triggers, profiles) and dead letters (the worker's and the sink's)."""

from __future__ import annotations

from confluent_kafka import KafkaError, Message, Producer
from pydantic import BaseModel

from driftline.schemas.dead_letters import DeadLetter
from driftline.schemas.errors import BrokerError
from driftline.settings import KafkaSettings

FLUSH_TIMEOUT_S = 60.0


class KeyedPublisher:
    """Send contract models with a ``key`` to one topic; :meth:`send` returns once all are delivered."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self._producer = Producer(
            {**kafka.client_config(), "enable.idempotence": True, "compression.type": "lz4", "linger.ms": 5}
        )

    def send(self, messages: list[BaseModel]) -> None:
        """Produce and flush; raise :class:`BrokerError` unless every message was delivered."""
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(error.str())

        for message in messages:
            key: str = message.key  # type: ignore[attr-defined]
            self._producer.produce(
                self.topic, message.model_dump_json().encode(), key=key.encode(), on_delivery=delivered
            )
            self._producer.poll(0)
        remaining = self._producer.flush(FLUSH_TIMEOUT_S)
        if remaining or failures:
            raise BrokerError(
                f"could not publish {remaining or len(failures)} messages to {self.topic}: {failures[:3]}"
            )


class DeadLetterPublisher:
    """Send dead letters to the dead-letter topic as :class:`DeadLetter` describes them (the original bytes as
    the value, ``topic:partition:offset:index`` as the key, the rest in headers); :meth:`send` returns once all
    are delivered."""

    def __init__(self, client_config: dict[str, str], topic: str) -> None:
        self.topic = topic
        self._producer = Producer({**client_config, "enable.idempotence": True, "linger.ms": 20})

    def send(self, letters: list[DeadLetter]) -> None:
        """Produce and flush; raise :class:`BrokerError` unless every dead letter was delivered."""
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(error.str())

        for letter in letters:
            self._producer.produce(
                self.topic, letter.original, key=letter.key.encode(), headers=letter.headers(), on_delivery=delivered
            )
            self._producer.poll(0)
        remaining = self._producer.flush(FLUSH_TIMEOUT_S)
        if remaining or failures:
            raise BrokerError(
                f"could not publish {remaining or len(failures)} dead letters to {self.topic}: "
                f"{failures[:3] or 'flush timed out'}"
            )

    def close(self) -> None:
        """Deliver what is still queued (briefly)."""
        self._producer.flush(10)
