"""Create driftline's topics with the configured layout and verify that the join inputs are co-partitioned."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, murmur2
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic  # type: ignore[attr-defined]
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay

from driftline.schemas.errors import BrokerError
from driftline.schemas.topics import ALL_TOPICS, CO_PARTITIONED
from driftline.settings import KafkaSettings, Settings

ADMIN_TIMEOUT_S = 30.0
METADATA_ATTEMPT_S = 1.0
WAITING_NOTICE_S = 5.0  # a cluster silent this long is said to be waited for (a busy one answers sooner)
log = logging.getLogger(__name__)


def broker_answers(kafka: KafkaSettings, timeout_s: float) -> bool:
    """True when the cluster of ``kafka`` answers a metadata request within ``timeout_s`` (quietly)."""
    quiet = logging.getLogger("driftline.kafka.topics.probe")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    config: dict[str, Any] = {**kafka.client_config(), "logger": quiet}
    try:
        AdminClient(config).list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return True


def cluster_metadata(
    client: Producer | AdminClient | Consumer,
    kafka: KafkaSettings,
    topic: str | None = None,
    timeout_s: float = ADMIN_TIMEOUT_S,
) -> ClusterMetadata:
    """``client.list_topics(topic)``, failing fast and saying why.

    Asked in attempts of :data:`METADATA_ATTEMPT_S` until ``timeout_s`` (saying so, once, when none has been
    answered for :data:`WAITING_NOTICE_S`); before each attempt the client's queued
    errors are served (``poll``), so a refused login or a failed TLS handshake raises the :class:`BrokerError`
    of :meth:`KafkaSettings.client_config`'s error callback after about a second rather than a bare timeout
    at the end. When nothing answers, raises :class:`BrokerError` naming the bootstrap. ``client`` must be
    built from ``kafka.client_config()``; a consumer must not be assigned partitions yet (``poll`` would take a
    message).
    """

    def attempt() -> ClusterMetadata:
        client.poll(0)
        return client.list_topics(topic, timeout=METADATA_ATTEMPT_S)

    said = False

    def waiting(state: RetryCallState) -> None:
        nonlocal said
        if not said and (state.seconds_since_start or 0.0) >= WAITING_NOTICE_S:
            said = True
            log.warning("no answer from Kafka at %s yet; trying for up to %.0f s", kafka.bootstrap, timeout_s)

    retrying = Retrying(
        stop=stop_after_delay(timeout_s),
        retry=retry_if_exception_type(KafkaException),
        before_sleep=waiting,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except KafkaException as exc:
        raise BrokerError(
            f"cannot reach Kafka at {kafka.bootstrap} (DRIFTLINE_KAFKA_BOOTSTRAP, {kafka.security_protocol}) "
            f"within {timeout_s:.0f} s: {exc.args[0].str()}"
        ) from None


def partition_count(client: Producer | AdminClient | Consumer, kafka: KafkaSettings, topic: str) -> int:
    """How many partitions ``topic`` has (:func:`cluster_metadata`); :class:`BrokerError` if it does not exist."""
    info = cluster_metadata(client, kafka, topic).topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        raise BrokerError(f"topic {topic} does not exist at {kafka.bootstrap}; run `driftline topics create`")
    return len(info.partitions)


def partition_for(key: str, partitions: int) -> int:
    """The partition of ``key`` among ``partitions``: murmur2, as Java clients, Faust and Kafka Streams compute it, so
    that a prediction and its feedback (keyed by ``prediction_id``) meet on one partition."""
    return int(murmur2(key.encode(), partitions))


def check_connection(kafka: KafkaSettings, timeout_s: float = ADMIN_TIMEOUT_S) -> None:
    """Return once the cluster answers with these settings; else raise :class:`BrokerError` naming the bootstrap
    and the cause (authentication refused, TLS handshake failed, nothing answering) as :func:`cluster_metadata`."""
    cluster_metadata(AdminClient(kafka.client_config()), kafka, timeout_s=timeout_s)


def admin_client(settings: Settings) -> AdminClient:
    """An AdminClient for the configured cluster."""
    return AdminClient(settings.kafka.client_config())


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
    metadata = cluster_metadata(admin, settings.kafka)
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}
