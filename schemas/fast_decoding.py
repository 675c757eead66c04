"""The worker's fast path: decode a message with msgspec straight into records, or say "ask pydantic".

pydantic (:mod:`driftline.schemas.decoding`) is the authority on what is valid. This decoder accepts only
the plain, common shapes of the two contracts, each with the contract's own bounds, and answers ``None``
for anything else, whereupon the caller decodes the message with pydantic. So it may refuse a valid message
(slower, never wrong) but must never accept an invalid one or read a value differently: a test feeds both
decoders the same corpus and generated events and requires that whatever this one accepts, pydantic accepts
with the same records (tests/unit/schemas/test_fast_decoding.py).

Accepted shapes: ``prediction`` exactly ``{label, score}`` (binary, with a label of 0/1 or a boolean),
``{label}`` or ``{label, scores}`` (multiclass) or ``{value}`` (regression), with no nulls in them; feedback
with exactly one of a non-null ``label`` or ``value``; timestamps as integer epoch milliseconds or RFC 3339
strings, inside the contract's range. Events of models with pinned contracts always go to pydantic (it
applies the pins).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Container
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from driftline.schemas.decoding import DEFAULT_MAX_MESSAGE_BYTES
from driftline.schemas.events import EARLIEST, LATEST, MAX_FEATURES, MAX_TEXT, Task, label_text
from driftline.schemas.records import FeedbackRecord, PredictionRecord

Id = Annotated[str, Meta(min_length=1, max_length=256)]
Name = Annotated[str, Meta(min_length=1, max_length=128)]
Label = bool | int | Annotated[str, Meta(min_length=1, max_length=256)]
Probability = Annotated[float, Meta(ge=0.0, le=1.0)]
# finite by construction: msgspec refuses a JSON number outside the float range ("Number out of range"), and the
# bounds say so in the type (JSON has no NaN), so no event needs a check of its own
Finite = Annotated[float, Meta(ge=-sys.float_info.max, le=sys.float_info.max)]
FeatureValue = bool | int | Finite | Annotated[str, Meta(max_length=MAX_TEXT)] | None
EARLIEST_MS = int(EARLIEST.timestamp() * 1000)
LATEST_MS = int(LATEST.timestamp() * 1000)


class _Prediction(Struct, forbid_unknown_fields=True):
    label: Label | UnsetType = UNSET
    score: Probability | UnsetType = UNSET
    scores: dict[Name, Probability] | UnsetType = UNSET
    value: Finite | UnsetType = UNSET


class _PredictionEvent(Struct, forbid_unknown_fields=True, gc=False):
    prediction_id: Id
    model_id: Id
    model_version: Annotated[str, Meta(min_length=1, max_length=128)]
    timestamp: int | datetime
    prediction: _Prediction
    features: Annotated[dict[Name, FeatureValue], Meta(max_length=MAX_FEATURES)] = {}
    sensitive: dict[Name, Annotated[str, Meta(max_length=256)]] = {}
    metadata: dict[str, Any] = {}
    schema_version: Literal[1] = 1


class _FeedbackEvent(Struct, forbid_unknown_fields=True, gc=False):
    prediction_id: Id
    timestamp: int | datetime
    label: Label | UnsetType = UNSET
    value: float | UnsetType = UNSET
    model_id: Id | UnsetType = UNSET
    schema_version: Literal[1] = 1


_T = TypeVar("_T")

_PREDICTIONS = msgspec.json.Decoder(list[_PredictionEvent] | _PredictionEvent)
_FEEDBACK = msgspec.json.Decoder(list[_FeedbackEvent] | _FeedbackEvent)


def _event_time(stamp: int | datetime) -> datetime | None:
    """UTC time of an epoch-millisecond integer or an RFC 3339 datetime; None outside the contract's range."""
    if isinstance(stamp, int):
        if not EARLIEST_MS <= stamp < LATEST_MS:
            return None
        return datetime.fromtimestamp(stamp / 1000, tz=UTC)
    stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
    return stamp if EARLIEST <= stamp < LATEST else None


