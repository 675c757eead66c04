"""Event-time windows of one worker: the join of predictions with their feedback, and the window results.

Plain Python over the monitors; no Faust, no Kafka, no wall clock in the numbers. Semantics:

- A prediction belongs to the tumbling window ``[start, start + window)`` of its own timestamp, per
  (model_id, model_version). Its feedback joins it by ``prediction_id``, in whichever order they arrive;
  feedback that comes first waits (up to the label horizon). A prediction id seen before counts once, and so
  does a second label for the same prediction.
- Watermark: per source partition, the latest prediction time seen (windows are on prediction time, and a
  label's own time says nothing about which predictions are complete); the engine's watermark is the minimum
  over partitions that are not idle (no prediction for ``idle_timeout_s`` of processing time), so one quiet
  partition does not hold every window open forever.
- A window closes when the watermark passes ``end + grace``: it is emitted then, and re-emitted each time late
  labels change it, until the watermark passes ``end + horizon``, when its state is dropped. A prediction
  for a closed window is counted in ``late_predictions`` and left out of the numbers; feedback whose
  prediction never came within the horizon is counted in ``orphan_feedback`` of its model's window.
- Streaming detectors (:mod:`driftline.streams.monitors.detectors`) are fed per model version in event-time
  slices of ``detector_slice_s``: once the watermark passes a slice's end plus the grace period, its labelled
  predictions go to ADWIN (error indicator, ordered by feedback time, then prediction id) and its scores to
  Page-Hinkley (ordered by prediction time, then prediction id). An alarm lands in the window of the
  prediction that raised it and is published at once. A label or score whose slice was already fed is left
  out of the detectors (counted in ``detector_late``) but still counts in its window's numbers.
- ``revision`` = predictions + labels included, plus the late predictions, orphaned feedback and detector
  alarms it counts. It only grows and is a function of the data, so the latest revision after a replay
  equals the one before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from driftline.schemas.events import (
    FeedbackEvent,
    PredictionEvent,
    Task,
    label_text,
)
from driftline.schemas.model_contracts import ModelContract
from driftline.schemas.records import FeedbackRecord, PredictionRecord, feedback_record, prediction_record
from driftline.schemas.results import (
    DetectorAlarm,
    FeatureDrift,
    GroupFairness,
    Performance,
    ReferenceProfile,
    WindowKey,
    WindowResult,
)
from driftline.settings import MonitorSettings
from driftline.streams.monitors.detectors import DetectorSettings, Fired, ModelDetectors
from driftline.streams.monitors.drift import categorical_drift, numeric_drift
from driftline.streams.monitors.fairness import attribute_fairness
from driftline.streams.monitors.performance import (
    binary_performance,
    estimated_accuracy,
    multiclass_performance,
    regression_performance,
)
from driftline.streams.monitors.profile import PREDICTED_LABEL, SCORE, build_profile
from driftline.streams.watermarks import EPOCH, Watermark

MISSING_GROUP = "__missing__"
WindowId = tuple[str, str, datetime]  # model_id, model_version, window start
ModelKey = tuple[str, str]  # model_id, model_version
DetectorInput = tuple[tuple[datetime, str], WindowId, float]  # (event time, prediction id), window, value
Signal = Literal["errors", "scores"]


@dataclass
class WindowBuffer:
    """What one window holds: one entry per prediction, in columns (vectorised when it is emitted).

    The features and sensitive attributes of each prediction are kept as given until the window closes;
    then its drift is computed once (it depends on predictions alone, and no prediction joins a closed
    window), the groups become arrays, and the rows are dropped: a closed window waiting for late labels holds
    a few numbers per prediction, not its features.
    """

    task: Task
    ids: list[str] = field(default_factory=list)
    predicted: list[str | None] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    feature_rows: list[Mapping[str, object]] = field(default_factory=list)
    sensitive_rows: list[Mapping[str, str]] = field(default_factory=list)
    sealed: Sealed | None = None
    truth: list[str | None] = field(default_factory=list)
    truth_values: list[float] = field(default_factory=list)
    labels: int = 0
    late_predictions: int = 0
    orphan_feedback: int = 0
    alarms: list[DetectorAlarm] = field(default_factory=list)
    emitted_revision: int = -1

    @property
    def revision(self) -> int:
        """Every event the window accounts for: predictions and labels, and late predictions, orphaned
        feedback and detector alarms it counts; only grows, so the latest revision is the most complete."""
        return len(self.ids) + self.labels + self.late_predictions + self.orphan_feedback + len(self.alarms)


@dataclass(frozen=True)
class Sealed:
    """What a window keeps of its predictions' inputs once it closed: drift and the groups per attribute."""

    reference: Literal["provided", "first_events", "none"]
    drift: list[FeatureDrift]
    groups: dict[str, NDArray[np.str_]]


