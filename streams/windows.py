"""The second stage of the worker: windows per model version, merged from the deltas of every source partition,
and their results.

Plain Python over the monitors; no Faust, no Kafka, no clock in the numbers. The deltas come from
:class:`~driftline.streams.joining.PartitionJoin` (one per source partition; contract in
:mod:`driftline.streams.deltas`). Semantics:

- A window ``[start, start + window)`` of a model version holds one *share* per source partition: the rows
  (predictions) of that partition, numbered as the partition numbered them, with the labels joined to them.
  A replayed delta changes nothing (rows already held are skipped, labels are assignments). Results are computed
  over the shares in partition order, so they do not depend on which worker read which partition, or when.
- Watermark (:class:`~driftline.streams.watermarks.Watermark`): the minimum over source partitions that are not
  idle of their latest prediction time. A window closes when the watermark passes ``end + grace``: its drift
  is computed once then (it depends on predictions alone) and its rows' inputs dropped, it is emitted, and it is
  re-emitted each time late labels change it, until the watermark passes ``end + horizon``, when its state is
  dropped. Rows that reach a closed window (from a partition that was idle, or read behind) count in
  ``late_predictions`` with those the partition itself found late, and are left out of the numbers; feedback
  orphaned on a partition counts in ``orphan_feedback`` of its model's window of that start (the first version,
  by name, when several have one).
- Without a provided reference profile, a model version's profile is built from its first
  ``reference_first_n`` predictions in window order (then partition, then row), as its windows close.
- Streaming detectors (:mod:`driftline.streams.monitors.detectors`) are fed per model version in event-time
  slices of ``detector_slice_s``: once the watermark passes a slice's end plus the grace period, its labelled
  predictions go to ADWIN (error indicator, ordered by feedback time, then prediction id) and its scores to
  Page-Hinkley (ordered by prediction time, then prediction id). Errors also wait for the feedback marks of the
  partitions. An alarm lands in the window of the prediction that raised it and is published at once. A label
  or score whose slice was already fed is left out of the detectors (counted in ``detector_late``) but still
  counts in its window's numbers.
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

from driftline.schemas.errors import DriftlineError
from driftline.schemas.events import Task, label_text
from driftline.schemas.model_contracts import ModelContract
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
from driftline.streams.deltas import Delta, OrphanCount, Progress, WindowDelta
from driftline.streams.joining import WindowId, window_start
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
ModelKey = tuple[str, str]  # model_id, model_version
DetectorInput = tuple[tuple[datetime, str], WindowId, float]  # (event time, prediction id), window, value
Signal = Literal["errors", "scores"]


@dataclass
class Share:
    """One source partition's rows of a window, in columns. Rows reaching the window after it closed are only
    counted (``received`` minus the rows held)."""

    ids: list[str] = field(default_factory=list)
    predicted: list[str | None] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    truth: list[str | None] = field(default_factory=list)
    truth_values: list[float] = field(default_factory=list)
    feature_rows: list[Mapping[str, object]] = field(default_factory=list)
    sensitive_rows: list[Mapping[str, str]] = field(default_factory=list)
    received: int = 0
    labels: int = 0
    late_at_source: int = 0


@dataclass
class WindowBuffer:
    """What one window holds: a :class:`Share` per source partition (vectorised when it is emitted).

    The features and sensitive attributes of each prediction are kept as given until the window closes;
    then its drift is computed once (it depends on predictions alone, and no prediction joins a closed
    window), the groups become arrays, and the rows are dropped: a closed window waiting for late labels holds
    a few numbers per prediction, not its features.
    """

    task: Task
    shares: dict[int, Share] = field(default_factory=dict)
    sealed: Sealed | None = None
    orphan_feedback: int = 0
    alarms: list[DetectorAlarm] = field(default_factory=list)
    emitted_revision: int = -1

    def column(self, name: str) -> list[Any]:
        """One column of the rows held, over the shares in partition order."""
        return [value for _p, share in sorted(self.shares.items()) for value in getattr(share, name)]

    @property
    def predictions(self) -> int:
        return sum(len(share.ids) for share in self.shares.values())

    @property
    def labels(self) -> int:
        return sum(share.labels for share in self.shares.values())

    @property
    def late_predictions(self) -> int:
        return sum(share.late_at_source + share.received - len(share.ids) for share in self.shares.values())

    @property
    def revision(self) -> int:
        """Every event the window accounts for: predictions and labels, and late predictions, orphaned
        feedback and detector alarms it counts; only grows, so the latest revision is the most complete."""
        return self.predictions + self.labels + self.late_predictions + self.orphan_feedback + len(self.alarms)


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


class WindowEngine:
    """Merges the deltas of the source partitions into windows; emits :class:`WindowResult` rows.

    ``profile_for(model_id, model_version)`` returns the reference profile when one was published.
    ``partitions`` is how many source partitions feed the engine: each holds the watermark back until it
    reports progress or reports itself idle.
    """

    def __init__(
        self,
        settings: MonitorSettings,
        profile_for: Callable[[str, str], ReferenceProfile | None] = lambda _m, _v: None,
        contracts: Mapping[str, ModelContract] | None = None,
        partitions: int = 0,
    ) -> None:
        self.settings = settings
        self.profile_for = profile_for
        self.contracts = dict(contracts or {})
        self.windows: dict[WindowId, WindowBuffer] = {}
        self.orphans: dict[tuple[int, str, datetime], int] = {}
        self.predictions_seen = Watermark(partitions)
        self.labels_seen = Watermark(partitions)
        self.first_events: dict[ModelKey, list[dict[str, object]]] = {}
        self.own_profiles: dict[ModelKey, ReferenceProfile] = {}
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
        self.after_horizon = 0
        self.unpublished_alarms: list[tuple[WindowKey, DetectorAlarm]] = []

    # -- input ---------------------------------------------------------------------------------------

    def apply(self, delta: Delta) -> None:
        """Take one delta of a source partition (idempotent: a replayed delta changes nothing)."""
        if isinstance(delta, Progress):
            self.predictions_seen.report(delta.partition, delta.predictions_mark, delta.predictions_idle)
            self.labels_seen.report(delta.partition, delta.labels_mark, delta.labels_idle)
        elif isinstance(delta, OrphanCount):
            slot = (delta.partition, delta.model_id, delta.window_start)
            self.orphans[slot] = max(delta.count, self.orphans.get(slot, 0))
        else:
            self._merge(delta)

    def _merge(self, delta: WindowDelta) -> None:
        key = (delta.model_id, delta.model_version, delta.window_start)
        buffer = self.windows.get(key)
        if buffer is None:
            horizon = timedelta(seconds=self.settings.window_s + self.settings.horizon_s)
            if delta.window_start + horizon <= self.predictions_seen.reached:  # its state was dropped already
                self.after_horizon += len(delta.ids) + len(delta.labels)
                return
            buffer = self.windows[key] = WindowBuffer(task=delta.task)
        share = buffer.shares.setdefault(delta.partition, Share())
        share.late_at_source = max(share.late_at_source, delta.late_predictions)
        skip = share.received - delta.first_row
        if skip < 0:
            raise DriftlineError(
                f"rows {share.received}..{delta.first_row - 1} of partition {delta.partition} in window {key} never "
                "arrived: the window-parts topic lost messages (retention shorter than the horizon?)"
            )
        share.received = max(share.received, delta.first_row + len(delta.ids))
        if buffer.sealed is None:
            for i in range(skip, len(delta.ids)):
                share.ids.append(delta.ids[i])
                share.predicted.append(delta.predicted[i])
                share.scores.append(delta.scores[i])
                share.values.append(delta.values[i])
                share.truth.append(None)
                share.truth_values.append(math.nan)
                share.feature_rows.append(delta.features[i])
                share.sensitive_rows.append(delta.sensitive[i])
                if delta.task == "binary":
                    self._detector_input("scores", key, delta.times[i], delta.ids[i], delta.scores[i])
        for row, label, value, stamp in delta.labels:
            if row >= len(share.ids) or share.truth[row] is not None:
                continue  # a row that came after the window closed, or a label already applied
            if value is not None:
                share.truth_values[row] = value
                share.truth[row] = ""
            else:
                share.truth[row] = label
                error = self._is_error(key[0], buffer.task, share.predicted[row], label)
                self._detector_input("errors", key, stamp, share.ids[row], float(error))
            share.labels += 1

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
        self._attribute_orphans()
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
            del self.windows[key]
        for slot in [slot for slot in self.orphans if watermark >= slot[2] + size + horizon]:
            del self.orphans[slot]
        return emission

    # -- internals -----------------------------------------------------------------------------------

    @property
    def watermark(self) -> datetime:
        """The predictions' watermark: windows and lateness are judged against it."""
        return self.predictions_seen.current()

    def _attribute_orphans(self) -> None:
        """Each window's orphaned feedback: the partitions' counts for its model and start, given to the first
        version (by name) that has a window there."""
        counts: dict[tuple[str, datetime], int] = {}
        for (_partition, model_id, start), count in self.orphans.items():
            counts[(model_id, start)] = counts.get((model_id, start), 0) + count
        taken: set[tuple[str, datetime]] = set()
        for model_id, version, start in sorted(self.windows):
            buffer = self.windows[(model_id, version, start)]
            first = (model_id, start) not in taken
            taken.add((model_id, start))
            buffer.orphan_feedback = counts.get((model_id, start), 0) if first else 0

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
            "errors": min(watermark, self.labels_seen.current()),
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

    def _learn_reference(self, key: WindowId, buffer: WindowBuffer) -> None:
        """Add a closing window's predictions to its version's first events; build the profile at N (dated at
        the end of the window that completed it)."""
        model = (key[0], key[1])
        if self.profile_for(*model) is not None or model in self.own_profiles:
            return
        rows = self.first_events.setdefault(model, [])
        binary = buffer.task == "binary"
        for features, score, predicted in zip(
            buffer.column("feature_rows"), buffer.column("scores"), buffer.column("predicted"), strict=True
        ):
            rows.append({**features, "score": score if binary else None, "label": predicted})
            if len(rows) >= self.settings.reference_first_n:
                frame = pd.DataFrame(rows).dropna(axis=1, how="all")
                end = key[2] + timedelta(seconds=self.settings.window_s)
                self.own_profiles[model] = build_profile(frame, *model, source="first_events", created_at=end)
                del self.first_events[model]
                return

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
        self._learn_reference(key, buffer)
        profile = self.profile_for(model_id, version)
        reference: Literal["provided", "first_events", "none"] = "provided" if profile is not None else "none"
        if profile is None and (own := self.own_profiles.get((model_id, version))) is not None:
            profile, reference = own, "first_events"
        sensitive_rows = buffer.column("sensitive_rows")
        attributes = sorted({attribute for row in sensitive_rows for attribute in row})
        groups = {
            attribute: np.array([row.get(attribute, MISSING_GROUP) for row in sensitive_rows], dtype=str)
            for attribute in attributes
        }
        drift = self._drift(buffer, profile) if profile is not None else []
        buffer.sealed = Sealed(reference, drift, groups)
        for share in buffer.shares.values():
            share.feature_rows, share.sensitive_rows = [], []
        return buffer.sealed

    def _performance(self, model_id: str, buffer: WindowBuffer) -> Performance:
        n = buffer.predictions
        truth = np.array(buffer.column("truth"), dtype=object)
        labelled = np.array([t is not None for t in truth], dtype=bool)
        base: dict[str, object] = {
            "task": buffer.task,
            "predictions": n,
            "labelled": int(labelled.sum()),
            "label_coverage": float(labelled.mean()) if n else None,
            "late_predictions": buffer.late_predictions,
            "orphan_feedback": buffer.orphan_feedback,
        }
        if buffer.task == "regression":
            values = np.array(buffer.column("values"))
            metrics = regression_performance(np.array(buffer.column("truth_values"))[labelled], values[labelled])
        elif buffer.task == "binary":
            positive = self._positive(model_id)
            predicted = np.array([p in positive for p in buffer.column("predicted")], dtype=bool)
            scores = np.array(buffer.column("scores"))
            is_true = np.array([t in positive for t in truth], dtype=bool)
            metrics = binary_performance(is_true[labelled], predicted[labelled], scores[labelled])
            metrics["estimated_accuracy"] = estimated_accuracy(predicted, scores)
        else:
            predicted_text = np.array([p or "" for p in buffer.column("predicted")], dtype=str)
            truth_text = np.array([t or "" for t in truth], dtype=str)
            metrics = multiclass_performance(truth_text[labelled], predicted_text[labelled])
        return Performance.model_validate({**base, **metrics})

    def _drift(self, buffer: WindowBuffer, profile: ReferenceProfile) -> list[FeatureDrift]:
        columns: dict[str, list[object]] = {}
        if SCORE in profile.features:
            columns[SCORE] = [None if math.isnan(s) else s for s in buffer.column("scores")]
        if PREDICTED_LABEL in profile.features:
            columns[PREDICTED_LABEL] = list(buffer.column("predicted"))
        feature_rows = buffer.column("feature_rows")
        rows = []
        for name, reference in sorted(profile.features.items()):
            column = columns.get(name) or [row.get(name) for row in feature_rows]
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
        truth_column = buffer.column("truth")
        predicted = np.array([p in positive for p in buffer.column("predicted")], dtype=bool)
        truth = np.array([t in positive for t in truth_column], dtype=bool)
        labelled = np.array([t is not None for t in truth_column], dtype=bool)
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
