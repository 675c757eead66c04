"""Decode Kafka messages into events, or into dead letters: never an exception, never a silent drop.

The bytes are parsed once by pydantic's JSON parser straight into the models. A batch envelope (JSON array)
is validated whole first (the fast path); only when that fails is it parsed to Python and each event
validated on its own, so one bad event becomes a dead letter and its siblings go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import pydantic_core
from pydantic import BaseModel, TypeAdapter, ValidationError

from driftline.schemas.dead_letters import DeadLetter, Reason
from driftline.schemas.errors import ContractError

DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
# an oversized message keeps only its head as evidence, so the dead letter itself stays publishable
OVERSIZED_ORIGINAL_KEPT = 65_536
E = TypeVar("E", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a message was read: the identity of every row and dead letter made from it, and when Kafka stored
    it (the record's timestamp, seconds since the epoch; None when the record has none)."""

    topic: str
    partition: int
    offset: int
    written_at: float | None = None


def kafka_time(milliseconds: int | None) -> float | None:
    """A Kafka record timestamp in milliseconds as seconds; None for a record without one (-1 or 0)."""
    return milliseconds / 1000 if milliseconds is not None and milliseconds > 0 else None


def latest_believable(written_at: float | None, max_future_s: float | None) -> datetime | None:
    """The latest event time a message stored at ``written_at`` may carry: ``written_at + max_future_s``
    (None: no bound, when either is unknown)."""
    if written_at is None or max_future_s is None:
        return None
    return datetime.fromtimestamp(written_at, UTC) + timedelta(seconds=max_future_s)


@dataclass(frozen=True, slots=True)
class Decoded(Generic[E]):
    """A valid event and its place: ``envelope_index`` is -1 for a single-event message."""

    event: E
    origin: Origin
    envelope_index: int


@dataclass(frozen=True, slots=True)
class DecodeResult(Generic[E]):
    """What one message yielded."""

    events: list[Decoded[E]]
    dead_letters: list[DeadLetter]


class EventDecoder(Generic[E]):
    """Decodes messages of one topic whose events follow ``model`` (one event, or an envelope of them)."""

    def __init__(
        self,
        model: type[E],
        kind: str,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        check: Callable[[E], tuple[Reason, str] | None] | None = None,
        max_future_s: float | None = None,
    ) -> None:
        self.model = model
        self.kind = kind
        self.max_message_bytes = max_message_bytes
        self.check = check
        self.max_future_s = max_future_s
        self._envelope = TypeAdapter(list[model])  # type: ignore[valid-type]

    def decode(self, value: bytes | None, origin: Origin) -> DecodeResult[E]:
        """Events and dead letters of one message; ``value`` None (a tombstone) is a dead letter too.

        Valid events become dead letters as well when their timestamp is more than ``max_future_s`` after the
        time Kafka stored the message (``timestamp_in_future``: a clock that cannot be right must not move event
        time), or when ``check`` objects to them (a model's pinned contract).
        """
        result = self._decode(value, origin)
        latest = latest_believable(origin.written_at, self.max_future_s)
        if (self.check is None and latest is None) or not result.events:
            return result
        kept: list[Decoded[E]] = []
        for decoded in result.events:
            violation = self._violation(decoded.event, latest)
            if violation is None:
                kept.append(decoded)
                continue
            # an event decoded from a message exists only if the message had bytes: keep them whole
            whole_message = decoded.envelope_index < 0
            original = value if whole_message and value else decoded.event.model_dump_json().encode()
            result.dead_letters.append(self._dead_letter(original, origin, decoded.envelope_index, *violation))
        return DecodeResult(kept, result.dead_letters)

    def _violation(self, event: E, latest: datetime | None) -> tuple[Reason, str] | None:
        stamp = getattr(event, "timestamp", None)  # events have one; results do not
        if latest is not None and isinstance(stamp, datetime) and stamp > latest:
            return Reason.TIMESTAMP_IN_FUTURE, (
                f"{self.kind} {getattr(event, 'prediction_id', '')!r}: timestamp {stamp.isoformat()} is more than "
                f"{self.max_future_s:g} s after Kafka stored the message: the producer's clock, or the "
                "timestamp's unit, is wrong"
            )
        return self.check(event) if self.check is not None else None

    def _decode(self, value: bytes | None, origin: Origin) -> DecodeResult[E]:
        if not value:
            return self._rejected(value or b"", origin, -1, Reason.WRONG_SHAPE, "empty message: expected JSON")
        if len(value) > self.max_message_bytes:
            return self._rejected(
                value[:OVERSIZED_ORIGINAL_KEPT],
                origin,
                -1,
                Reason.OVERSIZED,
                f"message of {len(value)} bytes exceeds the limit of {self.max_message_bytes} bytes "
                f"(its first {OVERSIZED_ORIGINAL_KEPT} bytes are kept)",
            )
        if value.lstrip()[:1] == b"[":
            return self._decode_envelope(value, origin)
        try:
            return DecodeResult([Decoded(self.model.model_validate_json(value), origin, -1)], [])
        except ValidationError as error:
            reason, message = explain(error, self.kind, _peek_id(value))
            return self._rejected(value, origin, -1, reason, message)

    def _decode_envelope(self, value: bytes, origin: Origin) -> DecodeResult[E]:
        try:
            events = self._envelope.validate_json(value)
        except ValidationError:
            pass
        else:
            if events:
                return DecodeResult([Decoded(e, origin, i) for i, e in enumerate(events)], [])
        try:
            items = pydantic_core.from_json(value)
        except ValueError as error:
            return self._rejected(value, origin, -1, Reason.NOT_JSON, f"not valid JSON: {error}")
        if not items:
            return self._rejected(value, origin, -1, Reason.WRONG_SHAPE, "empty batch envelope: expected events")
        result: DecodeResult[E] = DecodeResult([], [])
        for index, item in enumerate(items):
            try:
                result.events.append(Decoded(self.model.model_validate(item), origin, index))
            except ValidationError as error:
                reason, message = explain(
                    error, self.kind, item.get("prediction_id") if isinstance(item, dict) else None
                )
                original = pydantic_core.to_json(item, inf_nan_mode="constants")
                result.dead_letters.append(self._dead_letter(original, origin, index, reason, message))
        return result

    def _rejected(self, original: bytes, origin: Origin, index: int, reason: Reason, message: str) -> DecodeResult[E]:
        return DecodeResult([], [self._dead_letter(original, origin, index, reason, message)])

    @staticmethod
    def _dead_letter(original: bytes, origin: Origin, index: int, reason: Reason, message: str) -> DeadLetter:
        return DeadLetter(
            source_topic=origin.topic,
            source_partition=origin.partition,
            source_offset=origin.offset,
            envelope_index=index,
            reason=reason,
            error_class=ContractError.__name__,
            message=message,
            original=original,
        )