class FastDecoder:
    """msgspec decoding of prediction and feedback messages (one event or an envelope) into records.

    ``pinned`` holds the model ids with pinned contracts: a message with an event of one of them is left to
    pydantic, which applies the pins; so is a message over ``max_message_bytes``.
    """

    def __init__(
        self, pinned: Container[str] = frozenset(), max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    ) -> None:
        self.pinned = pinned
        self.max_message_bytes = max_message_bytes

    def predictions(self, value: bytes | None, latest: datetime | None = None) -> list[PredictionRecord] | None:
        """The records of a prediction message, or None when pydantic must decide (also when an event is stamped
        after ``latest``)."""
        decoded = self._decoded(_PREDICTIONS, value)
        if decoded is None:
            return None
        events = decoded if isinstance(decoded, list) else [decoded]
        records = []
        for event in events:
            record = self._prediction(event)
            if record is None or (latest is not None and record.timestamp > latest):
                return None
            records.append(record)
        return records or None

    def feedback(
        self, value: bytes | None, latest: datetime | None = None, offset: int = -1
    ) -> list[FeedbackRecord] | None:
        """The records of a feedback message read at ``offset``, or None when pydantic must decide (also when an
        event is stamped after ``latest``)."""
        decoded = self._decoded(_FEEDBACK, value)
        if decoded is None:
            return None
        envelope = isinstance(decoded, list)
        events = decoded if isinstance(decoded, list) else [decoded]
        records = []
        for index, event in enumerate(events):
            if (event.label is UNSET) == (event.value is UNSET) or event.model_id in self.pinned:
                return None
            stamp = _event_time(event.timestamp)
            if stamp is None or (event.value is not UNSET and not math.isfinite(event.value)):
                return None
            if latest is not None and stamp > latest:
                return None
            records.append(
                FeedbackRecord(
                    event.prediction_id,
                    stamp,
                    None if event.label is UNSET else label_text(event.label),
                    None if event.value is UNSET else event.value,
                    None if event.model_id is UNSET else event.model_id,
                    offset,
                    index if envelope else -1,
                )
            )
        return records or None

    def _decoded(self, decoder: msgspec.json.Decoder[_T], value: bytes | None) -> _T | None:
        """The message decoded, or None when it is empty, oversized or not what ``decoder`` takes."""
        if not value or len(value) > self.max_message_bytes:
            return None
        try:
            return decoder.decode(value)
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):  # invalid UTF-8 too
            return None

    def _prediction(self, event: _PredictionEvent) -> PredictionRecord | None:
        stamp = _event_time(event.timestamp)
        shape = _shape(event.prediction)
        if stamp is None or shape is None or event.model_id in self.pinned:
            return None
        task, predicted, score, output = shape
        return PredictionRecord(
            event.prediction_id,
            event.model_id,
            event.model_version,
            stamp,
            task,
            predicted,
            score,
            output,
            event.features,
            event.sensitive,
        )


def _shape(prediction: _Prediction) -> tuple[Task, str | None, float, float] | None:
    """Task, predicted label, score and value of the plain shapes (see the module docstring); else None."""
    label, score, scores, value = prediction.label, prediction.score, prediction.scores, prediction.value
    if value is not UNSET:
        plain = label is UNSET and score is UNSET and scores is UNSET
        return ("regression", None, math.nan, value) if plain else None
    if label is UNSET or (score is not UNSET and scores is not UNSET):
        return None
    if score is not UNSET:
        if not (isinstance(label, bool) or (isinstance(label, int) and label in (0, 1))):
            return None  # pinned models are decided by pydantic; an unpinned one's label must be 0/1 or a boolean
        return "binary", label_text(label), score, math.nan
    return "multiclass", label_text(label), math.nan, math.nan
