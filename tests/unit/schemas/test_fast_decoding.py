"""The msgspec fast path never disagrees with pydantic: whatever it accepts, pydantic accepts with the same
records; what it refuses, pydantic decides. Fed the same corpus of good and bad events and generated ones."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.schemas.decoding import DecodeResult, EventDecoder, Origin
from driftline.schemas.events import FeedbackEvent, PredictionEvent
from driftline.schemas.fast_decoding import FastDecoder
from driftline.schemas.records import feedback_record, prediction_record
from tests.unit.schemas.test_contracts import BAD, GOOD, prediction

ORIGIN = Origin("predictions", 0, 0)
FAST = FastDecoder(max_message_bytes=10_000)
PREDICTIONS = EventDecoder(PredictionEvent, "prediction", max_message_bytes=10_000)
FEEDBACK = EventDecoder(FeedbackEvent, "feedback", max_message_bytes=10_000)


def comparable(records: list[Any]) -> list[tuple[Any, ...]]:
    """Records with NaN as None (NaN is not equal to itself) and features as plain dicts."""
    return [
        tuple(None if isinstance(v, float) and math.isnan(v) else dict(v) if isinstance(v, dict) else v for v in r)
        for r in records
    ]


def assert_agrees_on_predictions(value: bytes) -> bool:
    """The fast verdict agrees with pydantic's; True when the fast path accepted the message."""
    return _assert_agrees(FAST.predictions(value), PREDICTIONS.decode(value, ORIGIN), prediction_record)


def assert_agrees_on_feedback(value: bytes) -> bool:
    """As :func:`assert_agrees_on_predictions`, for a feedback message."""
    return _assert_agrees(FAST.feedback(value), FEEDBACK.decode(value, ORIGIN), feedback_record)


def _assert_agrees(fast: list[Any] | None, slow: DecodeResult[Any], record: Callable[[Any], Any]) -> bool:
    if fast is None:
        return False
    assert slow.dead_letters == [], f"fast accepted what pydantic rejects: {slow.dead_letters[0].message}"
    assert comparable(fast) == comparable([record(d.event) for d in slow.events])
    return True


@pytest.mark.parametrize("name", GOOD)
def test_the_fast_path_takes_every_common_good_shape_with_the_records_pydantic_gives(name: str) -> None:
    assert assert_agrees_on_predictions(json.dumps(GOOD[name]).encode())
    assert assert_agrees_on_predictions(json.dumps([GOOD[name], GOOD[name]]).encode())  # an envelope


@pytest.mark.parametrize("reason", BAD)
def test_the_fast_path_refuses_every_class_of_bad_input(reason: object) -> None:
    assert not assert_agrees_on_predictions(BAD[reason])  # type: ignore[index]


@pytest.mark.parametrize(
    "event",
    [
        prediction(timestamp="2026-01-01 10:00:00"),  # pydantic's lenient forms are left to pydantic
        prediction(timestamp="2026-01-01T10:00:00"),  # zone-less: UTC in both
        prediction(timestamp="2026-01-01T10:00:00.123456Z"),
        prediction(timestamp=1_767_225_600_000.5),
        prediction(timestamp="1767225600000"),
        prediction(timestamp=True),
        prediction(timestamp=4_102_444_800_000),
        prediction(prediction={"label": 1, "score": None}),
        prediction(prediction={"label": 1, "score": 1}),
        prediction(prediction={"label": True, "score": 0}),
        prediction(prediction={"label": "", "score": 0.5}),
        prediction(prediction={"label": 1, "scores": None}),
        prediction(prediction={"label": "a", "scores": {"a": 0.5, "": 0.5}}),
        prediction(prediction={"value": 1, "label": 1}),
        prediction(prediction={"label": 1, "score": 0.5, "scores": {"a": 1.0}}),
        prediction(features={"é" * 128: 1, "x" * 129: 2}),
        prediction(features={"big": 2**70}),
        prediction(features={"text": "é" * 1024}),
        prediction(features={"text": "é" * 1025}),
        prediction(features={str(i): i for i in range(1001)}),
        prediction(sensitive={"g": 1}),
        prediction(model_version="v" * 129),
        prediction(schema_version=2),
        prediction(metadata={"nested": [1, {"a": None}]}),
    ],
)
def test_edge_cases_are_decided_the_same_way_or_left_to_pydantic(event: dict[str, Any]) -> None:
    assert_agrees_on_predictions(json.dumps(event).encode())


@pytest.mark.parametrize(
    "feedback",
    [
        {"prediction_id": "p", "timestamp": 1_767_225_600_000, "label": 1},
        {"prediction_id": "p", "timestamp": "2026-01-01T10:00:00Z", "value": 2.5, "model_id": "m"},
        {"prediction_id": "p", "timestamp": 1_767_225_600_000, "label": 1, "value": 2.0},
        {"prediction_id": "p", "timestamp": 1_767_225_600_000},
        {"prediction_id": "p", "timestamp": 1_767_225_600_000, "label": None, "value": 1.0},
        {"prediction_id": "", "timestamp": 1_767_225_600_000, "label": 1},
    ],
)
def test_feedback_is_decided_the_same_way_or_left_to_pydantic(feedback: dict[str, Any]) -> None:
    assert_agrees_on_feedback(json.dumps(feedback).encode())


def test_pinned_models_are_left_to_pydantic_which_applies_their_pins() -> None:
    pinned = FastDecoder(frozenset({"credit-risk"}))
    assert pinned.predictions(json.dumps(GOOD["binary"]).encode()) is None
    assert FastDecoder(frozenset({"other"})).predictions(json.dumps(GOOD["binary"]).encode()) is not None


leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
mutations = st.fixed_dictionaries(
    {},
    optional={
        "prediction_id": leaves,
        "model_version": leaves,
        "timestamp": st.integers(0, 5_000_000_000_000) | st.datetimes().map(lambda d: d.isoformat()) | leaves,
        "features": st.dictionaries(st.text(max_size=6), leaves, max_size=4) | leaves,
        "prediction": st.dictionaries(st.sampled_from(["label", "score", "scores", "value", "x"]), leaves, max_size=3),
        "sensitive": st.dictionaries(st.text(max_size=4), leaves, max_size=2) | leaves,
    },
)


@given(mutations)
@settings(max_examples=500, deadline=None)
def test_generated_events_never_get_a_fast_verdict_pydantic_disagrees_with(changes: dict[str, Any]) -> None:
    assert_agrees_on_predictions(json.dumps(prediction(**changes)).encode())


@given(
    st.fixed_dictionaries(
        {"prediction_id": st.text(max_size=4) | leaves, "timestamp": st.integers(0, 5_000_000_000_000) | leaves},
        optional={"label": leaves, "value": leaves, "model_id": leaves, "extra": leaves},
    )
)
@settings(max_examples=300, deadline=None)
def test_generated_feedback_never_gets_a_fast_verdict_pydantic_disagrees_with(feedback: dict[str, Any]) -> None:
    assert_agrees_on_feedback(json.dumps(feedback).encode())
