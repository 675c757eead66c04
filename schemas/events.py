"""The events producers send: predictions and feedback (pydantic v2; exported as JSON Schema).

A Kafka message on ``predictions`` or ``feedback`` is either one event (a JSON object) or a batch envelope
(a JSON array of events of one partition), keyed by ``prediction_id``. Field descriptions here are the
documentation: the JSON Schema export (``schemas/json/``) is generated from them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

SCHEMA_VERSION: Literal[1] = 1
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_FEATURES = 1000

Id = Annotated[str, Field(min_length=1, max_length=256, description="Non-empty identifier, at most 256 chars.")]
Name = Annotated[str, Field(min_length=1, max_length=128)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
MAX_TEXT = 1024


def _class_label(label: Any) -> bool | int | str:
    """A class label is a boolean, an integer or a non-empty string of at most 256 characters."""
    if isinstance(label, bool | int) or (isinstance(label, str) and 0 < len(label) <= 256):
        return label
    raise PydanticCustomError(
        "wrong_type",
        "expected a class label (boolean, integer or string of 1-256 chars), got {got}",
        {"got": _short(label)},
    )


def _feature_value(value: Any) -> bool | int | float | str | None:
    """A feature is a finite number, a string of at most 1024 characters, a boolean or null (missing)."""
    if value is None or isinstance(value, bool | int) or (isinstance(value, str) and len(value) <= MAX_TEXT):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise PydanticCustomError(
        "wrong_type", "expected a finite number, a string, a boolean or null, got {got}", {"got": _short(value)}
    )


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


ClassLabel = Annotated[
    bool | int | str,
    PlainValidator(_class_label),
    WithJsonSchema(
        {
            "anyOf": [{"type": "boolean"}, {"type": "integer"}, {"type": "string", "minLength": 1, "maxLength": 256}],
            "description": "A class: a boolean, an integer or a string.",
        }
    ),
]
FeatureValue = Annotated[
    bool | int | float | str | None,
    PlainValidator(_feature_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "boolean"},
                {"type": "number"},
                {"type": "string", "maxLength": MAX_TEXT},
                {"type": "null"},
            ]
        }
    ),
]


def _from_epoch_ms(stamp: Any) -> Any:
    """Numbers are epoch milliseconds (never seconds: pydantic would guess by magnitude)."""
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        try:
            return datetime.fromtimestamp(stamp / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise PydanticCustomError(
                "timestamp_out_of_range", "{got} is not a valid epoch time in milliseconds", {"got": _short(stamp)}
            ) from None
    return stamp


def _in_range(stamp: datetime) -> datetime:
    """Timestamps are normalised to UTC and must lie in [2000-01-01, 2100-01-01)."""
    stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
    if not EARLIEST <= stamp < LATEST:
        raise PydanticCustomError(
            "timestamp_out_of_range",
            "{got} is not in [2000-01-01, 2100-01-01) (numbers are epoch milliseconds)",
            {"got": stamp.isoformat()},
        )
    return stamp


EventTime = Annotated[
    datetime,
    BeforeValidator(_from_epoch_ms),
    AfterValidator(_in_range),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "integer", "minimum": 946_684_800_000, "maximum": 4_102_444_799_999},
            ]
        }
    ),
    Field(
        description=(
            "Event time: an RFC 3339 string (a zone-less time is UTC) or epoch milliseconds; normalised to UTC."
        )
    ),
]


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")


class BinaryPrediction(_Contract):
    """A binary classifier's output: the predicted label and the probability of the positive class."""

    label: ClassLabel
    score: Probability = Field(description="Probability of the positive class, in [0, 1].")


class MulticlassPrediction(_Contract):
    """A multiclass classifier's output: the predicted label and, optionally, a probability per class."""

    label: ClassLabel
    scores: dict[Name, Probability] | None = Field(
        None, description="Probability per class (class name → probability); optional."
    )


class RegressionPrediction(_Contract):
    """A regressor's output: the predicted value."""

    value: FiniteFloat = Field(description="The predicted value (finite).")


def _prediction_shape(value: Any) -> str | None:
    """The prediction's task, told by its shape: ``value`` → regression, ``score`` → binary, else multiclass."""
    keys = value.keys() if isinstance(value, dict) else vars(value).keys() if isinstance(value, BaseModel) else ()
    if "value" in keys:
        return "regression"
    if "score" in keys:
        return "binary"
    if "label" in keys:
        return "multiclass"
    return None


Prediction = Annotated[
    Annotated[BinaryPrediction, Tag("binary")]
    | Annotated[MulticlassPrediction, Tag("multiclass")]
    | Annotated[RegressionPrediction, Tag("regression")],
    Discriminator(
        _prediction_shape,
        custom_error_type="unknown_model_type",
        custom_error_message=(
            "prediction must be {label, score} (binary), {label[, scores]} (multiclass) or {value} (regression)"
        ),
    ),
]

Task = Literal["binary", "multiclass", "regression"]


class PredictionEvent(_Contract):
    """One prediction of a model, sent when it is made."""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Version of this contract.")
    prediction_id: Id = Field(description="Unique id of the prediction; the Kafka key; joins its feedback.")
    model_id: Id = Field(description="The model that made the prediction.")
    model_version: Annotated[str, Field(min_length=1, max_length=128)] = Field(description="The model's version.")
    timestamp: EventTime
    features: dict[Name, FeatureValue] = Field(
        default_factory=dict,
        max_length=MAX_FEATURES,
        description="Input features: name → number, string, boolean or null (missing).",
    )
    prediction: Prediction = Field(description="The model's output; its shape tells the task.")
    sensitive: dict[Name, Annotated[str, Field(max_length=256)]] = Field(
        default_factory=dict, description="Sensitive attributes for fairness: attribute → group (optional)."
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form context; stored, not analysed.")

    @property
    def task(self) -> Task:
        """The task the prediction's shape tells."""
        shape = _prediction_shape(self.prediction)
        assert shape is not None  # the discriminator accepted it
        return shape  # type: ignore[return-value]


class FeedbackEvent(_Contract):
    """The true outcome of a prediction, sent when it becomes known (often much later)."""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Version of this contract.")
    prediction_id: Id = Field(description="The prediction this outcome belongs to; the Kafka key.")
    timestamp: EventTime
    label: ClassLabel | None = Field(None, description="The true class (classification).")
    value: FiniteFloat | None = Field(None, description="The true value (regression).")
    model_id: Id | None = Field(None, description="The model, if the sender knows it (optional).")

    @model_validator(mode="after")
    def _one_outcome(self) -> FeedbackEvent:
        if (self.label is None) == (self.value is None):
            raise ValueError("feedback needs exactly one of 'label' (classification) or 'value' (regression)")
        return self


def label_text(label: bool | int | str | None) -> str | None:
    """A class label as stored and compared: booleans as ``true``/``false``, integers in decimal."""
    if label is None or isinstance(label, str):
        return label
    return str(label).lower() if isinstance(label, bool) else str(label)