def explain(error: ValidationError, kind: str, event_id: object) -> tuple[Reason, str]:
    """The reason of the first problem and a message naming the event, every field, value and expectation."""
    details = error.errors(include_url=False)
    subject = f"{kind} {event_id!r}" if isinstance(event_id, str) else kind
    return _reason(details[0]), f"{subject}: " + "; ".join(_describe(detail) for detail in details)


def _peek_id(value: bytes) -> object:
    try:
        parsed = pydantic_core.from_json(value)
    except ValueError:
        return None
    return parsed.get("prediction_id") if isinstance(parsed, dict) else None


def _describe(detail: Any) -> str:
    loc: Sequence[Any] = detail["loc"]
    # union members show up in the location ("prediction", "binary", "score"); keep the data path only
    path = ".".join(str(part) for part in loc if part not in {"binary", "multiclass", "regression"})
    where = f"field '{path}'" if path else "message"
    if detail["type"] == "missing":
        return f"{where} is missing"
    if detail["type"] in _SELF_EXPLAINING:  # our own validators already name the value
        return f"{where}: {detail['msg'].removeprefix('Value error, ')}"
    shown = repr(detail["input"])
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return f"{where}: {detail['msg'][0].lower()}{detail['msg'][1:]}, got {shown}"


_SELF_EXPLAINING = {"value_error", "wrong_type", "timestamp_out_of_range"}
_REASON_BY_TYPE = {
    "wrong_type": Reason.WRONG_TYPE,
    "timestamp_out_of_range": Reason.TIMESTAMP_OUT_OF_RANGE,
    "json_invalid": Reason.NOT_JSON,
    "json_type": Reason.NOT_JSON,
    "missing": Reason.MISSING_FIELD,
    "extra_forbidden": Reason.UNKNOWN_FIELD,
    "finite_number": Reason.NOT_FINITE,
    "unknown_model_type": Reason.UNKNOWN_MODEL_TYPE,
    "model_type": Reason.WRONG_SHAPE,
    "model_attributes_type": Reason.WRONG_SHAPE,
}


def _reason(detail: Any) -> Reason:
    kind: str = detail["type"]
    if kind in _REASON_BY_TYPE:
        return _REASON_BY_TYPE[kind]
    if kind.endswith(("_type", "_parsing")) or kind.startswith("literal"):
        return Reason.WRONG_TYPE
    return Reason.INVALID_VALUE
