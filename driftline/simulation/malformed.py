"""Malformed messages: valid simulated events broken in the ways real producers break them.

Each :class:`Malformation` turns a valid prediction or feedback event (the contract's JSON object) into raw
bytes that :class:`driftline.schemas.decoding.EventDecoder` rejects with a known dead-letter reason, so a
simulated stream exercises every path to the dead-letter topic. They are sent as messages of their own (a
broken envelope would take its valid siblings down with it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic_core

from driftline.schemas.dead_letters import Reason
from driftline.schemas.topics import FEEDBACK, PREDICTIONS

Body = dict[str, Any]


@dataclass(frozen=True)
class Malformation:
    """One way to break an event: the topic it is sent to, the reason it must be rejected with, and how."""

    name: str
    topic: str
    reason: Reason
    corrupt: Callable[[Body], bytes]


def _json(body: Body) -> bytes:
    return pydantic_core.to_json(body, inf_nan_mode="constants")


def _truncated(body: Body) -> bytes:
    whole = _json(body)
    return whole[: len(whole) // 2]


def _without(name: str) -> Callable[[Body], bytes]:
    return lambda body: _json({k: v for k, v in body.items() if k != name})


def _nested_feature(body: Body) -> bytes:
    return _json({**body, "features": {**body["features"], "address": {"city": "Oslo", "zip": "0150"}}})


def _score(value: float) -> Callable[[Body], bytes]:
    return lambda body: _json({**body, "prediction": {**body["prediction"], "score": value}})


def _seconds_not_ms(body: Body) -> bytes:
    return _json({**body, "timestamp": body["timestamp"] // 1000})


def _unknown_field(body: Body) -> bytes:
    return _json({**body, "customer_id": 1234})


def _unknown_output(body: Body) -> bytes:
    return _json({**body, "prediction": {"probability": body["prediction"]["score"]}})


def _label_and_value(body: Body) -> bytes:
    return _json({**body, "value": 1.0})


MALFORMATIONS: tuple[Malformation, ...] = (
    Malformation("truncated-json", PREDICTIONS.name, Reason.NOT_JSON, _truncated),
    Malformation("bare-string", PREDICTIONS.name, Reason.WRONG_SHAPE, lambda body: _json(body["prediction_id"])),
    Malformation("missing-model-version", PREDICTIONS.name, Reason.MISSING_FIELD, _without("model_version")),
    Malformation("nested-feature", PREDICTIONS.name, Reason.WRONG_TYPE, _nested_feature),
    Malformation("score-above-one", PREDICTIONS.name, Reason.INVALID_VALUE, _score(1.7)),
    Malformation("score-nan", PREDICTIONS.name, Reason.NOT_FINITE, _score(float("nan"))),
    Malformation("timestamp-in-seconds", PREDICTIONS.name, Reason.TIMESTAMP_OUT_OF_RANGE, _seconds_not_ms),
    Malformation("unknown-field", PREDICTIONS.name, Reason.UNKNOWN_FIELD, _unknown_field),
    Malformation("unknown-output", PREDICTIONS.name, Reason.UNKNOWN_MODEL_TYPE, _unknown_output),
    Malformation("feedback-without-id", FEEDBACK.name, Reason.MISSING_FIELD, _without("prediction_id")),
    Malformation("feedback-label-and-value", FEEDBACK.name, Reason.INVALID_VALUE, _label_and_value),
)
"""Every malformation the simulator draws from, uniformly."""
