"""Create driftline's topics with the configured layout and verify that the join inputs are co-partitioned."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from driftline.schemas.errors import BrokerError
from driftline.schemas.topics import ALL_TOPICS, CO_PARTITIONED
from driftline.settings import Settings

ADMIN_TIMEOUT_S = 30.0


def broker_answers(bootstrap: str, timeout_s: float) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request within ``timeout_s`` (quietly)."""
    quiet = logging.getLogger("driftline.topics.probe")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": quiet}
    try:
        AdminClient(config).list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return True


def admin_client(settings: Settings) -> AdminClient:
    """An AdminClient for the configured cluster."""
    return AdminClient({"bootstrap.servers": settings.kafka.bootstrap})


def delete_topics(settings: Settings, timeout_s: float = ADMIN_TIMEOUT_S) -> list[str]:
    """Delete every driftline topic under the configured prefix that exists; return their names.

    Returns once the broker no longer lists them, so they can be created again at once.
    """
    admin = admin_client(settings)
    names = [settings.topic(s.name) for s in ALL_TOPICS if settings.topic(s.name) in _partition_counts(admin, settings)]
    if not names:
        return []
    for name, future in admin.delete_topics(names, operation_timeout=timeout_s).items():
        try:
            future.result()
        except KafkaException as exc:
            raise BrokerError(f"could not delete topic {name}: {exc.args[0].str()}") from None
    deadline = time.monotonic() + timeout_s
    while set(names) & _partition_counts(admin, settings).keys():
        if time.monotonic() > deadline:
            raise BrokerError(f"topics {names} still listed {timeout_s:.0f} s after their deletion")
        time.sleep(0.2)
    return names


def create_topics(settings: Settings) -> dict[str, str]:
    """Create every topic that does not exist yet; return ``{topic: "created" | "exists"}``.

    Partition counts are explicit, since Faust's default (8) and the broker's auto-create default differ.
    """
    admin = admin_client(settings)
    existing = _partition_counts(admin, settings)
    wanted = [
        NewTopic(
            settings.topic(spec.name),
            num_partitions=settings.kafka.partitions,
            replication_factor=settings.kafka.replication_factor,
            config={"cleanup.policy": "compact"} if spec.compacted else {},
        )
        for spec in ALL_TOPICS
        if settings.topic(spec.name) not in existing
    ]
    outcome = {name: "exists" for name in existing if name in {settings.topic(s.name) for s in ALL_TOPICS}}
    for name, future in (admin.create_topics(wanted, operation_timeout=ADMIN_TIMEOUT_S) if wanted else {}).items():
        try:
            future.result()
            outcome[name] = "created"
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise BrokerError(f"could not create topic {name}: {exc.args[0].str()}") from None
            outcome[name] = "exists"
    return outcome


@dataclass(frozen=True)
class CoPartitioning:
    """Partition counts of the join inputs and whether they agree."""

    partitions: dict[str, int | None]

    @property
    def ok(self) -> bool:
        """True when every join input exists and all have the same partition count."""
        counts = set(self.partitions.values())
        return None not in counts and len(counts) == 1

    def describe(self) -> str:
        """One line for a person."""
        parts = ", ".join(f"{t}: {'missing' if n is None else n}" for t, n in self.partitions.items())
        verdict = "co-partitioned" if self.ok else "NOT co-partitioned: the join would miss feedback"
        return f"{verdict} ({parts})"


def check_copartitioning(settings: Settings) -> CoPartitioning:
    """Compare the partition counts of predictions and feedback (the join needs them equal)."""
    counts = _partition_counts(admin_client(settings), settings)
    return CoPartitioning({settings.topic(s.name): counts.get(settings.topic(s.name)) for s in CO_PARTITIONED})


def _partition_counts(admin: AdminClient, settings: Settings) -> dict[str, int]:
    try:
        metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        raise BrokerError(
            f"cannot reach Kafka at {settings.kafka.bootstrap} (DRIFTLINE_KAFKA_BOOTSTRAP): {exc.args[0].str()}"
        ) from None
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}
