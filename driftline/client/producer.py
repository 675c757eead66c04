"""The Python producer client for model services: ``Monitor(model_id, model_version)``.

Events are validated against the contracts before they are sent, keyed by ``prediction_id`` and placed on
the partition Java clients and Faust would choose (murmur2), so a prediction and its feedback meet on the
same partition. By default events are grouped per partition into batch envelopes (JSON arrays), bounded by
``max_batch`` events, ``linger_s`` seconds and ``kafka.max_message_bytes`` bytes (the limit the worker and
the sink accept, so the client never sends a message they refuse), which amortises the per-message cost;
``envelopes=False`` sends one event per message. An event larger than that limit raises
:class:`ContractError` when it is logged; delivery errors reach ``on_error`` and make :meth:`Monitor.flush`
(and ``close``) raise. One client serves any number of models: name the model per call (``model_id=``,
``model_version=``) instead of, or to override, the client's.
Security comes from ``[kafka]`` settings (SASL, TLS): a refused login or a failed TLS handshake raises
:class:`BrokerError` from the next call instead of retrying forever.

    with Monitor("credit-risk", "1.0") as monitor:
        pid = monitor.log_prediction({"age": 41, "income": 52_000.0}, label=1, score=0.83)
        ...
        monitor.log_feedback(pid, label=0)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import pandas as pd
from confluent_kafka import Producer
from pydantic import ValidationError

from driftline.kafka.delivery import Deliveries
from driftline.kafka.topics import partition_count, partition_for
from driftline.schemas.decoding import explain
from driftline.schemas.errors import BrokerError, ContractError
from driftline.schemas.events import FeedbackEvent, PredictionEvent
from driftline.schemas.topics import FEEDBACK, PREDICTIONS
from driftline.settings import KafkaSettings, Settings, load_settings

ErrorCallback = Callable[[str], None]
PROTOCOL_OVERHEAD_BYTES = 65_536  # librdkafka counts a record's headers and framing in message.max.bytes


def event_producer(kafka: KafkaSettings, message_max_bytes: int) -> Producer:
    """The producer events are sent with: idempotent (acks from every in-sync replica, no duplicates from its own
    retries), lz4, a 5 ms linger; ``message_max_bytes`` is librdkafka's limit per message, framing included."""
    return Producer(
        {
            **kafka.client_config(),
            "enable.idempotence": True,
            "compression.type": "lz4",
            "linger.ms": 5,
            "message.max.bytes": message_max_bytes,
        }
    )


def envelope_bytes(held_bytes: int, held_events: int, added: int) -> int:
    """The size of the envelope ``"[" + events joined by "," + "]"`` once an event of ``added`` bytes joins
    ``held_events`` events of ``held_bytes`` bytes in all."""
    return held_bytes + added + held_events + 2


