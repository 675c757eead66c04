"""The reference profiles the worker measures drift against, read from the compacted ``reference-profiles``
topic by a plain confluent-kafka consumer in a background thread (Faust's GlobalTable has open bugs).

Every worker reads the whole topic from the beginning, without a consumer group's commits, and keeps the
latest profile per model version.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import TopicPartition
from pydantic import ValidationError

from driftline.kafka.reader import topic_reader
from driftline.schemas.results import ReferenceProfile
from driftline.settings import KafkaSettings

POLL_S = 0.5


class ProfileStore:
    """Latest :class:`ReferenceProfile` per (model_id, model_version), kept current from the topic."""

    def __init__(self, kafka: KafkaSettings, topic: str, catch_up_s: float = 30.0) -> None:
        """Read every profile published so far (up to ``catch_up_s``) before returning, so the first windows
        already see them; later ones arrive in the background."""
        self.topic = topic
        self._profiles: dict[tuple[str, str], ReferenceProfile] = {}
        self._stop = threading.Event()
        self._consumer, partitions = topic_reader(kafka, topic, "profiles")
        self.invalid = 0
        self._catch_up(partitions, catch_up_s)
        self._thread = threading.Thread(target=self._follow, name="driftline-profiles", daemon=True)
        self._thread.start()

    def get(self, model_id: str, model_version: str) -> ReferenceProfile | None:
        """The profile of a model version, if one was published."""
        return self._profiles.get((model_id, model_version))

    def close(self) -> None:
        """Stop following the topic."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()

    def _catch_up(self, partitions: list[int], timeout_s: float) -> None:
        marks = {p: self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10) for p in partitions}
        ends = {p: high for p, (_low, high) in marks.items()}
        read = {p: low for p, (low, _high) in marks.items()}
        deadline = time.monotonic() + timeout_s
        while any(read[p] < ends[p] for p in partitions) and time.monotonic() < deadline:
            message = self._consumer.poll(POLL_S)
            if message is not None and message.error() is None:
                read[message.partition() or 0] = (message.offset() or 0) + 1
                self._take(message.value())

    def _follow(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(POLL_S)
            if message is None or message.error() is not None:
                continue
            self._take(message.value())

    def _take(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            profile = ReferenceProfile.model_validate_json(value)
        except ValidationError:
            self.invalid += 1  # the sink stores it as a dead letter
            return
        self._profiles[(profile.model_id, profile.model_version)] = profile
