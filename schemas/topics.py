"""The Kafka topics driftline reads and writes: names (after the configured prefix) and layout."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the contract.

    ``compacted`` topics keep the latest value per key (reference profiles); the others delete by retention.
    ``data`` topics carry the configured partition count; predictions and feedback must be co-partitioned.
    """

    name: str
    description: str
    compacted: bool = False


PREDICTIONS = TopicSpec("predictions", "prediction events, key = prediction_id (one event or an envelope)")
FEEDBACK = TopicSpec("feedback", "feedback events with the true outcome, key = prediction_id")
WINDOW_RESULTS = TopicSpec("window-results", "performance, drift and fairness per model version and window")
RETRAIN_TRIGGERS = TopicSpec("retrain-triggers", "one event per retraining decision, key = trigger_id")
DEAD_LETTERS = TopicSpec("dead-letters", "invalid input: original bytes, reason, source topic/partition/offset")
REFERENCE_PROFILES = TopicSpec(
    "reference-profiles", "reference profile per model version, key = model_id/model_version", compacted=True
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    PREDICTIONS,
    FEEDBACK,
    WINDOW_RESULTS,
    RETRAIN_TRIGGERS,
    DEAD_LETTERS,
    REFERENCE_PROFILES,
)
CO_PARTITIONED: tuple[TopicSpec, ...] = (PREDICTIONS, FEEDBACK)