class Monitor:
    """Send predictions and feedback to driftline: of one model version, or of any named per call."""

    def __init__(
        self,
        model_id: str | None = None,
        model_version: str | None = None,
        *,
        settings: Settings | None = None,
        envelopes: bool = True,
        max_batch: int = 500,
        linger_s: float = 0.1,
        on_error: ErrorCallback | None = None,
    ) -> None:
        self.model_id = model_id
        self.model_version = model_version
        self.settings = settings or load_settings()
        self.envelopes = envelopes
        self.max_batch = max_batch
        self.linger_s = linger_s
        self.on_error = on_error
        self.errors: list[str] = []
        self.max_message_bytes = self.settings.kafka.max_message_bytes
        self._producer = event_producer(self.settings.kafka, self.max_message_bytes + PROTOCOL_OVERHEAD_BYTES)
        self._partitions: dict[str, int] = {}
        self._deliveries = Deliveries(self._failed)
        self._pending: dict[tuple[str, int], list[bytes]] = defaultdict(list)
        self._pending_bytes: dict[tuple[str, int], int] = defaultdict(int)
        self._oldest: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._refused: BrokerError | None = None  # a refused login or TLS handshake met by the linger thread
        self._lingerer = threading.Thread(target=self._linger_loop, name="driftline-linger", daemon=True)
        if envelopes:
            self._lingerer.start()

    # -- logging events --------------------------------------------------------------------------------

    def log_prediction(
        self,
        features: Mapping[str, Any],
        *,
        label: bool | int | str | None = None,
        score: float | None = None,
        scores: Mapping[str, float] | None = None,
        value: float | None = None,
        prediction_id: str | None = None,
        timestamp: datetime | int | str | None = None,
        sensitive: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        model_id: str | None = None,
        model_version: str | None = None,
    ) -> str:
        """Validate and send one prediction; return its id (a new UUID unless given).

        Binary: ``label`` and ``score``; multiclass: ``label`` and optional ``scores``; regression: ``value``.
        ``model_id`` / ``model_version`` name the model for this call (default: the client's). Raises
        :class:`ContractError` naming the field when the event breaks the contract or is larger than a message
        may be.
        """
        prediction: dict[str, Any] = {}
        for key, item in (("label", label), ("score", score), ("scores", scores), ("value", value)):
            if item is not None:
                prediction[key] = item
        event = _validated(
            PredictionEvent,
            {
                "prediction_id": prediction_id or str(uuid.uuid4()),
                "model_id": model_id or self.model_id,
                "model_version": model_version or self.model_version,
                "timestamp": timestamp if timestamp is not None else datetime.now(UTC),
                "features": dict(features),
                "prediction": prediction,
                "sensitive": dict(sensitive or {}),
                "metadata": dict(metadata or {}),
            },
        )
        self._send(self.settings.topic(PREDICTIONS.name), event.prediction_id, event.model_dump_json().encode())
        return str(event.prediction_id)

    def log_feedback(
        self,
        prediction_id: str,
        *,
        label: bool | int | str | None = None,
        value: float | None = None,
        timestamp: datetime | int | str | None = None,
        model_id: str | None = None,
    ) -> None:
        """Validate and send the true outcome of a prediction (``label``, or ``value`` for regression);
        ``model_id`` names its model for this call (default: the client's; feedback may name none)."""
        event = _validated(
            FeedbackEvent,
            {
                "prediction_id": prediction_id,
                "timestamp": timestamp if timestamp is not None else datetime.now(UTC),
                "label": label,
                "value": value,
                "model_id": model_id or self.model_id,
            },
        )
        self._send(self.settings.topic(FEEDBACK.name), prediction_id, event.model_dump_json(exclude_none=True).encode())

    def log_predictions_frame(
        self,
        frame: pd.DataFrame,
        *,
        feature_columns: Iterable[str] | None = None,
        sensitive_columns: Iterable[str] = (),
        model_id: str | None = None,
        model_version: str | None = None,
    ) -> int:
        """Send every row of ``frame`` as a prediction (of ``model_id`` / ``model_version``, default the
        client's); return how many.

        Columns ``prediction_id``, ``timestamp``, ``label``, ``score`` and ``value`` are used when present;
        the features are ``feature_columns`` or every other column except ``sensitive_columns``.
        """
        reserved = {"prediction_id", "timestamp", "label", "score", "value", *sensitive_columns}
        features = list(feature_columns) if feature_columns is not None else [c for c in frame if c not in reserved]
        sensitive = list(sensitive_columns)
        for record in frame.to_dict("records"):
            self.log_prediction(
                {str(name): _plain(record[name]) for name in features},
                label=_plain(record.get("label")),
                score=_plain(record.get("score")),
                value=_plain(record.get("value")),
                prediction_id=_plain(record.get("prediction_id")),
                timestamp=_plain(record.get("timestamp")),
                sensitive={name: str(record[name]) for name in sensitive},
                model_id=model_id,
                model_version=model_version,
            )
        return len(frame)

    def log_feedback_frame(self, frame: pd.DataFrame, *, model_id: str | None = None) -> int:
        """Send every row of ``frame`` (``prediction_id`` and ``label`` or ``value``, optional ``timestamp``)."""
        for record in frame.to_dict("records"):
            self.log_feedback(
                str(record["prediction_id"]),
                label=_plain(record.get("label")),
                value=_plain(record.get("value")),
                timestamp=_plain(record.get("timestamp")),
                model_id=model_id,
            )
        return len(frame)

    # -- delivery --------------------------------------------------------------------------------------

    def flush(self, timeout_s: float = 30.0) -> None:
        """Send every buffered envelope and wait for delivery; raise :class:`BrokerError` on any failure."""
        self._send_due(force=True)
        remaining = self._deliveries.flush(self._producer, timeout_s)
        if remaining or self.errors:
            raise BrokerError(
                f"{remaining} messages not delivered within {timeout_s:.0f} s to {self.settings.kafka.bootstrap}; "
                f"delivery errors: {self.errors[:3]}"
            )

    def close(self) -> None:
        """Stop the linger thread, then flush (joined first: an envelope it holds would otherwise be lost)."""
        self._closed.set()
        if self._lingerer.is_alive():
            self._lingerer.join()
        self.flush()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, topic: str, key: str, payload: bytes) -> None:
        if self._refused is not None:
            raise self._refused
        if envelope_bytes(0, 0, len(payload)) > self.max_message_bytes:  # even alone in an envelope
            raise ContractError(
                f"event {key!r} is {len(payload):,} bytes as JSON, over the {self.max_message_bytes:,} bytes a "
                "message may have (kafka.max_message_bytes, the limit of the worker and the sink): send fewer or "
                "shorter features",
                field="features",
                value=len(payload),
            )
        partition = partition_for(key, self._partition_count(topic))
        if not self.envelopes:
            self._deliveries.produce(self._producer, topic, payload, key=key.encode(), partition=partition)
            return
        with self._lock:
            slot = (topic, partition)
            events = self._pending[slot]
            if events and envelope_bytes(self._pending_bytes[slot], len(events), len(payload)) > self.max_message_bytes:
                self._produce_envelope(slot)
                events = self._pending[slot]
            events.append(payload)
            self._pending_bytes[slot] += len(payload)
            self._oldest.setdefault(slot, time.monotonic())
            full = len(events) >= self.max_batch
        if full:
            self._send_due(force=False)

    def _send_due(self, force: bool) -> None:
        # envelopes are handed to librdkafka under the lock: a flush() racing the linger thread must not find
        # an envelope that is neither pending here nor queued in the producer
        now = time.monotonic()
        with self._lock:
            due = [
                slot
                for slot, events in self._pending.items()
                if events and (force or len(events) >= self.max_batch or now - self._oldest[slot] >= self.linger_s)
            ]
            for slot in due:
                self._produce_envelope(slot)
        self._deliveries.send_again(self._producer)

    def _produce_envelope(self, slot: tuple[str, int]) -> None:
        """Hand the slot's pending events to librdkafka as one envelope (called under the lock)."""
        topic, partition = slot
        events = self._pending.pop(slot)
        self._pending_bytes.pop(slot, None)
        self._oldest.pop(slot, None)
        self._deliveries.produce(self._producer, topic, b"[" + b",".join(events) + b"]", partition=partition)

    def _failed(self, text: str) -> None:
        self.errors.append(text)
        if self.on_error is not None:
            self.on_error(text)

    def _partition_count(self, topic: str) -> int:
        if topic not in self._partitions:
            self._partitions[topic] = partition_count(self._producer, self.settings.kafka, topic)
        return self._partitions[topic]

    def _linger_loop(self) -> None:
        try:
            while not self._closed.wait(self.linger_s / 2):
                self._send_due(force=False)
        except BrokerError as error:  # raised to the caller by the next log_* call
            self._refused = error


def _validated(model: type[PredictionEvent] | type[FeedbackEvent], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        kind = "prediction" if model is PredictionEvent else "feedback"
        _reason, message = explain(error, kind, data.get("prediction_id"))
        raise ContractError(message, field=".".join(map(str, first["loc"])), value=first["input"]) from None


def _plain(value: Any) -> Any:
    """pandas' missing values become None, numpy scalars become Python ones, Timestamps become datetimes."""
    if value is None or (not isinstance(value, str | Mapping | list) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if hasattr(value, "item") else value
