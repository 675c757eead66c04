"""Per-model settings that pin what a model's events must look like, and the checks that enforce them.

Pinning is optional: without it, a prediction's shape tells its task. With it, an event that contradicts the
pin is a dead letter (``task_mismatch`` for a prediction of another shape, ``label_type_mismatch`` for a label
of the wrong type), so one misconfigured producer cannot pollute a model's metrics. Without a pin, a binary
prediction's label must be 0/1 or true/false (the default positive label is 1 / true: any other label could
only count as negative): else ``label_type_mismatch``, asking for ``positive_label``. A label that contradicts
its prediction (a class label for a regression, a value for a classifier, a binary label that is not one of
the model's classes) can only be seen when the two meet: :func:`label_mismatch`, which the worker's join
applies, making such a label a dead letter too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pydantic import BaseModel, ConfigDict, Field

from driftline.schemas.dead_letters import Reason
from driftline.schemas.events import BinaryPrediction, FeedbackEvent, PredictionEvent, Task, label_text

BINARY_TEXTS = frozenset({"0", "1", "true", "false"})
"""The labels (as text) of a binary model without a pinned positive label."""
DEFAULT_POSITIVE_TEXTS = frozenset({"1", "true"})
"""Of those, the positive ones (the default positive label, 1 / true)."""


class ModelContract(BaseModel):
    """What one model's events must be (``[models.<model_id>]`` in the config file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Task | None = Field(None, description="Pin the task: binary, multiclass or regression.")
    positive_label: bool | int | str = Field(1, description="Binary: the label that counts as positive.")

    def violation(self, event: PredictionEvent | FeedbackEvent) -> tuple[Reason, str] | None:
        """Why ``event`` contradicts this contract, or None when it does not."""
        if isinstance(event, PredictionEvent):
            if self.task is not None and event.task != self.task:
                return Reason.TASK_MISMATCH, (
                    f"prediction {event.prediction_id!r} of model {event.model_id!r}: the model is pinned to "
                    f"{self.task}, got a {event.task} prediction {event.prediction.model_dump()}"
                )
            label = event.prediction.label if isinstance(event.prediction, BinaryPrediction) else None
        else:
            if self.task == "regression" and event.value is None:
                return Reason.LABEL_TYPE_MISMATCH, (
                    f"feedback {event.prediction_id!r}: model {event.model_id!r} is a regression model, "
                    f"expected 'value', got label {event.label!r}"
                )
            if self.task in {"binary", "multiclass"} and event.label is None:
                return Reason.LABEL_TYPE_MISMATCH, (
                    f"feedback {event.prediction_id!r}: model {event.model_id!r} is a {self.task} model, "
                    f"expected 'label', got value {event.value!r}"
                )
            label = event.label if self.task == "binary" else None
        if label is not None and type(label) is not type(self.positive_label):
            return Reason.LABEL_TYPE_MISMATCH, (
                f"{'prediction' if isinstance(event, PredictionEvent) else 'feedback'} {event.prediction_id!r}: "
                f"binary labels of model {event.model_id!r} are {type(self.positive_label).__name__}, "
                f"like the positive label {self.positive_label!r}; got {label!r}"
            )
        return None


def positive_texts(contract: ModelContract | None) -> set[str]:
    """The texts (:func:`~driftline.schemas.events.label_text`) of a binary model's positive label: default 1 /
    true, or its pinned ``positive_label``."""
    positive = contract.positive_label if contract else 1
    if positive in (1, True) and not isinstance(positive, str):
        return set(DEFAULT_POSITIVE_TEXTS)
    return {label_text(positive) or ""}


def unpinned_violation(event: PredictionEvent | FeedbackEvent) -> tuple[Reason, str] | None:
    """Why the event of a model without a pin is refused: a binary prediction whose label is not 0/1 or a
    boolean, which the default positive label (1 / true) cannot judge; None otherwise."""
    if not isinstance(event, PredictionEvent) or not isinstance(event.prediction, BinaryPrediction):
        return None
    label = event.prediction.label
    if isinstance(label, bool) or (isinstance(label, int) and label in (0, 1)):
        return None
    return Reason.LABEL_TYPE_MISMATCH, (
        f"prediction {event.prediction_id!r} of model {event.model_id!r}: binary label {label!r} without a pinned "
        f"positive label; use 0/1 or true/false, or pin it: [models.{event.model_id}] positive_label = {label!r}"
    )


def label_mismatch(task: Task, label: str | None, value: float | None, contract: ModelContract | None) -> str | None:
    """Why a label (as text) or value cannot be the outcome of a ``task`` prediction of a model pinned by
    ``contract`` (None: not pinned), or None when it can: a regression needs a value, a classifier a label, and a
    binary model's label must be one of its classes (0/1 or true/false without a pin; of the pinned positive
    label's type with one: integers for an integer, true/false for a boolean; any text for a text)."""
    if task == "regression":
        return None if value is not None else f"the prediction is a regression: expected 'value', got label {label!r}"
    if label is None:
        return f"the prediction is {task}: expected 'label', got value {value!r}"
    if task != "binary":
        return None
    positive = (
        contract.positive_label if contract is not None and "positive_label" in contract.model_fields_set else None
    )
    if positive is None:
        fits = label in BINARY_TEXTS
    elif isinstance(positive, bool):
        fits = label in ("true", "false")
    elif isinstance(positive, int):
        fits = label.lstrip("-").isdigit()
    else:
        fits = True
    expected = "0/1 or true/false" if positive is None else f"of the type of its positive label {positive!r}"
    return None if fits else f"binary labels of this model are {expected}; got {label!r}"


def contract_check(
    contracts: Mapping[str, ModelContract],
) -> Callable[[PredictionEvent | FeedbackEvent], tuple[Reason, str] | None]:
    """The decoder's check: each model's pins, :func:`unpinned_violation` for a model without any."""

    def check(event: PredictionEvent | FeedbackEvent) -> tuple[Reason, str] | None:
        contract = contracts.get(event.model_id) if event.model_id is not None else None
        return contract.violation(event) if contract is not None else unpinned_violation(event)

    return check
