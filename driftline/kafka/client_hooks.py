"""What every confluent-kafka client of driftline is given besides its settings
(:meth:`~driftline.settings.KafkaSettings.client_config`): the logger librdkafka's own lines go through (what it
retries itself at INFO, repeats dropped), and the error callback that turns a refused authentication or a failed
TLS handshake into a :class:`BrokerError` instead of a silent retry loop. Imports no Kafka client: settings stay
light."""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from driftline.schemas.errors import BrokerError

REPEAT_S = 60.0
"""A librdkafka line like one shown less than this long ago is held back (and counted)."""
MAX_LINES_KEPT = 1000
"""Distinct lines remembered; past that, the memory starts afresh."""
_VARYING = re.compile(r"\d+ms\b|\s*\(\d+ identical error\(s\) suppressed\)")
"""What differs between two lines of one recurring problem: durations, librdkafka's own count of repeats."""


class _KafkaLines(logging.Filter):
    """librdkafka's log lines as driftline shows them.

    A line about an operation librdkafka retries itself (``Coordinator load in progress: retrying``, while a
    fresh broker loads its coordinator) is INFO, not the warning librdkafka calls it: nothing is wrong yet. A
    line like one of the same level shown less than :data:`REPEAT_S` ago (the same text but for durations: a
    broker that stays down is refused again every few tens of milliseconds) is held back; the next one shown
    says how many were. So a problem shows at once, then at most once a minute while it lasts; the first line
    of every new problem always shows.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._shown: dict[tuple[int, str], tuple[float, int]] = {}  # (level, line) -> (shown at, held back since)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        line = record.getMessage()
        if record.levelno >= logging.WARNING and "retrying" in line:
            record.levelno, record.levelname = logging.INFO, "INFO"
        if record.levelno < logging.getLogger(KAFKA_LOGGER).getEffectiveLevel():
            return False
        key, now = (record.levelno, _VARYING.sub("", line)), self._clock()
        with self._lock:
            shown_at, held = self._shown.get(key, (-math.inf, 0))
            if now - shown_at < REPEAT_S:
                self._shown[key] = (shown_at, held + 1)
                return False
            if len(self._shown) >= MAX_LINES_KEPT:
                self._shown.clear()
            self._shown[key] = (now, 0)
        if held:
            record.msg, record.args = f"{line} ({held} more like it held back since it last showed)", ()
        return True


KAFKA_LOGGER = "driftline.kafka"
"""The logger librdkafka's own log lines go through, for every confluent-kafka client of driftline."""
KAFKA_LOG = logging.getLogger(KAFKA_LOGGER)
KAFKA_LOG.addFilter(_KafkaLines())


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
