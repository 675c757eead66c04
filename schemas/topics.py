"""The Kafka topics driftline reads and writes: names (after the configured prefix) and layout."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the contract.

    ``compacted`` topics keep the latest value per key (reference profiles); the others delete by retention.
    Every topic carries the configured partition count; predictions, feedback and the worker's window parts
    must be co-partitioned. ``stored`` topics are loaded into ClickHouse by the sink.
    """

    name: str
    description: str
    compacted: bool = False
    stored: bool = True


PREDICTIONS = TopicSpec("predictions", "prediction events, key = prediction_id (one event or an envelope)")
FEEDBACK = TopicSpec("feedback", "feedback events with the true outcome, key = prediction_id")
WINDOW_RESULTS = TopicSpec("window-results", "performance, drift and fairness per model version and window")
RETRAIN_TRIGGERS = TopicSpec("retrain-triggers", "one event per retraining decision, key = trigger_id")
DEAD_LETTERS = TopicSpec("dead-letters", "invalid input: original bytes, reason, source topic/partition/offset")
REFERENCE_PROFILES = TopicSpec(
    "reference-profiles", "reference profile per model version, key = model_id/model_version", compacted=True
)

WINDOW_PARTS = TopicSpec(
    "window-parts",
    "the worker's own: each source partition's changed window shares and progress (msgpack, several to a message)",
    stored=False,
)
ALL_TOPICS: tuple[TopicSpec, ...] = (
    PREDICTIONS,
    FEEDBACK,
    WINDOW_RESULTS,
    RETRAIN_TRIGGERS,
    DEAD_LETTERS,
    REFERENCE_PROFILES,
    WINDOW_PARTS,
)
CO_PARTITIONED: tuple[TopicSpec, ...] = (PREDICTIONS, FEEDBACK, WINDOW_PARTS)