@dataclass(frozen=True)
class Emission:
    """What one :meth:`WindowEngine.advance` offers for publishing: window results (closed or changed) and
    detector alarms raised since the last emission, each with the window it falls in."""

    results: list[WindowResult]
    alarms: list[tuple[WindowKey, DetectorAlarm]]


def window_start(stamp: datetime, window_s: float) -> datetime:
    """Start of the tumbling window holding ``stamp`` (aligned to the Unix epoch)."""
    seconds = (stamp - EPOCH).total_seconds()
    return EPOCH + timedelta(seconds=math.floor(seconds / window_s) * window_s)


class WindowEngine:
    """Joins and windows the events of the partitions one worker owns; emits :class:`WindowResult` rows.

    ``profile_for(model_id, model_version)`` returns the reference profile when one was published.
    ``clock`` is processing time in seconds, used only to tell idle partitions. ``partitions`` is how many
    source partitions feed the engine: each holds the watermark back until it is heard from or idles out.
    """

    def __init__(
        self,
        settings: MonitorSettings,
        profile_for: Callable[[str, str], ReferenceProfile | None] = lambda _m, _v: None,
        contracts: Mapping[str, ModelContract] | None = None,
        clock: Callable[[], float] = lambda: 0.0,
        partitions: int = 0,
    ) -> None:
        self.settings = settings
        self.profile_for = profile_for
        self.contracts = dict(contracts or {})
        self.clock = clock
        self.windows: dict[WindowId, WindowBuffer] = {}
        self.pending: dict[str, tuple[WindowId, int]] = {}
        self.early: dict[str, FeedbackRecord] = {}
        self.predictions_seen = Watermark(partitions, settings.idle_timeout_s, clock())
        self.labels_seen = Watermark(partitions, settings.idle_timeout_s, clock())
        self.first_events: dict[tuple[str, str], list[dict[str, object]]] = {}
        self.own_profiles: dict[tuple[str, str], ReferenceProfile] = {}
        self.detector_settings = DetectorSettings(
            adwin_delta=settings.adwin_delta,
            ph_delta=settings.page_hinkley_delta,
            ph_threshold=settings.page_hinkley_threshold,
            ph_min_instances=settings.page_hinkley_min_instances,
        )
        self.detectors: dict[ModelKey, ModelDetectors] = {}
        # per signal: inputs not fed yet, and the frontier before which every slice was fed
        self.detector_inputs: dict[Signal, dict[ModelKey, list[DetectorInput]]] = {"errors": {}, "scores": {}}
        self.detector_frontiers: dict[Signal, datetime] = {"errors": EPOCH, "scores": EPOCH}
        self.detector_late = 0
        self.unpublished_alarms: list[tuple[WindowKey, DetectorAlarm]] = []

    # -- input ---------------------------------------------------------------------------------------

    def add_prediction(self, event: PredictionRecord | PredictionEvent, partition: int) -> None:
        """Include a prediction (or count it late, or ignore a duplicate id)."""
        if isinstance(event, PredictionEvent):
            event = prediction_record(event)
        stamp = event.timestamp
        self.predictions_seen.saw(partition, stamp, self.clock())
        if event.prediction_id in self.pending:
            return
        start = window_start(stamp, self.settings.window_s)
        key = (event.model_id, event.model_version, start)
        closes = start + timedelta(seconds=self.settings.window_s + self.settings.grace_s)
        buffer = self.windows.get(key)
        # the watermark is at most this partition's own mark (it was just heard from) or where it already
        # reached: compute it only when the window could have closed
        seen = self.predictions_seen
        sealed = buffer is not None and buffer.sealed is not None  # emitted: closed for good
        if sealed or (closes <= max(seen.marks[partition], seen.reached) and self.watermark >= closes):
            if buffer is not None:
                buffer.late_predictions += 1
            return
        if buffer is None:
            buffer = self.windows[key] = WindowBuffer(task=event.task)
        row = len(buffer.ids)
        buffer.ids.append(event.prediction_id)
        buffer.predicted.append(event.predicted)
        buffer.scores.append(event.score)
        buffer.values.append(event.value)
        buffer.truth.append(None)
        buffer.truth_values.append(math.nan)
        buffer.feature_rows.append(event.features)
        buffer.sensitive_rows.append(event.sensitive)
        self.pending[event.prediction_id] = (key, row)
        if (event.model_id, event.model_version) in self.first_events or not self._has_reference(key):
            self._learn_reference(event)
        if event.task == "binary":
            self._detector_input("scores", key, stamp, event.prediction_id, event.score)
        early = self.early.pop(event.prediction_id, None)
        if early is not None:
            self._label(key, row, early)

    def add_feedback(self, event: FeedbackRecord | FeedbackEvent, partition: int) -> None:
        """Join a label to its prediction, or keep it until the prediction arrives (within the horizon)."""
        if isinstance(event, FeedbackEvent):
            event = feedback_record(event)
        self.labels_seen.saw(partition, event.timestamp, self.clock())
        slot = self.pending.get(event.prediction_id)
        if slot is None:
            self.early.setdefault(event.prediction_id, event)
            return
        key, row = slot
        self._label(key, row, event)

    # -- output --------------------------------------------------------------------------------------

    def advance(self, publish: Callable[[Emission], None] = lambda _emission: None) -> Emission:
        """Feed the detectors the slices behind the watermark; offer the results of windows that closed or
        changed since they were last emitted, and the alarms raised; expire old state.

        ``publish`` receives them before any window is marked emitted: if it raises, nothing is marked emitted
        or dropped and the alarms stay unpublished, so the next call offers them again.
        """
        watermark = self.watermark
        grace = timedelta(seconds=self.settings.grace_s)
        horizon = timedelta(seconds=self.settings.horizon_s)
        size = timedelta(seconds=self.settings.window_s)
        self._expire_early_feedback(watermark - horizon)  # counted in windows below; safe to repeat
        self._feed_detectors(watermark)
        results, emitted, expired = [], [], []
        for key in sorted(self.windows, key=lambda k: (k[2], k[0], k[1])):
            buffer = self.windows[key]
            end = key[2] + size
            if watermark < end + grace:
                continue
            if buffer.revision != buffer.emitted_revision:
                results.append(self._result(key, buffer))
                emitted.append(buffer)
            if watermark >= end + horizon:
                expired.append(key)
        emission = Emission(results, list(self.unpublished_alarms))
        if results or emission.alarms:
            publish(emission)
        self.unpublished_alarms.clear()
        for buffer in emitted:
            buffer.emitted_revision = buffer.revision
        for key in expired:
            buffer = self.windows.pop(key)
            for prediction_id in buffer.ids:
                self.pending.pop(prediction_id, None)
        return emission

    # -- internals -----------------------------------------------------------------------------------

    @property
    def watermark(self) -> datetime:
        """The predictions' watermark: windows and lateness are judged against it."""
        return self.predictions_seen.current(self.clock())

    def _label(self, key: WindowId, row: int, event: FeedbackRecord) -> None:
        buffer = self.windows[key]
        if buffer.truth[row] is not None or not math.isnan(buffer.truth_values[row]):
            return  # a second label for the same prediction counts once
        if event.value is not None:
            buffer.truth_values[row] = event.value
            buffer.truth[row] = ""
        else:
            buffer.truth[row] = event.label
            error = self._is_error(key[0], buffer.task, buffer.predicted[row], event.label)
            self._detector_input("errors", key, event.timestamp, event.prediction_id, float(error))
        buffer.labels += 1

    def _is_error(self, model_id: str, task: Task, predicted: str | None, truth: str | None) -> bool:
        if task == "binary":
            positive = self._positive(model_id)
            return (predicted in positive) != (truth in positive)
        return predicted != truth

    def _detector_input(self, signal: Signal, key: WindowId, stamp: datetime, pid: str, value: float) -> None:
        if stamp < self.detector_frontiers[signal]:
            self.detector_late += 1
            return
        self.detector_inputs[signal].setdefault((key[0], key[1]), []).append(((stamp, pid), key, value))

    def _feed_detectors(self, watermark: datetime) -> None:
        """Feed every model's inputs of the slices behind the watermark, in (event time, prediction id) order.

        Scores are complete up to the predictions' watermark; errors carry the feedback's time, so they wait
        for the feedback partitions' watermark too (feedback may be read behind the predictions)."""
        grace = timedelta(seconds=self.settings.grace_s)
        marks: dict[Signal, datetime] = {
            "scores": watermark,
            "errors": min(watermark, self.labels_seen.current(self.clock())),
        }
        feeds: tuple[tuple[Signal, Callable[..., list[Fired[Any]]]], ...] = (
            ("errors", ModelDetectors.feed_errors),
            ("scores", ModelDetectors.feed_scores),
        )
        for signal, feed in feeds:
            if marks[signal] == EPOCH:
                continue
            frontier = window_start(marks[signal] - grace, self.settings.detector_slice_s)
            if frontier <= self.detector_frontiers[signal]:
                continue
            inputs = self.detector_inputs[signal]
            for model, items in inputs.items():
                due = sorted(item for item in items if item[0][0] < frontier)
                if not due:
                    continue
                inputs[model] = [item for item in items if item[0][0] >= frontier]
                detectors = self.detectors.setdefault(model, ModelDetectors(self.detector_settings))
                for fired in feed(detectors, [(order, (order, window), value) for order, window, value in due]):
                    self._alarm(fired)
            self.detector_frontiers[signal] = frontier

    def _alarm(self, fired: Fired[tuple[tuple[datetime, str], WindowId]]) -> None:
        (stamp, prediction_id), window = fired.tag
        alarm = DetectorAlarm(
            detector=fired.detector,
            signal="error_rate" if fired.detector == "adwin" else "score_mean",
            fired_at=stamp,
            prediction_id=prediction_id,
            observations=fired.observations,
            estimate=fired.estimate,
        )
        buffer = self.windows.get(window)
        if buffer is not None:
            buffer.alarms.append(alarm)
        start = window[2]
        key = WindowKey(
            model_id=window[0],
            model_version=window[1],
            window_start=start,
            window_end=start + timedelta(seconds=self.settings.window_s),
        )
        self.unpublished_alarms.append((key, alarm))

    def _expire_early_feedback(self, oldest: datetime) -> None:
        size = self.settings.window_s
        for prediction_id, feedback in list(self.early.items()):
            if feedback.timestamp >= oldest:
                continue
            del self.early[prediction_id]
            start = window_start(feedback.timestamp, size)
            for (model_id, _version, window), buffer in self.windows.items():
                if window == start and model_id == feedback.model_id:
                    buffer.orphan_feedback += 1
                    break

    def _has_reference(self, key: WindowId) -> bool:
        return (key[0], key[1]) in self.own_profiles or self.profile_for(key[0], key[1]) is not None

    def _learn_reference(self, event: PredictionRecord) -> None:
        key = (event.model_id, event.model_version)
        rows = self.first_events.setdefault(key, [])
        rows.append(
            {
                **event.features,
                "score": event.score if event.task == "binary" else None,
                "label": event.predicted,
            }
        )
        if len(rows) >= self.settings.reference_first_n:
            frame = pd.DataFrame(rows)
            self.own_profiles[key] = build_profile(
                frame.dropna(axis=1, how="all"), *key, source="first_events", created_at=event.timestamp
            )
            del self.first_events[key]

    def _positive(self, model_id: str) -> set[str]:
        """The texts of a model's positive label (default 1 / true, or its pinned ``positive_label``)."""
        contract = self.contracts.get(model_id)
        positive = contract.positive_label if contract else 1
        text = label_text(positive)
        return {"1", "true"} if positive in (1, True) and not isinstance(positive, str) else {text or ""}

    def _result(self, key: WindowId, buffer: WindowBuffer) -> WindowResult:
        model_id, version, start = key
        sealed = buffer.sealed or self._seal(key, buffer)
        return WindowResult(
            model_id=model_id,
            model_version=version,
            window_start=start,
            window_end=start + timedelta(seconds=self.settings.window_s),
            revision=buffer.revision,
            reference=sealed.reference,
            performance=self._performance(model_id, buffer),
            drift=sealed.drift,
            fairness=self._fairness(model_id, buffer, sealed.groups),
            alarms=list(buffer.alarms),
        )

    def _seal(self, key: WindowId, buffer: WindowBuffer) -> Sealed:
        """Compute what depends on the predictions alone, once the window closed, and drop their inputs."""
        model_id, version, _start = key
        profile = self.profile_for(model_id, version)
        reference: Literal["provided", "first_events", "none"] = "provided" if profile is not None else "none"
        if profile is None and (own := self.own_profiles.get((model_id, version))) is not None:
            profile, reference = own, "first_events"
        attributes = sorted({attribute for row in buffer.sensitive_rows for attribute in row})
        groups = {
            attribute: np.array([row.get(attribute, MISSING_GROUP) for row in buffer.sensitive_rows], dtype=str)
            for attribute in attributes
        }
        drift = self._drift(buffer, profile) if profile is not None else []
        buffer.sealed = Sealed(reference, drift, groups)
        buffer.feature_rows, buffer.sensitive_rows = [], []
        return buffer.sealed

    def _performance(self, model_id: str, buffer: WindowBuffer) -> Performance:
        n = len(buffer.ids)
        truth = np.array(buffer.truth, dtype=object)
        labelled = np.array([t is not None for t in buffer.truth])
        base: dict[str, object] = {
            "task": buffer.task,
            "predictions": n,
            "labelled": int(labelled.sum()),
            "label_coverage": float(labelled.mean()) if n else None,
            "late_predictions": buffer.late_predictions,
            "orphan_feedback": buffer.orphan_feedback,
        }
        if buffer.task == "regression":
            values = np.array(buffer.values)
            metrics = regression_performance(np.array(buffer.truth_values)[labelled], values[labelled])
        elif buffer.task == "binary":
            positive = self._positive(model_id)
            predicted = np.array([p in positive for p in buffer.predicted])
            scores = np.array(buffer.scores)
            is_true = np.array([t in positive for t in truth])
            metrics = binary_performance(is_true[labelled], predicted[labelled], scores[labelled])
            metrics["estimated_accuracy"] = estimated_accuracy(predicted, scores)
        else:
            predicted_text = np.array([p or "" for p in buffer.predicted], dtype=str)
            truth_text = np.array([t or "" for t in truth], dtype=str)
            metrics = multiclass_performance(truth_text[labelled], predicted_text[labelled])
        return Performance.model_validate({**base, **metrics})

    def _drift(self, buffer: WindowBuffer, profile: ReferenceProfile) -> list[FeatureDrift]:
        columns: dict[str, list[object]] = {}
        if SCORE in profile.features:
            columns[SCORE] = [None if math.isnan(s) else s for s in buffer.scores]
        if PREDICTED_LABEL in profile.features:
            columns[PREDICTED_LABEL] = list(buffer.predicted)
        rows = []
        for name, reference in sorted(profile.features.items()):
            column = columns.get(name) or [row.get(name) for row in buffer.feature_rows]
            present = [v for v in column if v is not None]
            missing = len(column) - len(present)
            if reference.kind == "numeric":
                numbers = np.array([float(v) for v in present if isinstance(v, int | float)], dtype=np.float64)
                rows.append(numeric_drift(name, numbers, missing, reference))
            else:
                rows.append(categorical_drift(name, np.array([str(v) for v in present], dtype=str), missing, reference))
        return rows

    def _fairness(
        self, model_id: str, buffer: WindowBuffer, groups_by_attribute: dict[str, NDArray[np.str_]]
    ) -> list[GroupFairness]:
        if buffer.task != "binary" or not groups_by_attribute:
            return []
        positive = self._positive(model_id)
        predicted = np.array([p in positive for p in buffer.predicted])
        truth = np.array([t in positive for t in buffer.truth])
        labelled = np.array([t is not None for t in buffer.truth])
        rows: list[GroupFairness] = []
        for attribute, groups in sorted(groups_by_attribute.items()):
            rows.extend(
                attribute_fairness(
                    attribute,
                    groups,
                    predicted,
                    truth,
                    labelled,
                    min_count=self.settings.min_group_count,
                )
            )
        return rows
