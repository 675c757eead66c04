"""The JSON of the simulated events: :class:`SimulatedEvent` and the payloads it carries.

Payloads are written column-wise: one ``%``-template per event type, filled row by row with values whose
``%s`` is their JSON token (a test holds them to the contracts). A malformed message corrupts the payload of a
valid prediction, or of the feedback it would get, in one of the ways of :mod:`driftline.simulation.malformed`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pydantic_core
from numpy.typing import NDArray

from driftline.schemas.dead_letters import Reason
from driftline.schemas.topics import FEEDBACK
from driftline.simulation.malformed import Malformation
from driftline.simulation.world import Floats


@dataclass(frozen=True, slots=True)
class SimulatedEvent:
    """One message of the stream, in emission order.

    ``payload`` is the event's JSON (a prediction or feedback event of the contract), or for a ``malformed``
    message the raw bytes that the decoder rejects with ``reason``. ``topic`` is the contract's topic name
    (before the configured prefix); ``key`` the Kafka key (the prediction id).
    """

    kind: Literal["prediction", "feedback", "malformed"]
    time_ms: int
    phase: str
    topic: str
    key: str
    model_id: str
    model_version: str
    payload: bytes
    reason: Reason | None = None

    @property
    def body(self) -> dict[str, Any]:
        """The valid event's JSON object (a malformed message has none)."""
        if self.kind == "malformed":
            raise ValueError(f"malformed message {self.key}: its payload is the raw bytes, not an event")
        body: dict[str, Any] = pydantic_core.from_json(self.payload)
        return body


def json_string(text: str) -> str:
    """``text`` as a JSON string token (quoted, escaped, ASCII)."""
    return json.dumps(text)


def quoted(names: tuple[str, ...] | list[str]) -> NDArray[np.object_]:
    """JSON string tokens of ``names``, to index with codes."""
    return np.array([json_string(name) for name in names], dtype=object)


def number_tokens(column: Floats) -> list[Any]:
    """A numeric column as values whose ``%s`` is their JSON token: whole numbers as integers, others as
    their shortest repr, a missing value (NaN) as ``null``."""
    missing = np.isnan(column)
    present = column[~missing]
    values = column.astype(object)
    if np.all(present == np.round(present)) and np.all(np.abs(present) < 2**53):
        values[~missing] = present.astype(np.int64)
    values[missing] = "null"
    return list(values.tolist())


def prediction_payloads(
    prefix: str, features: list[str], attributes: list[str], rows: Iterable[tuple[Any, ...]]
) -> list[bytes]:
    """Prediction events' JSON, one per row of :func:`_prediction_template`'s fields."""
    template = _prediction_template(prefix, features, attributes)
    return [(template % values).encode() for values in rows]


def feedback_payloads(prefix: str, rows: Iterable[tuple[Any, ...]]) -> list[bytes]:
    """Feedback events' JSON, one per row of :func:`_feedback_template`'s fields."""
    template = _feedback_template(prefix)
    return [(template % values).encode() for values in rows]


def malformed(prediction: SimulatedEvent, malformation: Malformation) -> SimulatedEvent:
    """The message that breaks ``prediction`` (or, for the feedback topic, the feedback that would give it
    its predicted label) in the way of ``malformation``, with the prediction's time, phase and key."""
    body = pydantic_core.from_json(prediction.payload)
    if malformation.topic == FEEDBACK.name:
        label = body["prediction"]["label"]
        body = {k: body[k] for k in ("prediction_id", "timestamp", "model_id")} | {"label": label}
    return SimulatedEvent(
        "malformed",
        prediction.time_ms,
        prediction.phase,
        malformation.topic,
        prediction.key,
        prediction.model_id,
        prediction.model_version,
        malformation.corrupt(body),
        malformation.reason,
    )


def _prediction_template(prefix: str, features: list[str], attributes: list[str]) -> str:
    """The ``%``-template of a prediction event's JSON; its fields, in order: number, model (token),
    version (token), timestamp, one token per feature, predicted label, score, one token per attribute."""
    features_json = ",".join(json_string(name).replace("%", "%%") + ":%s" for name in features)
    sensitive_json = ",".join(json_string(name).replace("%", "%%") + ":%s" for name in attributes)
    return (
        f'{{"prediction_id":{_id_template(prefix)},"model_id":%s,"model_version":%s,"timestamp":%d,'
        f'"features":{{{features_json}}},"prediction":{{"label":%d,"score":%r}},"sensitive":{{{sensitive_json}}}}}'
    )


def _feedback_template(prefix: str) -> str:
    """The ``%``-template of a feedback event's JSON: number, timestamp, label, model (token)."""
    return f'{{"prediction_id":{_id_template(prefix)},"timestamp":%d,"label":%d,"model_id":%s}}'


def _id_template(prefix: str) -> str:
    """A prediction id's JSON token with its number left as ``%d``."""
    return json_string(prefix).replace("%", "%%")[:-1] + '%d"'
