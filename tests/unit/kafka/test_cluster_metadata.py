"""Asking a cluster for its metadata: one that answers late is waited for, and a wait of more than a few seconds
is said once (a cluster that answers on its second attempt says nothing); one that never answers is named in
the error at the end."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from driftline.kafka import topics
from driftline.kafka.topics import cluster_metadata
from driftline.schemas.errors import BrokerError
from driftline.settings import load_settings


class SilentCluster:
    """Stands in for a client: its first ``silent`` metadata requests time out, then it answers."""

    def __init__(self, silent: int) -> None:
        self.silent = silent
        self.asked = 0

    def poll(self, timeout: float) -> None:
        """Nothing queued."""

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        time.sleep(0.01)  # (a real attempt waits up to METADATA_ATTEMPT_S)
        self.asked += 1
        if self.asked <= self.silent:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata"))
        return "metadata"


def test_a_cluster_that_answers_late_is_waited_for_and_the_wait_said_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(topics, "WAITING_NOTICE_S", 0.05)
    kafka = load_settings().kafka
    cluster = SilentCluster(silent=20)

    with caplog.at_level(logging.WARNING, logger="driftline.kafka.topics"):
        assert cluster_metadata(cluster, kafka, timeout_s=60) == "metadata"  # type: ignore[arg-type]
        assert cluster_metadata(SilentCluster(silent=1), kafka, timeout_s=60) == "metadata"  # type: ignore[arg-type]

    assert cluster.asked == 21
    assert [r.getMessage() for r in caplog.records] == [
        f"no answer from Kafka at {kafka.bootstrap} yet; trying for up to 60 s"
    ]


def test_a_cluster_that_never_answers_is_named_in_the_error() -> None:
    kafka = load_settings(kafka={"bootstrap": "kafka-9.example:9092"}).kafka

    with pytest.raises(BrokerError, match=r"cannot reach Kafka at kafka-9.example:9092 .* within 0 s"):
        cluster_metadata(SilentCluster(silent=1_000), kafka, timeout_s=0.01)  # type: ignore[arg-type]
