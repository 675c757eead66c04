"""The second stage of the worker: windows per model version, merged from the deltas of every source partition,
and their results.

Plain Python over the monitors; no Faust, no Kafka, no clock in the numbers. The deltas come from
:class:`~driftline.streams.joining.PartitionJoin` (one per source partition; contract in
:mod:`driftline.streams.deltas`). Semantics:

- A window ``[start, start + window)`` of a model version holds one *share* per source partition: the rows
  (predictions) of that partition, numbered as the partition numbered them, kept as a summary
  (:mod:`driftline.streams.core.summary`: counts and exact sums, updated as rows and labels arrive) plus the
  few values per row that a late label needs (predicted label, score, groups; never the features). A replayed
  delta changes nothing (rows already held are skipped, labels are assignments). Summaries merge by exact
  addition, so results do not depend on which worker read which partition, or when, and an emission costs
  the size of the summaries, not the number of rows.
- Features are counted against the version's reference profile as rows arrive
  (:mod:`driftline.streams.core.feature_counts`), once the version has a profile; a window whose first rows came
  before it keeps those rows' features until it closes, then counts them.
- Watermark (:class:`~driftline.streams.watermarks.Watermark`): the minimum over source partitions that are not
  idle of their latest prediction time. A window closes when the watermark passes ``end + grace``: its drift
  is read from its counts once then (it depends on predictions alone) and the counts dropped, it is emitted, and it is
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
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from driftline.schemas.errors import DriftlineError
from driftline.schemas.events import Task, label_text
from driftline.schemas.model_contracts import ModelContract
from driftline.schemas.results import (
    DetectorAlarm,
    FeatureDrift,
    Performance,
    ReferenceProfile,
    WindowKey,
    WindowResult,
)
from driftline.settings import MonitorSettings
from driftline.streams.core.feature_counts import FeatureCounts, NumericCounts, feature_counts
from driftline.streams.core.summary import (
    BinarySummary,
    Combo,
    MulticlassSummary,
    Summary,
    group_key,
    merged,
    new_summary,
)
from driftline.streams.deltas import Delta, OrphanCount, Progress, WindowDelta
from driftline.streams.joining import WindowId, window_start
from driftline.streams.monitors.detectors import DetectorSettings, Fired, ModelDetectors
from driftline.streams.monitors.profile import PREDICTED_LABEL, SCORE, build_profile
from driftline.streams.watermarks import EPOCH, Watermark

ModelKey = tuple[str, str]  # model_id, model_version
DetectorInput = tuple[tuple[datetime, str], WindowId, float]  # (event time, prediction id), window, value
Signal = Literal["errors", "scores"]


@dataclass
class Share:
    """One source partition's rows of a window: their summary, and per row what a late label needs. Rows
    reaching the window after it closed are only counted (``received`` minus the rows held)."""

    summary: Summary
    ids: list[str] = field(default_factory=list)
    positive: bytearray = field(default_factory=bytearray)  # binary: the predicted label is the positive one
    scores: array[float] = field(default_factory=lambda: array("d"))
    combos: array[int] = field(default_factory=lambda: array("l"))  # binary: index in WindowBuffer.combos
    predicted: list[str] = field(default_factory=list)  # multiclass: the predicted label
    values: array[float] = field(default_factory=lambda: array("d"))  # regression: the predicted value
    labelled: bytearray = field(default_factory=bytearray)
    unbinned: list[tuple[Mapping[str, object], float, str | None]] = field(default_factory=list)
    received: int = 0
    late_at_source: int = 0

    @property
    def held(self) -> int:
        return len(self.ids)


@dataclass
class WindowBuffer:
    """What one window holds: a :class:`Share` per source partition, and its feature counts.

    Features are counted as rows arrive once the version has a reference profile (``features``); until then a
    share keeps its rows' features (``unbinned``), counted when the profile comes or the window closes. At
    the close the drift is read from the counts once (it depends on predictions alone, and no prediction
    joins a closed window), and the counts are dropped: a closed window waiting for late labels holds its
    summaries and a few values per prediction.
    """

    task: Task
    shares: dict[int, Share] = field(default_factory=dict)
    combos: list[Combo] = field(default_factory=list)
    combo_codes: dict[Combo, int] = field(default_factory=dict)
    reference: Literal["provided", "first_events", "none"] = "none"
    features: dict[str, FeatureCounts] | None = None
    drift: list[FeatureDrift] | None = None  # set when the window closed
    orphan_feedback: int = 0
    alarms: list[DetectorAlarm] = field(default_factory=list)
    emitted_revision: int = -1

    def summary(self) -> Summary:
        """The shares' summaries added up."""
        total = merged([share.summary for _p, share in sorted(self.shares.items())])
        return total if total is not None else new_summary(self.task)

    def combo_code(self, sensitive: Mapping[str, str]) -> int:
        combo = group_key(sensitive)
        code = self.combo_codes.get(combo)
        if code is None:
            code = self.combo_codes[combo] = len(self.combos)
            self.combos.append(combo)
        return code

    @property
    def predictions(self) -> int:
        return sum(share.held for share in self.shares.values())

    @property
    def labels(self) -> int:
        return sum(share.summary.labelled for share in self.shares.values())

    @property
    def late_predictions(self) -> int:
        return sum(share.late_at_source + share.received - share.held for share in self.shares.values())

    @property
    def revision(self) -> int:
        """Every event the window accounts for: predictions and labels, and late predictions, orphaned
        feedback and detector alarms it counts; only grows, so the latest revision is the most complete."""
        return self.predictions + self.labels + self.late_predictions + self.orphan_feedback + len(self.alarms)


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
        share = buffer.shares.get(delta.partition)
        if share is None:
            share = buffer.shares[delta.partition] = Share(new_summary(delta.task))
        share.late_at_source = max(share.late_at_source, delta.late_predictions)
        skip = share.received - delta.first_row
        if skip < 0:
            raise DriftlineError(
                f"rows {share.received}..{delta.first_row - 1} of partition {delta.partition} in window {key} never "
                "arrived: the window-parts topic lost messages (retention shorter than the horizon?)"
            )
        share.received = max(share.received, delta.first_row + len(delta.ids))
        if buffer.drift is None and skip < len(delta.ids):
            self._take_rows(key, buffer, share, delta, skip)
        self._take_labels(key, buffer, share, delta)

    def _take_rows(self, key: WindowId, buffer: WindowBuffer, share: Share, delta: WindowDelta, skip: int) -> None:
        """Hold rows ``skip`` onwards of ``delta``: into the share's summary, per-row values, feature counts."""
        rows = range(skip, len(delta.ids))
        share.ids.extend(delta.ids[skip:])
        share.labelled.extend(bytes(len(rows)))
        summary = share.summary
        if isinstance(summary, BinarySummary):
            positive_texts = self._positive(key[0])
            positive = np.array([delta.predicted[i] in positive_texts for i in rows], dtype=bool)
            scores = np.array(delta.scores[skip:], dtype=np.float64)
            codes = np.array([buffer.combo_code(delta.sensitive[i]) for i in rows], dtype=np.intp)
            summary.add_predictions(positive, scores, codes, buffer.combos)
            share.positive.extend(positive.tobytes())
            share.scores.extend(scores)
            share.combos.extend(codes.tolist())
            for i in rows:
                self._detector_input("scores", key, delta.times[i], delta.ids[i], delta.scores[i])
        else:
            summary.add_predictions(len(rows))
            if isinstance(summary, MulticlassSummary):
                share.predicted.extend(delta.predicted[i] or "" for i in rows)
            else:
                share.values.extend(delta.values[skip:])
        if buffer.features is None:
            self._bind_reference(key, buffer)
        new_rows = [(delta.features[i], delta.scores[i], delta.predicted[i]) for i in rows]
        if buffer.features is None:
            share.unbinned.extend(new_rows)
        else:
            _count_features(buffer.features, new_rows)

    def _take_labels(self, key: WindowId, buffer: WindowBuffer, share: Share, delta: WindowDelta) -> None:
        """Apply the labels of ``delta`` to rows held and not labelled yet (a label is an assignment)."""
        rows: list[int] = []
        labels: list[str | None] = []
        values: list[float] = []
        positive_texts = self._positive(key[0])
        for row, label, value, stamp in delta.labels:
            if row >= share.held or share.labelled[row]:
                continue  # a row that came after the window closed, or a label already applied
            share.labelled[row] = 1
            rows.append(row)
            labels.append(label)
            values.append(math.nan if value is None else value)
            if value is None:
                if buffer.task == "binary":
                    error = bool(share.positive[row]) != (label in positive_texts)
                else:
                    error = share.predicted[row] != (label or "")
                self._detector_input("errors", key, stamp, share.ids[row], float(error))
        if not rows:
            return
        summary = share.summary
        index = np.array(rows, dtype=np.intp)
        if isinstance(summary, BinarySummary):
            summary.add_labels(
                np.frombuffer(share.positive, dtype=bool)[index],
                np.frombuffer(share.scores, dtype=np.float64)[index],
                np.frombuffer(share.combos, dtype=np.int64)[index].astype(np.intp),
                buffer.combos,
                np.array([label in positive_texts for label in labels], dtype=bool),
            )
        elif isinstance(summary, MulticlassSummary):
            summary.add_labels([share.predicted[row] for row in rows], [label or "" for label in labels])
        else:
            summary.add_labels(np.frombuffer(share.values, dtype=np.float64)[index], np.array(values))

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
        for _partition, share in sorted(buffer.shares.items()):
            for features, score, predicted in share.unbinned:
                rows.append({**features, "score": score if binary else None, "label": predicted})
                if len(rows) >= self.settings.reference_first_n:
                    frame = pd.DataFrame(rows).dropna(axis=1, how="all")
                    end = key[2] + timedelta(seconds=self.settings.window_s)
                    self.own_profiles[model] = build_profile(frame, *model, source="first_events", created_at=end)
                    del self.first_events[model]
                    return

    def _bind_reference(self, key: WindowId, buffer: WindowBuffer) -> None:
        """Start counting the window's features against its version's profile, if it has one by now (a
        published one, or one built from its first events), with the rows kept until then."""
        model = (key[0], key[1])
        profile = self.profile_for(*model)
        reference: Literal["provided", "first_events"] = "provided"
        if profile is None:
            profile, reference = self.own_profiles.get(model), "first_events"
        if profile is None:
            return
        buffer.reference = reference
        buffer.features = {name: feature_counts(feature) for name, feature in sorted(profile.features.items())}
        for _partition, share in sorted(buffer.shares.items()):
            _count_features(buffer.features, share.unbinned)
            share.unbinned = []

    def _positive(self, model_id: str) -> set[str]:
        """The texts of a model's positive label (default 1 / true, or its pinned ``positive_label``)."""
        contract = self.contracts.get(model_id)
        positive = contract.positive_label if contract else 1
        text = label_text(positive)
        return {"1", "true"} if positive in (1, True) and not isinstance(positive, str) else {text or ""}

    def _result(self, key: WindowId, buffer: WindowBuffer) -> WindowResult:
        model_id, version, start = key
        drift = buffer.drift if buffer.drift is not None else self._seal(key, buffer)
        summary = buffer.summary()
        return WindowResult(
            model_id=model_id,
            model_version=version,
            window_start=start,
            window_end=start + timedelta(seconds=self.settings.window_s),
            revision=buffer.revision,
            reference=buffer.reference,
            performance=Performance.model_validate(
                {
                    "task": buffer.task,
                    "predictions": summary.predictions,
                    "labelled": summary.labelled,
                    "label_coverage": summary.labelled / summary.predictions if summary.predictions else None,
                    "late_predictions": buffer.late_predictions,
                    "orphan_feedback": buffer.orphan_feedback,
                    **summary.performance(),
                }
            ),
            drift=drift,
            fairness=summary.fairness(self.settings.min_group_count) if isinstance(summary, BinarySummary) else [],
            alarms=list(buffer.alarms),
        )

    def _seal(self, key: WindowId, buffer: WindowBuffer) -> list[FeatureDrift]:
        """Read the drift of a window that closed from its feature counts (learning the first-events
        reference from it first), once; drop the counts."""
        if buffer.features is None:
            self._learn_reference(key, buffer)
            self._bind_reference(key, buffer)
        features = buffer.features or {}
        buffer.drift = [counts.drift(name) for name, counts in features.items()]
        buffer.features = None
        for share in buffer.shares.values():
            share.unbinned = []
        return buffer.drift


def _count_features(
    counts: dict[str, FeatureCounts], rows: Sequence[tuple[Mapping[str, object], float, str | None]]
) -> None:
    """Count the features of ``rows`` (features, score, predicted label): the score and predicted label as
    their own pseudo-features. Numeric features take numbers (bools as 0/1) and ignore other values."""
    if not rows:
        return
    for name, feature in counts.items():
        if name == SCORE:
            column: list[object] = [None if math.isnan(score) else score for _f, score, _p in rows]
        elif name == PREDICTED_LABEL:
            column = [predicted for _f, _s, predicted in rows]
        else:
            column = [features.get(name) for features, _s, _p in rows]
        present = [v for v in column if v is not None]
        missing = len(column) - len(present)
        if isinstance(feature, NumericCounts):
            numbers = np.array([float(v) for v in present if isinstance(v, int | float)], dtype=np.float64)
            feature.add(numbers, missing)
        else:
            feature.add([str(v) for v in present], missing)
