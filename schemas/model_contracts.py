"""Per-model settings that pin what a model's events must look like, and the check that enforces them.

Pinning is optional: without it, a prediction's shape tells its task. With it, an event that contradicts the
pin is a dead letter (``task_mismatch`` for a prediction of another shape, ``label_type_mismatch`` for a label
of the wrong type), so one misconfigured producer cannot pollute a model's metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pydantic import BaseModel, ConfigDict, Field

from driftline.schemas.dead_letters import Reason
from driftline.schemas.events import BinaryPrediction, FeedbackEvent, PredictionEvent, Task, label_text


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
        return {"1", "true"}
    return {label_text(positive) or ""}


def contract_check(
    contracts: Mapping[str, ModelContract],
) -> Callable[[PredictionEvent | FeedbackEvent], tuple[Reason, str] | None] | None:
    """The decoder's check for these pins (None when nothing is pinned, so the hot path skips it)."""
    if not contracts:
        return None

    def check(event: PredictionEvent | FeedbackEvent) -> tuple[Reason, str] | None:
        contract = contracts.get(event.model_id) if event.model_id is not None else None
        return contract.violation(event) if contract is not None else None

    return check
