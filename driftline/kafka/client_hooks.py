"""What every confluent-kafka client of driftline is given besides its settings
(:meth:`~driftline.settings.KafkaSettings.client_config`): the logger librdkafka's own lines go through (what it
retries itself at INFO), and the error callback that turns a refused authentication or a failed TLS handshake
into a :class:`BrokerError` instead of a silent retry loop. Imports no Kafka client: settings stay light."""

from __future__ import annotations

import logging
from typing import Any

from driftline.schemas.errors import BrokerError


class _RetriedAsInfo(logging.Filter):
    """librdkafka's log lines about an operation it retries itself (``Coordinator load in progress:
    retrying``, while a fresh broker loads its coordinator) are INFO, not the warnings librdkafka calls them:
    nothing is wrong yet."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and "retrying" in record.getMessage():
            record.levelno, record.levelname = logging.INFO, "INFO"
        return record.levelno >= logging.getLogger(KAFKA_LOGGER).getEffectiveLevel()


KAFKA_LOGGER = "driftline.kafka"
"""The logger librdkafka's own log lines go through, for every confluent-kafka client of driftline."""
KAFKA_LOG = logging.getLogger(KAFKA_LOGGER)
KAFKA_LOG.addFilter(_RetriedAsInfo())


class RefusedConnection:
    """librdkafka's ``error_cb``: raise :class:`BrokerError` for authentication and TLS failures."""

    def __init__(self, bootstrap: str, who: str) -> None:
        self.bootstrap = bootstrap
        self.who = who

    def __call__(self, error: Any) -> None:  # a confluent_kafka.KafkaError (not imported: settings stay light)
        name = error.name()
        if name == "_AUTHENTICATION":
            raise BrokerError(
                f"Kafka at {self.bootstrap} refused authentication ({self.who}): {error.str()}; check "
                "DRIFTLINE_KAFKA_SASL_USERNAME, DRIFTLINE_KAFKA_SASL_PASSWORD and DRIFTLINE_KAFKA_SASL_MECHANISM"
            )
        if name == "_SSL":
            raise BrokerError(
                f"TLS handshake with Kafka at {self.bootstrap} failed ({self.who}): {error.str()}; check "
                "DRIFTLINE_KAFKA_SSL_CA_LOCATION and DRIFTLINE_KAFKA_SECURITY_PROTOCOL"
            )
