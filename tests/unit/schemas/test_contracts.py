"""Event contracts: the decoder's verdicts, its dead letters, and the JSON Schemas other languages rely on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.schemas.dead_letters import DeadLetter, Reason
from driftline.schemas.decoding import EventDecoder, Origin, latest_believable
from driftline.schemas.events import FeedbackEvent, PredictionEvent
from driftline.schemas.fast_decoding import FastDecoder
from driftline.schemas.json_schema import CHECKED_IN, render, schemas
from driftline.schemas.model_contracts import ModelContract, contract_check, label_mismatch

ORIGIN = Origin("driftline.predictions", 3, 42)
PREDICTIONS = EventDecoder(PredictionEvent, "prediction", max_message_bytes=10_000)
FEEDBACK = EventDecoder(FeedbackEvent, "feedback")


def prediction(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "prediction_id": "p-17",
        "model_id": "credit-risk",
        "model_version": "1.0",
        "timestamp": "2026-01-01T10:00:00+01:00",
        "features": {"age": 41, "city": "Oslo", "vip": True, "income": None},
        "prediction": {"label": 1, "score": 0.83},
        "sensitive": {"gender": "f"},
    }
    event.update(changes)
    return event


GOOD = {
    "binary": prediction(),
    "multiclass": prediction(prediction={"label": "cat", "scores": {"cat": 0.7, "dog": 0.3}}),
    "multiclass without scores": prediction(prediction={"label": "cat"}),
    "regression": prediction(prediction={"value": 12.5}, timestamp=1_767_225_600_000),
}


@pytest.mark.parametrize("name", GOOD)
def test_valid_prediction_decodes_with_utc_time_and_its_task(name: str) -> None:
    result = PREDICTIONS.decode(json.dumps(GOOD[name]).encode(), ORIGIN)

    assert result.dead_letters == []
    [decoded] = result.events
    assert decoded.event.task == name.split(maxsplit=1)[0]
    assert decoded.event.timestamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert decoded.origin == ORIGIN and decoded.envelope_index == -1


BAD: dict[Reason, bytes] = {
    Reason.NOT_JSON: b"{not json",
    Reason.WRONG_SHAPE: b'"just a string"',
    Reason.MISSING_FIELD: json.dumps({k: v for k, v in prediction().items() if k != "model_id"}).encode(),
    Reason.UNKNOWN_FIELD: json.dumps(prediction(colour="red")).encode(),
    Reason.WRONG_TYPE: json.dumps(prediction(features={"age": {"years": 41}})).encode(),
    Reason.NOT_FINITE: json.dumps(prediction(prediction={"value": float("inf")})).encode(),
    Reason.UNKNOWN_MODEL_TYPE: json.dumps(prediction(prediction={"class": "cat"})).encode(),
    Reason.TIMESTAMP_OUT_OF_RANGE: json.dumps(prediction(timestamp=1_767_225_600)).encode(),
    Reason.OVERSIZED: json.dumps(prediction(metadata={"blob": "x" * 20_000})).encode(),
    Reason.INVALID_VALUE: json.dumps(prediction(prediction={"label": 1, "score": 1.5})).encode(),
}


@pytest.mark.parametrize("reason", BAD)
def test_each_class_of_bad_input_is_a_dead_letter_with_its_reason_and_original_bytes(reason: Reason) -> None:
    result = PREDICTIONS.decode(BAD[reason], ORIGIN)

    assert result.events == []
    [letter] = result.dead_letters
    assert letter.reason == reason, letter.message
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("driftline.predictions", 3, 42)
    assert BAD[reason].startswith(letter.original)
    assert letter.error_class == "ContractError"


def test_message_names_the_event_the_field_and_the_value() -> None:
    [letter] = PREDICTIONS.decode(BAD[Reason.WRONG_TYPE], ORIGIN).dead_letters

    assert letter.message.startswith("prediction 'p-17': field 'features.age'")
    assert "{'years': 41}" in letter.message


def test_one_bad_event_in_an_envelope_is_a_dead_letter_and_its_siblings_go_on() -> None:
    envelope = [prediction(prediction_id=f"p-{i}") for i in range(5)]
    envelope[2]["prediction"] = {"label": 1, "score": -0.1}

    result = PREDICTIONS.decode(json.dumps(envelope).encode(), ORIGIN)

    assert [d.event.prediction_id for d in result.events] == ["p-0", "p-1", "p-3", "p-4"]
    assert [d.envelope_index for d in result.events] == [0, 1, 3, 4]
    [letter] = result.dead_letters
    assert letter.envelope_index == 2 and letter.reason == Reason.INVALID_VALUE
    assert json.loads(letter.original) == envelope[2]


@pytest.mark.parametrize(
    ("feedback", "reason"),
    [
        ({"prediction_id": "p", "timestamp": "2026-01-01T00:00:00Z"}, Reason.INVALID_VALUE),
        ({"prediction_id": "p", "timestamp": "2026-01-01T00:00:00Z", "label": 0.5}, Reason.WRONG_TYPE),
        ({"prediction_id": "p", "timestamp": "2026-01-01T00:00:00Z", "label": 1, "value": 2.0}, Reason.INVALID_VALUE),
        ({"timestamp": "2026-01-01T00:00:00Z", "label": 1}, Reason.MISSING_FIELD),
    ],
)
def test_feedback_needs_an_id_and_exactly_one_outcome(feedback: dict[str, Any], reason: Reason) -> None:
    [letter] = FEEDBACK.decode(json.dumps(feedback).encode(), ORIGIN).dead_letters
    assert letter.reason == reason


def test_dead_letter_survives_the_trip_through_kafka_headers() -> None:
    [letter] = PREDICTIONS.decode(BAD[Reason.NOT_JSON], ORIGIN).dead_letters

    assert DeadLetter.from_kafka(letter.original, letter.headers()) == letter
    assert letter.key == "driftline.predictions:3:42:-1"


@given(st.binary(max_size=2000))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_never_raise_and_always_yield_events_or_dead_letters(value: bytes) -> None:
    result = PREDICTIONS.decode(value, ORIGIN)
    assert result.events or result.dead_letters


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=30,
)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_arbitrary_json_never_raises_and_every_event_is_accounted_for(value: Any) -> None:
    payload = json.dumps(value).encode()
    result = PREDICTIONS.decode(payload, ORIGIN)
    if isinstance(value, list) and value:
        assert len(result.events) + len(result.dead_letters) == len(value)
    else:
        assert len(result.events) + len(result.dead_letters) == 1


def test_checked_in_json_schemas_match_the_models() -> None:
    exported = schemas()
    assert sorted(p.name for p in CHECKED_IN.glob("*.json")) == sorted(exported)
    for name, schema in exported.items():
        assert (CHECKED_IN / name).read_text() == render(schema), f"run: driftline schemas export {CHECKED_IN}"


@pytest.mark.parametrize("name", GOOD)
def test_json_schema_accepts_what_the_decoder_accepts(name: str) -> None:
    schema = json.loads((CHECKED_IN / "prediction_event.json").read_text())
    jsonschema.validate(GOOD[name], schema, format_checker=jsonschema.FormatChecker())
    envelope = json.loads((CHECKED_IN / "prediction_envelope.json").read_text())
    jsonschema.validate([GOOD[name], GOOD[name]], envelope)


@pytest.mark.parametrize(
    "reason",
    [r for r in BAD if r not in {Reason.NOT_JSON, Reason.OVERSIZED, Reason.NOT_FINITE}],
)
def test_json_schema_rejects_what_the_decoder_rejects(reason: Reason) -> None:
    schema = json.loads((CHECKED_IN / "prediction_event.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(BAD[reason]), schema, format_checker=jsonschema.FormatChecker())


def test_feedback_schema_validates_a_sample() -> None:
    schema = json.loads((CHECKED_IN / "feedback_event.json").read_text())
    jsonschema.validate({"prediction_id": "p", "timestamp": 1_767_225_600_000, "label": True}, schema)


PINNED = EventDecoder(
    PredictionEvent,
    "prediction",
    check=contract_check({"credit-risk": ModelContract(task="binary", positive_label=1)}),
)
PINNED_FEEDBACK = EventDecoder(
    FeedbackEvent, "feedback", check=contract_check({"credit-risk": ModelContract(task="binary", positive_label=1)})
)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (prediction(prediction={"value": 3.0}), Reason.TASK_MISMATCH),
        (prediction(prediction={"label": "yes", "score": 0.4}), Reason.LABEL_TYPE_MISMATCH),
    ],
)
def test_a_prediction_that_contradicts_its_models_pin_is_a_dead_letter(event: dict[str, Any], reason: Reason) -> None:
    result = PINNED.decode(json.dumps([prediction(prediction_id="fine"), event]).encode(), ORIGIN)

    assert [d.event.prediction_id for d in result.events] == ["fine"]
    [letter] = result.dead_letters
    assert letter.reason == reason and letter.envelope_index == 1
    assert "credit-risk" in letter.message


def test_unpinned_models_pass_and_feedback_label_type_is_checked_when_it_names_its_model() -> None:
    other = PINNED.decode(json.dumps(prediction(model_id="churn", prediction={"value": 1.0})).encode(), ORIGIN)
    assert other.dead_letters == [] and len(other.events) == 1

    wrong = {"prediction_id": "p", "timestamp": 1_767_225_600_000, "model_id": "credit-risk", "value": 0.3}
    [letter] = PINNED_FEEDBACK.decode(json.dumps(wrong).encode(), ORIGIN).dead_letters
    assert letter.reason == Reason.LABEL_TYPE_MISMATCH and "expected 'label'" in letter.message
    stringly = {**wrong, "value": None, "label": "1"}
    [letter] = PINNED_FEEDBACK.decode(json.dumps(stringly).encode(), ORIGIN).dead_letters
    assert letter.reason == Reason.LABEL_TYPE_MISMATCH and "'1'" in letter.message
    anonymous = {"prediction_id": "p", "timestamp": 1_767_225_600_000, "value": 0.3}
    assert len(PINNED_FEEDBACK.decode(json.dumps(anonymous).encode(), ORIGIN).events) == 1


def test_an_event_stamped_ahead_of_the_time_kafka_stored_it_is_a_dead_letter_and_the_fast_path_defers() -> None:
    written = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)  # the record's timestamp: 10:00+01:00 is 09:00 UTC
    decoder = EventDecoder(PredictionEvent, "prediction", max_future_s=300)
    on_time = prediction(prediction_id="on-time", timestamp=(written + timedelta(seconds=299)).isoformat())
    ahead = prediction(prediction_id="ahead", timestamp="2099-01-01T00:00:00Z")
    value = json.dumps([on_time, ahead]).encode()
    origin = Origin("driftline.predictions", 3, 42, written.timestamp())

    result = decoder.decode(value, origin)

    assert [d.event.prediction_id for d in result.events] == ["on-time"]
    [letter] = result.dead_letters
    assert letter.reason is Reason.TIMESTAMP_IN_FUTURE and letter.envelope_index == 1
    assert "'ahead'" in letter.message and "300 s after Kafka stored" in letter.message
    assert json.loads(letter.original)["timestamp"].startswith("2099-01-01")
    assert len(decoder.decode(value, ORIGIN).events) == 2  # a record without a timestamp: no bound to apply
    latest = latest_believable(origin.written_at, 300)
    assert FastDecoder().predictions(value, latest) is None  # pydantic decides, and makes the dead letter
    assert FastDecoder().predictions(json.dumps([on_time]).encode(), latest) is not None


def test_an_unpinned_binary_prediction_needs_a_label_its_default_positive_label_can_judge() -> None:
    """Without a pin the positive label is 1 / true: 'yes' could only ever count as negative, so it is a dead
    letter that asks for the pin; the fast path leaves it to pydantic."""
    unpinned = EventDecoder(PredictionEvent, "prediction", check=contract_check({}))
    fine = [prediction(prediction={"label": label, "score": 0.4}) for label in (0, 1, True, False)]
    yes = prediction(prediction_id="yes", prediction={"label": "yes", "score": 0.4})
    multiclass = prediction(prediction_id="cat", prediction={"label": "cat"})
    value = json.dumps([*fine, yes, multiclass]).encode()

    result = unpinned.decode(value, ORIGIN)

    assert len(result.events) == 5
    [letter] = result.dead_letters
    assert letter.reason == Reason.LABEL_TYPE_MISMATCH and letter.envelope_index == 4
    assert "positive_label = 'yes'" in letter.message
    assert FastDecoder(frozenset()).predictions(value) is None
    assert FastDecoder(frozenset()).predictions(json.dumps(fine).encode()) is not None


@pytest.mark.parametrize(
    ("task", "label", "value", "contract", "refused"),
    [
        ("regression", None, 2.5, None, False),
        ("regression", "1", None, None, True),
        ("binary", None, 0.3, None, True),
        ("binary", "yes", None, None, True),
        ("binary", "true", None, None, False),
        ("binary", "0", None, None, False),
        ("binary", "yes", None, ModelContract(positive_label="yes"), False),
        ("binary", "1", None, ModelContract(positive_label=True), True),
        ("binary", "2", None, ModelContract(positive_label=2), False),
        ("binary", "no", None, ModelContract(positive_label=2), True),
        ("multiclass", "cat", None, None, False),
        ("multiclass", None, 1.0, None, True),
    ],
)
def test_a_label_must_fit_the_prediction_it_meets(
    task: Any, label: str | None, value: float | None, contract: ModelContract | None, refused: bool
) -> None:
    assert (label_mismatch(task, label, value, contract) is not None) == refused
